"""Hydra callback: one MLflow parent run per multirun, each job a child run under it.

The parent records the sweep's overrides and, when the sweep ends, the best child by
``eval.optimize_metric``. Children find the parent through an environment variable,
which also reaches joblib/loky worker processes started after the sweep begins.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner import tracking

log = logging.getLogger(__name__)

PARENT_ENV = "DOC2LORA_PARENT_RUN_ID"


def _tracking_uri(config: DictConfig) -> str:
    root = Path(os.getcwd())
    return tracking.resolve_tracking_uri(config.tracking.uri, root / config.paths.mlruns_dir)


def best_child(client: Any, experiment_id: str, parent_id: str, metric: str, maximize: bool = True) -> Optional[tuple[str, float]]:
    """(run id, value) of the child with the best value of ``metric``, or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10000)
    scored = [(r.info.run_id, r.data.metrics[metric]) for r in runs if metric in r.data.metrics and not math.isnan(r.data.metrics[metric])]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda item: item[1])


class MlflowSweepCallback(Callback):
    def __init__(self, maximize: bool = True):
        self.maximize = maximize
        self.parent_id: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = _tracking_uri(config)
        tracker = tracking.Tracker(uri, config.tracking.experiment, artifact_root=Path(os.getcwd()) / config.paths.mlruns_dir / "artifacts")
        overrides = tracking.mask_overrides(list(config.hydra.overrides.task))
        run = tracker.mlflow.tracking.MlflowClient().create_run(
            tracker.mlflow.get_experiment_by_name(config.tracking.experiment).experiment_id,
            run_name="sweep",
            tags={"sweep": "parent", "overrides": " ".join(overrides)[: tracking.MAX_PARAM_CHARS], "git_commit": tracking.git_commit(Path(os.getcwd()))},
        )
        self.parent_id = run.info.run_id
        client = tracker.mlflow.tracking.MlflowClient()
        for i, override in enumerate(overrides):
            client.log_param(self.parent_id, f"sweep/override_{i}", override)
        os.environ[PARENT_ENV] = self.parent_id
        log.info("sweep parent MLflow run %s", self.parent_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent_id is None:
            return
        import mlflow

        mlflow.set_tracking_uri(_tracking_uri(config))
        client = mlflow.tracking.MlflowClient()
        parent = client.get_run(self.parent_id)
        metric = tracking.metric_name(config.eval.optimize_metric)
        best = best_child(client, parent.info.experiment_id, self.parent_id, metric, self.maximize)
        if best is not None:
            client.set_tag(self.parent_id, "best_child_run_id", best[0])
            client.log_metric(self.parent_id, f"best/{metric}", best[1])
            log.info("sweep best child %s with %s = %.4f", best[0], metric, best[1])
        client.set_terminated(self.parent_id, "FINISHED")
        os.environ.pop(PARENT_ENV, None)



