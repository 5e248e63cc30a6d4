"""What one Hydra job does: validate, run the pipeline, report one line on user errors."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from runner.errors import RunnerError
from runner.pipeline import RunInfo, run_pipeline
from runner.schema import validate
from runner.sweep import PARENT_ENV

log = logging.getLogger("runner")


def _run_info() -> RunInfo:
    if not HydraConfig.initialized():
        return RunInfo()
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
    multirun = hydra_cfg.mode.name == "MULTIRUN"
    name = f"job{hydra_cfg.job.num}" if multirun else "run"
    return RunInfo(
        overrides=overrides,
        output_dir=Path(hydra_cfg.runtime.output_dir),
        run_name=name,
        parent_run_id=os.environ.get(PARENT_ENV) if multirun else None,
        extra_tags={f"choice/{k}": str(v) for k, v in choices.items() if not k.startswith("hydra")},
    )


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main_task(cfg: DictConfig) -> Optional[float]:
    """Run one job; print a single readable line and exit 2 on a user error."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # kill / a scheduler's stop: end the run as KILLED
    try:
        validate(cfg)
        summary = run_pipeline(cfg, _run_info())
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept in the stage cache; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    print_summary(summary)
    return summary["metrics"].get(cfg.eval.optimize_metric)


def print_summary(summary: dict) -> None:
    """The end-of-run console summary: base vs tuned per eval set, then where to look."""
    from runner.stages.evaluate import format_table

    eval_metrics = {k[len("eval/"):]: v for k, v in summary["metrics"].items() if k.startswith("eval/")}
    if eval_metrics:
        print("\n" + format_table(eval_metrics))
    print(f"\nMLflow run {summary['run_id']} - open the UI with `make ui` (http://127.0.0.1:5000)")
