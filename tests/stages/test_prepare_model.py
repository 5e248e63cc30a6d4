"""Prepare model: GGUF -> Hugging Face folder (once per session), hf_path by reference, MLX-quantized copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.core.errors import ConfigError
from runner.stages import prepare_model
from runner.core.artifacts import PrepareModel
from runner.core.models import legacy_rope_keys, prepared_hf_dir as model_dir, prepared_mlx_dir as mlx_model_dir
from tiny_model import prepare_smollm2, stage_context, tiny_config


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return prepare_smollm2(tmp_path_factory.getbasetemp())


def test_gguf_converts_to_a_float32_hf_folder_with_legacy_rope_keys(converted: tuple[Path, Any]) -> None:
    stage_dir, result = converted
    hf = model_dir(stage_dir)
    assert hf == stage_dir / "hf"
    assert (hf / "model.safetensors").is_file() and (hf / "tokenizer.json").is_file()
    config = json.loads((hf / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 100000.0  # not mlx-lm's default 10000

    info = json.loads((stage_dir / PrepareModel.INFO).read_text())
    assert info["source"] == "gguf" and info["num_layers"] == 30
    assert 130e6 < info["parameters"] < 140e6
    assert mlx_model_dir(stage_dir) is None
    if result is not None:  # this module did the conversion
        assert result.artifacts == [PrepareModel.INFO]
        assert result.metrics["seconds"] > 0 and result.metrics["parameters"] == info["parameters"]


def test_converted_tokenizer_keeps_the_chat_template(converted: tuple[Path, Any]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir(converted[0]))
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_hf_path_is_referenced_not_copied(converted: tuple[Path, Any], tmp_path: Path) -> None:
    source = model_dir(converted[0])
    cfg = tiny_config([f"model.hf_path={source}"])
    result = prepare_model.run(cfg, stage_context(cfg, tmp_path / "prepare_model"))
    stage_dir = tmp_path / "prepare_model"
    assert model_dir(stage_dir) == source.resolve()
    copied = sum(p.stat().st_size for p in stage_dir.iterdir() if p.is_file() and not p.is_symlink())
    assert copied < 100_000  # model_info.json only; "hf" is at most a symlink
    assert result.metrics["parameters"] == json.loads((converted[0] / PrepareModel.INFO).read_text())["parameters"]
    assert result.metrics["seconds"] < 10


def test_quantize_bits_writes_an_mlx_copy(converted: tuple[Path, Any], tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    cfg = tiny_config([f"model.hf_path={model_dir(converted[0])}", "train.quantize.bits=4", "train.quantize.group_size=64"])
    stage_dir = tmp_path / "prepare_model"
    prepare_model.run(cfg, stage_context(cfg, stage_dir))
    quantized = mlx_model_dir(stage_dir)
    assert quantized == stage_dir / "mlx"
    config = json.loads((quantized / "config.json").read_text())
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 64
    assert config["rope_theta"] == 100000.0
    info = json.loads((stage_dir / PrepareModel.INFO).read_text())
    assert info["quantize"] == {"bits": 4, "group_size": 64}


def test_missing_hf_path_is_a_config_error(tmp_path: Path) -> None:
    cfg = tiny_config([f"model.hf_path={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match="model.hf_path"):
        prepare_model.run(cfg, stage_context(cfg, tmp_path / "prepare_model"))


def test_legacy_rope_keys() -> None:
    assert legacy_rope_keys({"rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}}) == {"rope_theta": 5e5}
    scaled = {"rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}}
    assert legacy_rope_keys(scaled) == {"rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert legacy_rope_keys({"rope_theta": 1e4, "rope_parameters": {"rope_theta": 1e4}}) == {}
    assert legacy_rope_keys({"model_type": "x"}) == {}
