"""The embedded SmolLM2 for stage tests: a config with it, a stage context, its Hugging Face folder (converted once per session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from runner.core.artifacts import PrepareModel
from runner.core.errors import ConfigError
from runner.core.jsonl import write_jsonl
from runner.core.models import resolve_gguf
from runner.core.schema import RunConfig
from runner.core.stage import StageContext
from runner.stages import prepare_model

REPO_ROOT = Path(__file__).resolve().parents[1]


# the stage tests train small (2 blocks, rank 8, batch 1, constant rate on mlx), as the default did before the
# recipe for learning facts (every block, batch 8, cosine on peft); their overrides still win
SMALL_TRAINING = [
    "train.backend=mlx", "train.num_layers=2", "train.rank=8", "train.batch_size=1",
    "train.lr_schedule=constant", "train.warmup_steps=0",
]  # fmt: skip


def tiny_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The typed schema plus the embedded model (what conf/model/smollm2.yaml sets), small training and test overrides."""
    model = ["model.gguf_path=embedded:smollm2", "model.hf_path=null"]
    return OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.from_dotlist(model + SMALL_TRAINING + list(overrides)))


def write_chat_split(folder: Path, pairs: Sequence[tuple[str, str]], n_train: int) -> Path:
    """(question, answer) pairs as chat records: the first ``n_train`` to train.jsonl, the rest to valid.jsonl."""
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs]
    write_jsonl(folder / "train.jsonl", records[:n_train])
    write_jsonl(folder / "valid.jsonl", records[n_train:])
    return folder


def stage_context(cfg: DictConfig, work_dir: Path, inputs: dict[str, Path] | None = None, sink: list | None = None) -> StageContext:
    work_dir.mkdir(parents=True, exist_ok=True)
    sink = [] if sink is None else sink
    return StageContext(
        name=work_dir.name,
        cfg=cfg,
        root=REPO_ROOT,
        work_dir=work_dir,
        inputs=inputs or {},
        log_metrics=lambda metrics, step=None: sink.append((step, dict(metrics))),
    )


def prepare_smollm2(base: Path) -> tuple[Path, Any]:
    """Convert the embedded SmolLM2 GGUF once per test session; return (stage dir, its StageResult or None)."""
    try:
        resolve_gguf("embedded:smollm2", REPO_ROOT)
    except ConfigError as exc:
        pytest.skip(str(exc))
    stage_dir = base / "prepare_model_smollm2"
    with FileLock(str(base / "prepare_model_smollm2.lock")):
        if (stage_dir / PrepareModel.INFO).is_file():
            return stage_dir, None
        result = prepare_model.run(tiny_config(), stage_context(tiny_config(), stage_dir))
        return stage_dir, result
