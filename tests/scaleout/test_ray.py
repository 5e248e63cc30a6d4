"""A sweep through ``hydra/launcher=ray_cluster`` on a real Ray head started here (127.0.0.1), logging to a
real MLflow tracking server over HTTP: the README's command, two jobs that share the stage cache,
runs nested under one parent, and a bad value that fails only its own job.

The Ray workers are started by ``ray start``, before the sweep: they never see the sweep's
environment. The parent run id and the tracking URI reach them with the pickled sweep callback
(runner/cli/sweep.py on_job_start); MLFLOW_TRACKING_URI is set here for the submitting command only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .engines import (
    REPO_ROOT,
    RayHead,
    Service,
    Sweep,
    readme_command,
    run_sweep,
    runner_argv,
    sweep_children,
)

RAY_SWEEP = ".venv/bin/python -m runner -m hydra/launcher=ray_cluster"


@pytest.fixture(scope="module")
def ray_sweeps(ray_head: RayHead, mlflow_server: Service, tmp_path_factory: pytest.TempPathFactory) -> tuple[Sweep, Sweep]:
    """The README's Ray sweep, then the same launcher with a bad value in its second job, on one cache."""
    workdir = tmp_path_factory.mktemp("ray_sweep")
    env = ray_head.env(MLFLOW_TRACKING_URI=mlflow_server.url)
    readme = readme_command(RAY_SWEEP)
    experiment = ["tracking.experiment=scaleout-ray"]
    good = run_sweep([*runner_argv(readme), *experiment], workdir, env)
    assert good.result.returncode == 0, good.output[-6000:]
    bad_argv = [a if not a.startswith("train.iters=") else "train.iters=2,-1" for a in runner_argv(readme)]
    bad = run_sweep([*bad_argv, *experiment], workdir, env)
    return good, bad


def test_the_readme_sweep_runs_both_jobs_on_ray_under_one_parent(ray_sweeps, mlflow_server: Service) -> None:
    good, _ = ray_sweeps
    assert "Connecting to existing Ray cluster at address: 127.0.0.1:" in good.output  # joined, not started its own
    client = MlflowClient(tracking_uri=mlflow_server.url)
    parent_id = good.parent_run_id()
    children = sweep_children(client, parent_id)
    assert sorted(children) == ["job0", "job1"]
    assert client.get_run(parent_id).info.status == "FINISHED"
    assert {run.info.status for run in children.values()} == {"FINISHED"}
    assert {run.data.params["train/iters"] for run in children.values()} == {"2", "3"}
    # paths.root is the submitting folder (hydra.runtime.cwd), not the Ray worker's working directory
    assert {run.data.params["paths/root"] for run in children.values()} == {str(REPO_ROOT)}


def test_ray_jobs_share_the_stage_cache(ray_sweeps, mlflow_server: Service) -> None:
    good, _ = ray_sweeps
    for stage in ("generate", "answer", "dataset", "prepare_model"):
        assert len(good.stage_keys(stage)) == 1, stage
    assert len(good.stage_keys("train")) == 2
    children = sweep_children(MlflowClient(tracking_uri=mlflow_server.url), good.parent_run_id())
    # the two jobs ran at once: one generated, the other waited on the cache lock and reused it
    assert sorted(run.data.metrics["pipeline/generate/cache_hit"] for run in children.values()) == [0.0, 1.0]


def test_ray_jobs_log_loss_curves_datasets_and_artifacts_over_http(ray_sweeps, mlflow_server: Service, tmp_path: Path) -> None:
    good, _ = ray_sweeps
    client = MlflowClient(tracking_uri=mlflow_server.url)
    for run in sweep_children(client, good.parent_run_id()).values():
        iters = int(run.data.params["train/iters"])
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(1, iters + 1))  # debug=tiny reports every step
        contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
        assert "training" in contexts  # (a validation split only when the tiny data set has one)
        config = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path)))
        assert f"iters: {iters}" in config.read_text()  # the job's own config, through the server's artifact proxy


def test_a_bad_value_fails_only_its_ray_job(ray_sweeps, mlflow_server: Service) -> None:
    _, bad = ray_sweeps
    assert bad.result.returncode == 2, bad.output[-4000:]
    assert "error: 1 of 2 sweep jobs failed (job1)" in bad.result.stderr
    client = MlflowClient(tracking_uri=mlflow_server.url)
    parent_id = bad.parent_run_id()
    children = sweep_children(client, parent_id)
    assert client.get_run(parent_id).info.status == "FAILED"
    assert (children["job0"].info.status, children["job1"].info.status) == ("FINISHED", "FAILED")
    assert "train.iters=-1 is invalid" in children["job1"].data.tags["error"]
    assert "pipeline/train/cache_hit" in children["job0"].data.metrics  # job0 ran to the end
    assert "pipeline/ingest/cache_hit" not in children["job1"].data.metrics  # job1 stopped before any stage
