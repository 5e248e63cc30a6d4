"""Prepare model: a Hugging Face folder to train on (and an MLX-quantized copy for QLoRA).

With ``model.hf_path`` set, the stage only records where that folder is (no copy);
otherwise it converts the GGUF once with transformers, de-quantized to float32.
``model_info.json`` is the contract for later stages: read it with :func:`runner.core.models.prepared_hf_dir`
and :func:`runner.core.models.prepared_mlx_dir`, never by guessing folder names.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from runner.core.artifacts import PrepareModel
from runner.core.cache import write_json_atomic
from runner.core.errors import ConfigError
from runner.core.models import legacy_rope_keys, resolve_gguf
from runner.core.paths import resolve_path
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)

HF_DIR = "hf"
MLX_DIR = "mlx"


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Point at (or convert into) a Hugging Face folder; optionally write an MLX-quantized copy."""
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    if cfg.model.hf_path:
        hf_dir = _user_hf_dir(cfg.model.hf_path, ctx.root)
        _link(ctx.work_dir / HF_DIR, hf_dir)
        info: dict[str, Any] = {"source": "hf_path", "hf_dir": str(hf_dir), "gguf_path": None}
        log.info("using the Hugging Face folder %s as is", hf_dir)
    else:
        gguf = resolve_gguf(cfg.model.gguf_path, ctx.root)
        hf_dir = ctx.work_dir / HF_DIR
        convert_s = convert_gguf_to_hf(gguf, hf_dir)
        metrics["convert_seconds"] = convert_s
        info = {"source": "gguf", "hf_dir": HF_DIR, "gguf_path": str(gguf)}

    config = json.loads((hf_dir / "config.json").read_text())
    info.update(
        {
            "architecture": (config.get("architectures") or [None])[0],
            "model_type": config.get("model_type"),
            "num_layers": config.get("num_hidden_layers"),
            "parameters": count_parameters(hf_dir),
            "mlx_dir": None,
            "quantize": None,
        }
    )

    bits = cfg.train.quantize.bits
    if bits:
        quant_started = time.perf_counter()
        quantize_for_mlx(hf_dir, ctx.work_dir / MLX_DIR, bits, cfg.train.quantize.group_size)
        metrics["quantize_seconds"] = time.perf_counter() - quant_started
        info["mlx_dir"] = MLX_DIR
        info["quantize"] = {"bits": bits, "group_size": cfg.train.quantize.group_size}

    write_json_atomic(ctx.work_dir / PrepareModel.INFO, info)
    metrics["seconds"] = time.perf_counter() - started
    if info["parameters"] is not None:
        metrics["parameters"] = float(info["parameters"])
    return StageResult(metrics=metrics, artifacts=[PrepareModel.INFO], summary={"hf_dir": str(hf_dir), "source": info["source"]})


def convert_gguf_to_hf(gguf: Path, out_dir: Path) -> float:
    """Load a GGUF with transformers (de-quantized to float32) and save it as a Hugging Face folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("converting %s to a Hugging Face folder (float32)", gguf)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigError(
            f"model.gguf_path={str(gguf)!r}: transformers cannot convert this GGUF ({exc}); "
            "set model.hf_path to a Hugging Face folder of the same model instead"
        ) from None
    # save_pretrained refuses models "quantized with gguf"; the weights are already float32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    add_legacy_rope_keys(out_dir / "config.json")
    seconds = time.perf_counter() - started
    log.info("converted in %.1f s", seconds)
    return seconds


def add_legacy_rope_keys(config_path: Path) -> None:
    """Write ``rope_theta``/``rope_scaling`` next to transformers 5's ``rope_parameters``.

    mlx-lm (and llama.cpp's converter) still read the old top-level keys; without them
    mlx-lm silently falls back to rope_theta=10000 (SmolLM2 uses 100000).
    """
    config = json.loads(config_path.read_text())
    legacy = legacy_rope_keys(config)
    if legacy:
        config.update(legacy)
        write_json_atomic(config_path, config)


def quantize_for_mlx(hf_dir: Path, out_dir: Path, bits: int, group_size: int) -> None:
    """Write an MLX copy with affine-quantized weights (the QLoRA base for the mlx backend)."""
    from mlx_lm import convert

    log.info("writing an MLX %d-bit copy (group size %d)", bits, group_size)
    convert(str(hf_dir), str(out_dir), quantize=True, q_bits=bits, q_group_size=group_size)
    add_legacy_rope_keys(out_dir / "config.json")


def count_parameters(folder: Path) -> Optional[int]:
    """Parameter count from the safetensors headers (no weights loaded); None without safetensors."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():
                count = 1
                for dim in handle.get_slice(name).get_shape():
                    count *= dim
                total += count
    return total


def _user_hf_dir(value: str, root: Path) -> Path:
    path = resolve_path(value, root).resolve()
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.hf_path={value!r} is not a Hugging Face model folder (no config.json in {path})")
    return path


def _link(link: Path, target: Path) -> None:
    """A convenience symlink ``hf -> <user folder>``; model_info.json stays the source of truth."""
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link, target_is_directory=True)
    except OSError as exc:  # e.g. Windows without symlink rights
        log.debug("no symlink %s -> %s (%s)", link, target, exc)
