"""Hydra callback: one MLflow parent run per multirun, each job a child run under it.

The parent records the sweep's overrides and, when the sweep ends, the best child by
``eval.optimize_metric``. Children find the parent and its tracking store through environment
variables set in the job's own process by ``on_job_start``: every launcher (basic, joblib, Ray,
submitit) pickles this callback with the job, and a Ray worker started before the sweep (or a
SLURM node) never saw the submitting process's environment. Only the run id and the tracking URI
travel this way; secrets stay in each machine's environment.

A job that fails with a user error ends its own child run FAILED and lets the sweep go on
(runner.cli.app); when every job has run, the parent ends FAILED if any child failed (else
FINISHED) and the process exits 2 naming the failed jobs. A sweep that stops early (Ctrl-C,
a crash) ends its parent KILLED or FAILED at exit; one killed with -9 is marked KILLED by
the next run's start (the parent carries the same owner tags as a job's run).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.engine import tracking
from runner.core.errors import ConfigError, TrackingError
from runner.engine.preflight import preflight

log = logging.getLogger(__name__)

PARENT_ENV = "DOC2LORA_PARENT_RUN_ID"
_interrupted = False


def mark_interrupted() -> None:
    """A job of this process was interrupted (Ctrl-C, SIGTERM): its sweep's parent ends KILLED."""
    global _interrupted
    _interrupted = True


def _children(client: Any, experiment_id: str, parent_id: str) -> list[Any]:
    return client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10000)


def best_child(client: Any, experiment_id: str, parent_id: str, metric: str, maximize: bool = True) -> tuple[str, float] | None:
    """(run id, value) of the child with the best value of ``metric``, or None."""
    runs = _children(client, experiment_id, parent_id)
    scored = [(r.info.run_id, r.data.metrics[metric]) for r in runs if metric in r.data.metrics and not math.isnan(r.data.metrics[metric])]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda item: item[1])


class MlflowSweepCallback(Callback):
    def __init__(self, maximize: bool = True):
        self.maximize = maximize
        self.parent_id: str | None = None
        self.uri: str | None = None
        self._job_env_before: dict[str, str | None] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra sets this for each job only; paths.root is ${hydra:runtime.cwd}
        HydraConfig.instance().set_config(config)
        try:
            self.uri = tracking.resolve_tracking_uri(config)
        except TrackingError as exc:
            # Hydra turns a callback's exception into a warning; every job would then fail alone
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        try:
            # the files the sweep's shared settings name, on the submitting machine; each job checks its own
            # again where it runs (another machine may not see the same paths)
            preflight(config, Path(config.paths.root).resolve())
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        tracker = tracking.Tracker(self.uri, config.tracking.experiment, artifact_root=tracking.mlruns_dir(config) / "artifacts")
        tracker.reap_dead_runs()
        overrides = tracking.mask_overrides(list(config.hydra.overrides.task))
        run = tracker.mlflow.tracking.MlflowClient().create_run(
            tracker.mlflow.get_experiment_by_name(config.tracking.experiment).experiment_id,
            run_name="sweep",
            tags={
                "sweep": "parent",
                "overrides": " ".join(overrides)[: tracking.MAX_PARAM_CHARS],
                "git_commit": tracking.git_commit(Path(os.getcwd())),
                # the owner, so that a sweep killed with -9 is marked KILLED by the next start
                "runner.host": socket.gethostname(),
                "runner.pid": str(os.getpid()),
            },
        )
        self.parent_id = run.info.run_id
        client = tracker.mlflow.tracking.MlflowClient()
        for i, override in enumerate(overrides):
            client.log_param(self.parent_id, f"sweep/override_{i}", override)
        os.environ[PARENT_ENV] = self.parent_id
        atexit.register(self._end_abandoned_parent)
        log.info("sweep parent MLflow run %s (tracking %s)", self.parent_id, self.uri)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In the job's process, wherever a launcher ran it: log under this sweep's parent, in its store."""
        if self.parent_id is None or self.uri is None:
            return
        for name, value in ((PARENT_ENV, self.parent_id), ("MLFLOW_TRACKING_URI", self.uri)):
            self._job_env_before[name] = os.environ.get(name)
            os.environ[name] = value

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Leave the process's environment as it was (the basic launcher runs jobs in the sweep's own process)."""
        for name, value in self._job_env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._job_env_before = {}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_id is None:
            return
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        client = mlflow.tracking.MlflowClient()
        parent_id = self.parent_id
        experiment_id = client.get_run(parent_id).info.experiment_id
        metric = tracking.metric_name(config.eval.optimize_metric)
        best = best_child(client, experiment_id, parent_id, metric, self.maximize)
        if best is not None:
            client.set_tag(parent_id, "best_child_run_id", best[0])
            client.log_metric(parent_id, f"best/{metric}", best[1])
            log.info("sweep best child %s with %s = %.4f", best[0], metric, best[1])
        children = _children(client, experiment_id, parent_id)
        failed = sorted((c for c in children if c.info.status != "FINISHED"), key=lambda c: c.info.run_name or "")
        client.log_metric(parent_id, "sweep/jobs", len(children))
        client.log_metric(parent_id, "sweep/failed_jobs", len(failed))
        client.set_terminated(parent_id, "FAILED" if failed else "FINISHED")
        self.parent_id = None
        os.environ.pop(PARENT_ENV, None)
        if failed:
            names = ", ".join(c.info.run_name or c.info.run_id for c in failed)
            print(f"error: {len(failed)} of {len(children)} sweep jobs failed ({names}); MLflow parent run {parent_id}", file=sys.stderr)
            # Hydra's callback runner catches Exception only: SystemExit ends the process with this status
            sys.exit(2)

    def _end_abandoned_parent(self) -> None:
        """At exit, a sweep that never reached on_multirun_end (Ctrl-C, a job that crashed) leaves no RUNNING parent."""
        if self.parent_id is None or self.uri is None:
            return
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(tracking_uri=self.uri).set_terminated(self.parent_id, "KILLED" if _interrupted else "FAILED")
        except Exception:  # noqa: BLE001 - the process is exiting; the next start reaps it by pid
            pass
