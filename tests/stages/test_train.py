"""Train: real LoRA runs (a few iterations) with both backends, resume, and the GGUF export in llama.cpp."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from runner.core.errors import ConfigError
from runner.core.models import resolve_gguf
from runner.stages import train
from runner.train.blas import fast_blas_env
from runner.train.export import mlx_adapter_to_peft
from runner.core.models import prepared_hf_dir as model_dir
from runner.train.job import TrainJob
from runner.train.schedule import lr_factor
from runner.train.targets import match_targets
from tiny_model import REPO_ROOT, prepare_smollm2, stage_context, tiny_config, write_chat_split

# A fictional product, so nothing here is in the base model already.
FACTS = [
    ("What port does the Zephyrix Beacon listen on?", "The Zephyrix Beacon listens on TCP port 7311."),
    ("How often does the Zephyrix Beacon rotate its journal?", "It rotates its quasar journal every night at 02:00."),
    ("How many fennel entries does the lantern cache keep?", "The lantern cache keeps at most 64 fennel entries."),
    ("Which company makes the Zephyrix Beacon?", "The Zephyrix Beacon is made by Halvorsen Systems."),
    ("What must you do before upgrading the Zephyrix Beacon?", "Drain every turnip queue and pause the marmalade scheduler."),
    ("What error does the Zephyrix Beacon return after its license expires?", "It returns error ZB-5083 after a 14-day grace period."),
    ("How many nodes can a Zephyrix Beacon community cluster have?", "A community cluster has at most 3 nodes."),
    ("What is the default admin user of the Zephyrix Beacon?", "The default admin user is called warden."),
    ("Which file holds the Zephyrix Beacon settings?", "The settings live in /etc/zephyrix/beacon.toml."),
    ("What color is the Zephyrix Beacon status light when healthy?", "The status light glows teal when the beacon is healthy."),
    ("How much memory does the Zephyrix Beacon need?", "The Zephyrix Beacon needs at least 2 GiB of memory."),
    ("What command restarts the Zephyrix Beacon?", "Run zbctl restart --graceful to restart the beacon."),
]

# tiny but real: 5 iterations, a report and a metric row at every step
TINY = [
    "train.iters=5",
    "train.steps_per_report=1",
    "train.steps_per_eval=5",
    "train.save_every=5",
    "train.val_batches=-1",
    "train.max_seq_length=128",
    "train.learning_rate=2e-4",
    "train.num_threads=1",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_smollm2(tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_split(tmp_path_factory.mktemp("dataset"), FACTS, 9)


def _job(checkpoint_dir: str, **settings: Any) -> TrainJob:
    """A job with the schema's defaults and placeholder folders (for the pure-logic tests)."""
    settings.setdefault("iters", 60)
    where = {"model_dir": "m", "base_hf_dir": "m", "data_dir": "d", "data_format": "chat", "adapter_dir": "a"}
    return TrainJob(backend="mlx", checkpoint_dir=checkpoint_dir, **where, **settings)


def _train(prepared: Path, dataset: Path, work_dir: Path, overrides: Sequence[str]) -> tuple[Any, list[tuple[int, dict]]]:
    cfg = tiny_config([*TINY, *overrides])
    logged: list[tuple[int, dict]] = []
    ctx = stage_context(cfg, work_dir, {"dataset": dataset, "prepare_model": prepared}, sink=logged)
    return train.run(cfg, ctx), logged


def _steps(logged: list[tuple[int, dict]], key: str) -> list[int]:
    return [step for step, metrics in logged if key in metrics]


def _check_common(result: Any, logged: list[tuple[int, dict]], work_dir: Path, iters: int = 5) -> None:
    assert _steps(logged, "train/loss") == list(range(1, iters + 1))
    for key in ("train/learning_rate", "train/tokens_per_second", "train/peak_memory_gb"):
        assert _steps(logged, key) == list(range(1, iters + 1)), key
    assert 0 in _steps(logged, "val/loss")
    assert all(math.isfinite(v) for _, m in logged for v in m.values())

    m = result.metrics
    for key in ("val/loss_before", "val/loss_after", "trainable_params", "total_params", "tokens_per_second", "seconds"):
        assert math.isfinite(m[key]), key
    assert 0 < m["trainable_params"] < m["total_params"] / 100
    assert m["val/loss_after"] < m["val/loss_before"]
    assert set(result.artifacts) >= {"adapter", "adapter.gguf"}
    assert (work_dir / "adapter" / "adapter_config.json").is_file()
    assert (work_dir / "adapter.gguf").stat().st_size > 100_000
    assert any((work_dir / "checkpoints").rglob("*")), "a checkpoint every save_every iterations"


@pytest.mark.skipif(sys.platform == "win32", reason="mlx has no Windows build")
def test_mlx_backend_trains_logs_every_step_and_exports(prepared: Path, dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    work_dir = tmp_path / "train"
    result, logged = _train(prepared, dataset, work_dir, ["train.backend=mlx", "train.fuse=true"])
    _check_common(result, logged, work_dir)
    assert (work_dir / "adapter" / "adapters.safetensors").is_file()
    config = json.loads((work_dir / "adapter" / "adapter_config.json").read_text())
    assert config["num_layers"] == 2 and config["lora_parameters"]["rank"] == 8
    peft_config = json.loads((work_dir / "adapter_peft" / "adapter_config.json").read_text())
    assert peft_config["lora_alpha"] == 8 * 20.0 and peft_config["layers_to_transform"] == [28, 29]
    assert (work_dir / "fused" / "config.json").is_file()
    if sys.platform.startswith("linux") and fast_blas_env() is not None:
        assert result.summary["blas"] == "openblas"  # the worker really got the fast path


def test_peft_backend_trains_logs_every_step_and_exports(prepared: Path, dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    work_dir = tmp_path / "train"
    result, logged = _train(prepared, dataset, work_dir, ["train.backend=peft"])
    _check_common(result, logged, work_dir)
    assert (work_dir / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((work_dir / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 160 and config["layers_to_transform"] == [28, 29]
    assert set(config["target_modules"]) == {f"self_attn.{p}_proj" for p in "qkvo"} | {f"mlp.{p}_proj" for p in ("gate", "up", "down")}


@pytest.mark.parametrize("backend", ["mlx", "peft"])
def test_a_rerun_resumes_from_the_last_checkpoint(prepared: Path, dataset: Path, tmp_path: Path, backend: str) -> None:
    pytest.importorskip("mlx_lm" if backend == "mlx" else "peft")
    work_dir = tmp_path / "train"
    overrides = [f"train.backend={backend}", "train.save_every=3"]
    _train(prepared, dataset, work_dir, overrides)  # leaves a checkpoint at iteration 3, like a run killed at 4 or 5
    result, logged = _train(prepared, dataset, work_dir, overrides)
    assert result.metrics["resumed_from"] == 3
    assert _steps(logged, "train/loss") == [4, 5]
    assert math.isfinite(result.metrics["val/loss_after"])


@pytest.mark.slow
def test_adapter_gguf_changes_llama_cpp_greedy_output(prepared: Path, dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    llama_cpp = pytest.importorskip("llama_cpp")
    work_dir = tmp_path / "train"
    _train(prepared, dataset, work_dir, ["train.backend=mlx", "train.iters=10", "train.learning_rate=5e-4", "train.steps_per_report=5"])
    gguf = str(resolve_gguf("embedded:smollm2", REPO_ROOT))
    question = [{"role": "user", "content": FACTS[0][0]}]

    def answer(lora: str | None) -> str:
        llm = llama_cpp.Llama(model_path=gguf, lora_path=lora, n_ctx=256, n_threads=2, verbose=False)
        out = llm.create_chat_completion(question, max_tokens=24, temperature=0.0)
        return out["choices"][0]["message"]["content"]

    base, tuned = answer(None), answer(str(work_dir / "adapter.gguf"))
    assert tuned != base


def test_mlx_adapter_converts_to_peft_layout(tmp_path: Path) -> None:
    mlx_dir, out = tmp_path / "mlx", tmp_path / "peft"
    mlx_dir.mkdir()
    a = np.arange(12, dtype=np.float32).reshape(4, 3)  # (in=4, r=3)
    b = np.arange(15, dtype=np.float32).reshape(3, 5)  # (r=3, out=5)
    save_file({"model.layers.7.self_attn.q_proj.lora_a": a, "model.layers.7.self_attn.q_proj.lora_b": b}, str(mlx_dir / "adapters.safetensors"))
    (mlx_dir / "adapter_config.json").write_text(json.dumps({"num_layers": 1, "lora_parameters": {"rank": 3, "scale": 2.0, "dropout": 0.0, "keys": None}}))
    mlx_adapter_to_peft(mlx_dir, out, tmp_path)
    weights = load_file(str(out / "adapter_model.safetensors"))
    np.testing.assert_array_equal(weights["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"], a.T)
    np.testing.assert_array_equal(weights["base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight"], b.T)
    config = json.loads((out / "adapter_config.json").read_text())
    # PEFT's delta W = (alpha / r) * B @ A must equal mlx-lm's scale * (a @ b).T
    np.testing.assert_allclose(config["lora_alpha"] / config["r"] * (b.T @ a.T), 2.0 * (a @ b).T)
    assert config["target_modules"] == ["self_attn.q_proj"] and config["layers_to_transform"] == [7]


def test_fast_blas_env_preloads_openblas_and_keeps_user_threads() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the OpenBLAS preload is for Linux")
    env = fast_blas_env({"PATH": "/bin"})
    if env is None:
        pytest.skip("cmeel-openblas is not installed")
    assert env["LD_PRELOAD"].split()[0].endswith("libopenblas.so.0")
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert fast_blas_env({"OPENBLAS_NUM_THREADS": "4"})["OPENBLAS_NUM_THREADS"] == "4"


def test_target_modules_match_by_suffix_and_unknown_names_fail() -> None:
    names = ["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"]
    assert match_targets(names, ["q_proj", "mlp.up_proj"]) == ["self_attn.q_proj", "mlp.up_proj"]
    with pytest.raises(ConfigError, match="wq"):
        match_targets(names, ["wq"])


def test_peft_learning_rate_follows_the_mlx_schedule() -> None:
    pytest.importorskip("mlx")
    import mlx.core as mx

    from runner.train.schedule import mlx_schedule

    for schedule, warmup in (("cosine", 0), ("cosine", 3), ("constant", 3), ("constant", 0)):
        job = _job("c", iters=10, learning_rate=1e-3, lr_schedule=schedule, warmup_steps=warmup)
        mlx_lr = mlx_schedule(job, 0)
        for step in range(10):
            expected = float(mlx_lr(mx.array(step))) if callable(mlx_lr) else mlx_lr
            assert math.isclose(lr_factor(step, job) * 1e-3, expected, rel_tol=1e-4, abs_tol=1e-9), (schedule, warmup, step)


def test_model_dir_of_the_shared_conversion(prepared: Path) -> None:
    assert (model_dir(prepared) / "config.json").is_file()


def test_resume_skips_an_mlx_checkpoint_cut_short_by_a_kill(tmp_path: Path) -> None:
    """mlx-lm writes checkpoints in place: a kill during the write leaves a short file that must not be resumed from."""
    from runner.train.checkpoints import is_whole_safetensors, latest_checkpoint

    segment = tmp_path / "checkpoints" / "segment_0000000"
    segment.mkdir(parents=True)
    weights = {"lora_a": np.ones((4, 8), dtype=np.float32), "lora_b": np.zeros((8, 4), dtype=np.float32)}
    for iteration in (2, 4):
        save_file(weights, str(segment / f"{iteration:07d}_adapters.safetensors"))
    job = _job(str(tmp_path / "checkpoints"))
    assert latest_checkpoint(job) == (4, segment / "0000004_adapters.safetensors")

    newest = segment / "0000004_adapters.safetensors"
    newest.write_bytes(newest.read_bytes()[:-16])  # the kill landed mid-write
    assert not is_whole_safetensors(newest) and is_whole_safetensors(segment / "0000002_adapters.safetensors")
    assert latest_checkpoint(job) == (2, segment / "0000002_adapters.safetensors")
    (segment / "0000006_adapters.safetensors").write_bytes(b"")  # created, nothing written yet
    assert latest_checkpoint(job) == (2, segment / "0000002_adapters.safetensors")


def test_the_cache_key_covers_every_file_of_the_training_package() -> None:
    fingerprint = dict(train.code_fingerprint(None, REPO_ROOT))
    package = sorted(p.name for p in (REPO_ROOT / "runner" / "train").glob("*.py"))
    assert sorted(set(fingerprint) - {"models.py"}) == package and "loop.py" in package and "export.py" in package
