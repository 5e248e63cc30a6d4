"""Adapter export helpers for the train stage (not a pipeline stage of its own).

* :func:`mlx_adapter_to_peft` rewrites an mlx-lm adapter in PEFT's layout.
* :func:`peft_adapter_to_gguf` runs llama.cpp's ``convert_lora_to_gguf.py`` (vendored
  under ``runner/vendor/llama_cpp_convert``) so ``Llama(lora_path=...)`` can load it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.errors import RunnerError

log = logging.getLogger(__name__)

CONVERTER = Path(__file__).resolve().parent.parent / "vendor" / "llama_cpp_convert" / "convert_lora_to_gguf.py"
_MLX_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_a|lora_b)$")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


class ExportError(RunnerError):
    """The adapter could not be converted for llama.cpp."""


def mlx_adapter_to_peft(mlx_dir: Path, out_dir: Path, base_hf_dir: Path) -> dict[str, Any]:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT) from an mlx-lm adapter.

    mlx-lm computes ``y = W x + scale * B(A(x))`` with ``lora_a`` shaped (in, r) and
    ``lora_b`` (r, out); PEFT stores ``lora_A.weight`` (r, in), ``lora_B.weight`` (out, r)
    and scales by ``lora_alpha / r``. So: transpose both and set ``lora_alpha = scale * r``.
    """
    import numpy as np
    from peft import LoraConfig
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
    peft_config = LoraConfig(
        r=rank,
        lora_alpha=scale * rank,
        lora_dropout=float(params.get("dropout", 0.0)),
        target_modules=sorted(targets),
        layers_to_transform=sorted(layers) or None,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=str(base_hf_dir),
    )
    peft_config.save_pretrained(str(out_dir))
    return {"rank": rank, "lora_alpha": scale * rank, "target_modules": sorted(targets), "layers": sorted(layers)}


def peft_adapter_to_gguf(peft_dir: Path, base_hf_dir: Path, out_file: Path, outtype: str = "f32") -> None:
    """Convert a PEFT adapter to a GGUF LoRA with llama.cpp's converter (a few seconds)."""
    if not CONVERTER.is_file():
        raise ExportError(f"llama.cpp's converter is missing: {CONVERTER}")
    tmp = out_file.with_name(f".{out_file.name}.tmp-{os.getpid()}")
    command = [sys.executable, str(CONVERTER), "--base", str(base_hf_dir), "--outtype", outtype, "--outfile", str(tmp), str(peft_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use its own gguf-py, not the installed one
    log.info("exporting the adapter to %s", out_file.name)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not tmp.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        tmp.unlink(missing_ok=True)
        raise ExportError(f"convert_lora_to_gguf.py failed (exit {done.returncode}):\n{tail}")
    os.replace(tmp, out_file)
