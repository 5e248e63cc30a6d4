"""Adapter exports: an mlx-lm adapter in PEFT's layout, and a PEFT adapter as a llama.cpp GGUF LoRA.

The GGUF holds what llama.cpp's ``convert_lora_to_gguf.py`` writes for a LoRA adapter, for the
llama family (SmolLM2, Llama, Mistral: ``llama``; Qwen2: ``qwen2``):

* ``general.architecture`` (llama.cpp refuses an adapter whose architecture differs from the model's),
  ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (llama.cpp scales
  by ``alpha / rank``, the rank read from the tensors);
* per adapted linear layer, ``<gguf name>.lora_a`` = PEFT's ``lora_A.weight`` (rank, in) and
  ``<gguf name>.lora_b`` = ``lora_B.weight`` (out, rank), float32, e.g. ``blk.3.attn_q.weight.lora_a``;
* for ``llama``, the rows of the q and k projections' ``lora_b`` are permuted as the base model's
  q and k weights were when converted: Hugging Face rotates the two halves of each head, llama.cpp
  adjacent pairs (the converter's ``LlamaModel.permute``). Qwen2 GGUFs keep Hugging Face's order.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.errors import RunnerError

log = logging.getLogger(__name__)

_MLX_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_a|lora_b)$")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_PEFT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


class ExportError(RunnerError):
    """The adapter could not be converted for llama.cpp."""


@dataclass(frozen=True)
class GgufArch:
    name: str  # llama.cpp's architecture name (gguf.MODEL_ARCH_NAMES)
    permute_qk: bool  # q/k rows reordered for llama.cpp's rope layout


# Hugging Face architecture -> how llama.cpp's converter writes it
SUPPORTED = {
    "LlamaForCausalLM": GgufArch("llama", True),
    "MistralForCausalLM": GgufArch("llama", True),
    "Qwen2ForCausalLM": GgufArch("qwen2", False),
}


def export_adapter(backend: str, adapter_dir: Path, base_hf_dir: Path, out_file: Path, peft_copy_dir: Path) -> dict[str, Any]:
    """The trained adapter as a llama.cpp GGUF; an mlx adapter goes through a PEFT copy in ``peft_copy_dir``."""
    peft_dir = adapter_dir
    if backend == "mlx":
        mlx_adapter_to_peft(adapter_dir, peft_copy_dir, base_hf_dir)
        peft_dir = peft_copy_dir
    return peft_adapter_to_gguf(peft_dir, base_hf_dir, out_file)


def mlx_adapter_to_peft(mlx_dir: Path, out_dir: Path, base_hf_dir: Path) -> dict[str, Any]:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT) from an mlx-lm adapter.

    mlx-lm computes ``y = W x + scale * B(A(x))`` with ``lora_a`` shaped (in, r) and
    ``lora_b`` (r, out); PEFT stores ``lora_A.weight`` (r, in), ``lora_B.weight`` (out, r)
    and scales by ``lora_alpha / r``. So: transpose both and set ``lora_alpha = scale * r``.
    """
    import numpy as np
    from safetensors.numpy import load_file, save_file

    config = json.loads((mlx_dir / "adapter_config.json").read_text())
    if config.get("fine_tune_type", "lora") != "lora":
        raise ExportError(f"only LoRA adapters convert to PEFT, not {config.get('fine_tune_type')!r}")
    params = config["lora_parameters"]
    rank, scale = int(params["rank"]), float(params["scale"])

    weights = load_file(str(mlx_dir / "adapters.safetensors"))
    tensors: dict[str, Any] = {}
    targets: set[str] = set()
    layers: set[int] = set()
    for key, value in weights.items():
        found = _MLX_KEY.match(key)
        if not found:
            raise ExportError(f"unexpected tensor {key!r} in the mlx adapter (only LoRA A/B weights convert)")
        module, part = found.group("module"), found.group("part")
        peft_part = "lora_A" if part == "lora_a" else "lora_B"
        tensors[f"base_model.model.{module}.{peft_part}.weight"] = np.ascontiguousarray(value.T.astype(np.float32))
        layer = _LAYER.search(module)
        if layer:
            layers.add(int(layer.group(1)))
            targets.add(module[layer.end():])
        else:
            targets.add(module)

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    # what PeftModel.from_pretrained needs (it fills in the rest); written directly, so an mlx run
    # does not import peft and torch (5 s) for it
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": scale * rank,
        "lora_dropout": float(params.get("dropout", 0.0)),
        "target_modules": sorted(targets),
        "layers_to_transform": sorted(layers) or None,
        "bias": "none",
        "fan_in_fan_out": False,
        "base_model_name_or_path": str(base_hf_dir),
    }
    (out_dir / "adapter_config.json").write_text(json.dumps(peft_config, indent=2))
    return {"rank": rank, "lora_alpha": scale * rank, "target_modules": sorted(targets), "layers": sorted(layers)}


def peft_adapter_to_gguf(peft_dir: Path, base_hf_dir: Path, out_file: Path) -> dict[str, Any]:
    """Write a PEFT LoRA adapter as a llama.cpp GGUF LoRA (float32); returns what was written."""
    import gguf

    base = json.loads((Path(base_hf_dir) / "config.json").read_text())
    arch = _arch(base)
    alpha = lora_alpha(json.loads((Path(peft_dir) / "adapter_config.json").read_text()))
    names = gguf.get_tensor_name_map(_model_arch(arch.name), int(base["num_hidden_layers"]))
    tensors = {}
    for module, (lora_a, lora_b) in _lora_pairs(Path(peft_dir)).items():
        gguf_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise ExportError(f"{module!r} has no llama.cpp tensor in a {arch.name} model: cannot export a LoRA on it")
        if arch.permute_qk and module.endswith(("q_proj", "k_proj")):
            heads = int(base["num_attention_heads"])
            if module.endswith("k_proj"):
                heads = int(base.get("num_key_value_heads") or heads)
            lora_b = permute_rows(lora_b, heads)
        tensors[gguf_name + ".lora_a"] = lora_a
        tensors[gguf_name + ".lora_b"] = lora_b

    tmp = out_file.with_name(f".{out_file.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), arch=arch.name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_name(Path(peft_dir).name)
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, data in tensors.items():
        writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.F32)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, out_file)
    log.info("exported %d LoRA tensors (%s, alpha %g) to %s", len(tensors), arch.name, alpha, out_file.name)
    return {"architecture": arch.name, "alpha": alpha, "tensors": len(tensors)}


def lora_alpha(config: dict[str, Any]) -> float:
    """The alpha llama.cpp needs (it scales by ``alpha / rank``); refuses what one alpha cannot express."""
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ExportError("only plain LoRA adapters export to llama.cpp (not DoRA or other PEFT types)")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ExportError("an adapter with per-module rank or alpha (rank_pattern / alpha_pattern) has no single llama.cpp alpha")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha  # rsLoRA scales by alpha / sqrt(r)


def permute_rows(weight: Any, heads: int) -> Any:
    """Hugging Face's rotate-half order of each head's rows -> llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _arch(config: dict[str, Any]) -> GgufArch:
    name = (config.get("architectures") or [None])[0]
    if name not in SUPPORTED:
        raise ExportError(
            f"cannot export a LoRA for {name or config.get('model_type')!r} to llama.cpp: supported are {', '.join(SUPPORTED)}"
        )
    return SUPPORTED[name]


def _model_arch(name: str) -> Any:
    import gguf

    return next(arch for arch, arch_name in gguf.MODEL_ARCH_NAMES.items() if arch_name == name)


def _lora_pairs(peft_dir: Path) -> dict[str, tuple[Any, Any]]:
    """Module name (as in the base model) -> (lora_A (r, in), lora_B (out, r)) as float32."""
    import numpy as np

    parts: dict[str, dict[str, Any]] = {}
    for key, value in _load_float32(peft_dir / "adapter_model.safetensors").items():
        found = _PEFT_KEY.match(key)
        if not found:
            raise ExportError(f"unexpected tensor {key!r} in the PEFT adapter: only LoRA A/B weights of linear layers export")
        parts.setdefault(found.group("module"), {})[found.group("part")] = np.ascontiguousarray(value)
    missing = sorted(module for module, pair in parts.items() if set(pair) != {"A", "B"})
    if missing:
        raise ExportError(f"LoRA A or B missing for {missing[0]}")
    return {module: (pair["A"], pair["B"]) for module, pair in sorted(parts.items())}


def _load_float32(path: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file as float32 numpy; bfloat16 (numpy has none) through torch."""
    import numpy as np

    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    if any(entry.get("dtype") == "BF16" for name, entry in header.items() if name != "__metadata__"):
        from safetensors.torch import load_file as load_torch

        return {key: value.float().numpy() for key, value in load_torch(str(path)).items()}
    from safetensors.numpy import load_file

    return {key: value.astype(np.float32) for key, value in load_file(str(path)).items()}
