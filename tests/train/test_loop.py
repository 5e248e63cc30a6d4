"""The shared training loop: iterations from epochs, validation on a fixed schedule, the best adapter exported."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from runner.core.schema import TrainConfig
from runner.stages import train as train_stage
from runner.train.checkpoints import BEST_DIR, BestAdapter
from runner.train.data import length_batches
from runner.train.job import TrainJob, iterations_for
from tiny_model import prepare_smollm2, stage_context, tiny_config, write_chat_split

FACTS = [
    ("What colour is the Brindle router's status lamp?", "The Brindle router's status lamp glows amber."),
    ("How many queues does a Brindle router hold?", "A Brindle router holds at most 12 queues."),
    ("Which file configures the Brindle router?", "The Brindle router reads /etc/brindle/router.conf."),
    ("Who makes the Brindle router?", "The Brindle router is made by Kettleby Networks."),
    ("What does error BR-77 mean?", "Error BR-77 means a queue is full."),
    ("Which port does the Brindle console use?", "The Brindle console listens on port 4410."),
    ("How often does the Brindle router back up?", "The Brindle router backs up every 6 hours."),
    ("What is the Brindle admin user called?", "The Brindle admin user is called gaffer."),
    ("How much memory does a Brindle router need?", "A Brindle router needs 512 MiB of memory."),
    ("Which command restarts the Brindle router?", "Run brctl restart to restart the Brindle router."),
    ("Where does the Brindle router write its log?", "The Brindle router writes its log to /var/log/brindle.log."),
]


@pytest.mark.parametrize(("records", "batch_size", "epochs", "iters", "expected"), [
    (9, 1, 1.0, None, 9), (9, 4, 2.0, None, 6), (9, 4, 0.5, None, 2), (9, 4, 2.0, 7, 7), (3, 8, 1.0, None, None),
])  # fmt: skip
def test_iterations_come_from_epochs_unless_iters_is_set(records: int, batch_size: int, epochs: float, iters, expected) -> None:
    train = OmegaConf.structured(TrainConfig(batch_size=batch_size, epochs=epochs, iters=iters))
    if expected is None:
        with pytest.raises(Exception, match="batch_size=8 is invalid"):
            iterations_for(train, records)
        return
    assert iterations_for(train, records) == expected
    if iters is None:  # an epoch is every batch the loop makes
        rows = [([1] * (5 + i % 3), 0) for i in range(records)]
        assert math.ceil(epochs * len(length_batches(rows, batch_size, 512))) == expected


def test_batches_hold_neighbours_by_length_and_every_record() -> None:
    rows = [([7] * n, 0) for n in (30, 5, 18, 9, 60, 12, 25)]
    batches = length_batches(rows, 3, max_len=40)
    assert sorted(i for batch in batches for i in batch) == list(range(7))
    assert batches == [[1, 3, 5], [2, 6, 0], [4]]  # 5 9 12 | 18 25 30 | 60 (cut at 40)


def test_a_resumed_run_keeps_only_the_best_adapter_it_will_not_train_again(tmp_path: Path) -> None:
    best = BestAdapter.restore(tmp_path, start=0)
    assert not best.found
    assert best.offer(4, 2.5, lambda folder: (folder / "w").write_text("4"))
    assert not best.offer(6, 2.7, lambda folder: (folder / "w").write_text("6"))
    assert not best.offer(7, float("nan"), lambda folder: (folder / "w").write_text("7"))
    assert best.offer(8, 2.1, lambda folder: (folder / "w").write_text("8"))
    assert (tmp_path / BEST_DIR / "w").read_text() == "8"
    assert BestAdapter.restore(tmp_path, start=8).iteration == 8
    assert not BestAdapter.restore(tmp_path, start=6).found  # iteration 8 is trained again after resuming at 6
    assert not (tmp_path / BEST_DIR).exists()


def test_a_job_takes_every_default_from_the_schema() -> None:
    job = TrainJob.from_config(TrainConfig(), iters=3, model_dir="m", base_hf_dir="m", data_dir="d", data_format="chat", adapter_dir="a", checkpoint_dir="c")
    defaults = TrainConfig()
    assert all(getattr(job, name) == getattr(defaults, name) for name in vars(defaults) if name != "iters")
    assert TrainJob.from_json(job.to_json()) == job


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_smollm2(tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_split(tmp_path_factory.mktemp("loop_dataset"), FACTS, 9)


@pytest.fixture(scope="module")
def runs(prepared: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, list, Path]]:
    """The same short run with each backend: 9 records, batches of 3, two epochs, validation every 2 iterations."""
    out = {}
    for backend in ("mlx", "peft"):
        if importlib.util.find_spec("mlx_lm" if backend == "mlx" else "peft") is None:
            continue
        overrides = [
            f"train.backend={backend}", "train.iters=null", "train.epochs=2", "train.batch_size=3", "train.learning_rate=3e-4",
            "train.steps_per_report=1", "train.steps_per_eval=2", "train.save_every=100", "train.val_batches=-1",
            "train.max_seq_length=128", "train.export_check_records=0", "train.num_threads=1",
        ]  # fmt: skip
        cfg = tiny_config(overrides)
        logged: list[tuple[int, dict]] = []
        work_dir = tmp_path_factory.mktemp(f"loop_{backend}")
        result = train_stage.run(cfg, stage_context(cfg, work_dir, {"dataset": dataset, "prepare_model": prepared}, sink=logged))
        out[backend] = (result, logged, work_dir)
    return out


def _val(logged: list[tuple[int, dict]]) -> dict[int, float]:
    return {step: m["val/loss"] for step, m in logged if "val/loss" in m}


@pytest.mark.parametrize("backend", ["mlx", "peft"])
def test_epochs_set_the_iterations_and_the_best_validated_adapter_is_exported(runs, backend: str) -> None:
    if backend not in runs:
        pytest.skip(f"{backend} is not installed")
    result, logged, work_dir = runs[backend]
    assert result.metrics["iterations"] == 6  # 9 records in batches of 3, two passes
    assert [step for step, m in logged if "train/loss" in m] == [1, 2, 3, 4, 5, 6]
    val = _val(logged)
    assert sorted(val) == [0, 2, 4, 6]
    best_step = min((s for s in val if s), key=val.get)
    assert result.metrics["best_iteration"] == best_step
    assert result.metrics["val/loss_best"] == result.metrics["val/loss_after"] == val[best_step]
    assert [(s, m["val/loss_best"]) for s, m in logged if "val/loss_best" in m] == [(best_step, val[best_step])]
    assert result.metrics["val/loss_last"] == val[6]
    assert json.loads((work_dir / "checkpoints" / BEST_DIR / "best.json").read_text())["iteration"] == best_step
    weights = "adapters.safetensors" if backend == "mlx" else "adapter_model.safetensors"
    assert (work_dir / "adapter" / weights).read_bytes() == (work_dir / "checkpoints" / BEST_DIR / weights).read_bytes()
    assert 0 <= result.metrics["padding_share"] < 0.2 and result.metrics["input_tokens_per_second"] > result.metrics["tokens_per_second"]


def test_both_backends_learn_at_the_same_rate(runs) -> None:
    """The same data, loss, schedule and optimizer (Adam with bias correction on both): the same curve,
    up to LoRA's random initialisation. mlx-lm's own Adam, without bias correction, reached 1.16 where
    PEFT reached 1.70 (20 iterations at 1e-4, bench_train's data)."""
    if len(runs) < 2:
        pytest.skip("needs both backends")
    mlx_val, peft_val = _val(runs["mlx"][1]), _val(runs["peft"][1])
    assert mlx_val[0] == pytest.approx(peft_val[0], abs=1e-3)  # the base model, before any update
    for step in (2, 4, 6):  # measured: within 0.005 of each other at every step
        assert mlx_val[step] == pytest.approx(peft_val[step], abs=0.03), step
