"""A team's tracking server: a real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts served by
the server), found through $MLFLOW_TRACKING_URI as a cluster job finds it; a pipeline run logs its
params, metrics, datasets and artifacts over HTTP, and everything reads back through the client and
``runner.cli.compare``. (Loss curves with steps over HTTP: the Ray sweep, test_ray.py.)"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from runner.cli import compare

from runner.engine import tracking
from runner.engine.pipeline import RunInfo, run_pipeline

from .engines import Service

EXPERIMENT = "scaleout-tracking"


@pytest.fixture(scope="module")
def run_over_http(mlflow_server: Service, make_cfg: Callable[..., DictConfig], tmp_path_factory: pytest.TempPathFactory):
    """The tiny pipeline up to the dataset, tracked by the server named in $MLFLOW_TRACKING_URI."""
    workdir = tmp_path_factory.mktemp("tracking_server")
    doc = workdir / "manual.md"
    doc.write_text(
        "# Relay manual\n\nThe zorblax harbour daemon listens on port 7311 and rotates its quasar journal every night.\n\n"
        "The lantern cache keeps at most 64 fennel entries before evicting the oldest one.\n",
        encoding="utf-8",
    )
    overrides = ["debug=tiny", "llm.n_threads=1", "until=dataset", f"ingest.documents=[{doc}]", "tracking.uri=null", f"tracking.experiment={EXPERIMENT}"]
    cfg = make_cfg(overrides, workdir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        assert tracking.resolve_tracking_uri(cfg) == mlflow_server.url
        summary = run_pipeline(cfg, RunInfo(run_name="over-http"))
    return summary


def test_a_run_logged_over_http_reads_back_through_the_client(run_over_http, mlflow_server: Service, tmp_path: Path) -> None:
    summary = run_over_http
    client = MlflowClient(tracking_uri=mlflow_server.url)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "over-http"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.params["chunk/size"] == "600"
    assert run.data.metrics["dataset/train_size"] == summary["metrics"]["dataset/train_size"] > 0
    assert run.data.tags["stage_key/dataset"] == summary["stages"]["dataset"]["key"]
    # the dataset stage's splits as run inputs (the run's Datasets panel)
    contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
    assert "training" in contexts
    # artifacts go through the server (mlflow-artifacts:), not to a path only this machine has
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    logged = Path(client.download_artifacts(run.info.run_id, "dataset/train.jsonl", str(tmp_path)))
    assert logged.read_bytes() == (Path(summary["stages"]["dataset"]["path"]) / "train.jsonl").read_bytes()


def test_compare_finds_the_run_on_the_server(run_over_http, mlflow_server: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    summary = run_over_http
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    table = tmp_path / "compare.csv"
    assert compare.main(["--experiment", EXPERIMENT, "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [row["run_id"] for row in rows] == [summary["run_id"]]
    assert summary["run_id"] in capsys.readouterr().out
