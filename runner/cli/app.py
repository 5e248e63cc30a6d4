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

from runner.cli import sweep

from runner.engine import tracking
from runner.core.errors import RunnerError
from runner.engine.pipeline import RunInfo, open_tracker, run_pipeline
from runner.core.schema import validate

log = logging.getLogger("runner")


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN"


def _run_info() -> RunInfo:
    if not HydraConfig.initialized():
        return RunInfo()
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
    multirun = _is_multirun()
    # a sweep's jobs are told apart by their number under the parent (named after the sweep) and by
    # their params; a single run is named by what it changes
    name = f"job{hydra_cfg.job.num}" if multirun else run_label(overrides)
    return RunInfo(
        overrides=overrides,
        output_dir=Path(hydra_cfg.runtime.output_dir),
        run_name=name,
        parent_run_id=os.environ.get(sweep.PARENT_ENV) if multirun else None,
        extra_tags={f"choice/{k}": str(v) for k, v in choices.items() if not k.startswith("hydra")},
    )


MAX_RUN_NAME = 120


def run_label(overrides: list[str]) -> str:
    """An MLflow run name that says what the run changes: its overrides (secrets masked), or "defaults"."""
    label = " ".join(tracking.mask_overrides(overrides)) or "defaults"
    return label if len(label) <= MAX_RUN_NAME else label[: MAX_RUN_NAME - 3] + "..."


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main_task(cfg: DictConfig) -> Optional[float]:
    """Run one job; on a user error print a single readable line and exit 2.

    In a multirun the failed job does not exit: it returns None so Hydra's launcher goes on with
    the other jobs, and the sweep callback (runner.cli.sweep) ends the parent run FAILED and exits
    non-zero once every job has run. A ``sys.exit`` here would escape Hydra's ``run_job`` (it
    catches ``Exception`` only) and end the whole sweep with its parent run left RUNNING.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)  # kill / a scheduler's stop: end the run as KILLED
    multirun = _is_multirun()
    info = RunInfo()
    try:
        info = _run_info()
        validate(cfg)
        summary = run_pipeline(cfg, info)
    except RunnerError as exc:
        if not multirun:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        overrides = " ".join(tracking.mask_overrides(info.overrides))
        print(f"error: {info.run_name} ({overrides}): {exc}", file=sys.stderr)
        _record_failed_job(cfg, info, exc)
        return None
    except KeyboardInterrupt:
        print("interrupted: finished work is kept in the stage cache; rerun the same command to resume", file=sys.stderr)
        if multirun:
            sweep.mark_interrupted()
        sys.exit(130)
    print_summary(summary)
    return summary["metrics"].get(cfg.eval.optimize_metric)


def _record_failed_job(cfg: DictConfig, info: RunInfo, exc: RunnerError) -> None:
    """Give a sweep job that failed before its MLflow run began (a value that fails validation for
    this sweep point, a missing file) a FAILED child run with the error, so the parent counts it.
    A failure inside a stage already ended the job's own run FAILED (``exc.run_id``)."""
    if getattr(exc, "run_id", None):
        return
    try:
        tracker = open_tracker(cfg, Path(cfg.paths.root).resolve())
        tags = {
            "overrides": " ".join(tracking.mask_overrides(info.overrides))[: tracking.MAX_PARAM_CHARS],
            "error": str(exc)[: tracking.MAX_PARAM_CHARS],
            **info.extra_tags,
        }
        tracker.start(info.run_name or "job", tags, parent_run_id=info.parent_run_id)
        tracker.end("FAILED")
    except Exception as record_error:  # noqa: BLE001 - the job's own error line was printed already
        log.warning("could not record the failed job in MLflow: %s", record_error)


def print_summary(summary: dict) -> None:
    """The end-of-run console summary: base vs tuned per eval set, then where to look."""
    from runner.evaluation.report import format_table

    eval_metrics = {k[len("eval/"):]: v for k, v in summary["metrics"].items() if k.startswith("eval/")}
    if eval_metrics:
        print("\n" + format_table(eval_metrics))
    print(f"\nMLflow run {summary['run_id']} - open the UI with `make ui` (http://127.0.0.1:5000)")
