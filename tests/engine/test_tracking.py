"""MLflow tracking: where runs go (one setup for runs, sweeps, compare and reproduce), params, tags and
status of a run, secrets masked. (An unreachable server for a run: tests/reliability/test_tracking_faults.py;
a real tracking server: tests/scaleout/test_tracking_server.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from runner.cli import compare

from runner.engine import tracking
from runner.core.errors import TrackingError
from runner.engine.pipeline import RunInfo, run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_flatten_joins_nested_keys_with_slashes() -> None:
    nested = {"chunk": {"size": 5, "unit": "chars"}, "retriever": {"weights": {"bm25": 0.3}}, "extra": {}, "until": None}
    assert tracking.flatten(nested) == {
        "chunk/size": 5,
        "chunk/unit": "chars",
        "retriever/weights/bm25": 0.3,
        "extra": {},
        "until": None,
    }


def test_params_mask_secrets_keep_env_var_names_and_cut_long_values() -> None:
    params = tracking.params_from_config(
        {
            "ingest": {"pdf_password": "s3cret", "documents": ["a.pdf", "b.md"]},
            "llm": {"api_key_env": "OPENAI_API_KEY", "api_key": "sk-123", "token_budget": 0},
            "prompts": {"answer_user": "x" * 10_000},
            "until": None,
        }
    )
    assert params["ingest/pdf_password"] == "***"
    assert params["llm/api_key"] == "***"
    assert params["llm/api_key_env"] == "OPENAI_API_KEY"  # a variable name, not a secret
    assert params["llm/token_budget"] == "0"  # falsy values have nothing to hide
    assert params["ingest/documents"] == "['a.pdf', 'b.md']"
    assert params["until"] == "null"
    assert len(params["prompts/answer_user"]) == tracking.MAX_PARAM_CHARS


def test_tracking_uri_prefers_config_then_environment_then_local_sqlite(
    composed_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_dir = tmp_path / "team" / "mlruns"
    cfg = composed_cfg([f"paths.mlruns_dir={local_dir}", "tracking.uri=file:///cfg/mlruns"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///env/mlruns")
    assert tracking.resolve_tracking_uri(cfg) == "file:///cfg/mlruns"
    cfg.tracking.uri = None
    assert tracking.resolve_tracking_uri(cfg) == "file:///env/mlruns"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert not local_dir.exists()
    assert tracking.resolve_tracking_uri(cfg) == f"sqlite:///{local_dir.resolve()}/mlflow.db"
    assert local_dir.is_dir()  # SQLite needs the folder; the experiment's artifacts go there too


def test_an_unreachable_server_fails_or_falls_back_to_the_local_store(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg([f"paths.mlruns_dir={tmp_path / 'local'}", "tracking.uri=http://127.0.0.1:9", "tracking.required=true"])
    with pytest.raises(TrackingError, match=r"127\.0\.0\.1:9 is unreachable"):
        tracking.resolve_tracking_uri(cfg)
    cfg.tracking.required = False
    assert tracking.resolve_tracking_uri(cfg) == f"sqlite:///{(tmp_path / 'local').resolve()}/mlflow.db"


def test_run_records_params_tags_artifacts_and_status(
    composed_cfg: Callable[..., DictConfig], mlflow_client: MlflowClient, tiny_doc: Path, repo_root: Path
) -> None:
    cfg = composed_cfg(["until=ingest", f"ingest.documents=[{tiny_doc}]", "chunk.size=321", "ingest.pdf_password=s3cret"])
    summary = run_pipeline(cfg, RunInfo(run_name="tracked", extra_tags={"choice/chunk": "default"}))

    run = mlflow_client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tracked"
    assert mlflow_client.get_experiment(run.info.experiment_id).name == cfg.tracking.experiment
    params = run.data.params
    assert params["chunk/size"] == "321"
    assert params["retriever/weights/dense"] == "0.7"
    assert params["ingest/pdf_password"] == "***"
    assert params["paths/root"] == str(repo_root)
    tags = run.data.tags
    assert tags["config_hash"] == summary["config_hash"]
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert tags["choice/chunk"] == "default"
    assert tags["stage_key/ingest"] == summary["stages"]["ingest"]["key"]
    assert run.data.metrics["ingest/documents"] == 1
    assert run.data.metrics["pipeline/ingest/duration_s"] >= 0
    assert "s3cret" not in str(params) + str(tags)
    logged = [a.path for a in mlflow_client.list_artifacts(run.info.run_id, "ingest")]
    assert logged == ["ingest/ingest_report.json"]


def test_secret_overrides_are_masked_in_the_overrides_tag(
    composed_cfg: Callable[..., DictConfig], mlflow_client: MlflowClient, tiny_doc: Path
) -> None:
    overrides = ["until=ingest", f"ingest.documents=[{tiny_doc}]", "ingest.pdf_password=s3cret"]
    summary = run_pipeline(composed_cfg(overrides), RunInfo(overrides=overrides))
    tags = mlflow_client.get_run(summary["run_id"]).data.tags
    assert "until=ingest" in tags["overrides"]
    assert "s3cret" not in tags["overrides"]


def test_compare_finds_runs_where_paths_mlruns_dir_puts_them(
    composed_cfg: Callable[..., DictConfig], tiny_doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "team" / "mlruns"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = composed_cfg(["until=ingest", f"ingest.documents=[{tiny_doc}]", "tracking.uri=null", f"paths.mlruns_dir={store}"])
    summary = run_pipeline(cfg)
    table = tmp_path / "compare.csv"
    assert compare.main(["--csv", str(table), f"paths.mlruns_dir={store}"]) == 0
    assert summary["run_id"] in table.read_text()
    # without the override it looks in ./mlruns of the working directory, where no run is
    monkeypatch.chdir(tmp_path)
    assert compare.main(["--csv", str(tmp_path / "other.csv")]) == 1


def test_a_sweep_with_an_unreachable_tracking_server_stops_before_any_job(tiny_doc: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "runner", "-m", "until=ingest", f"ingest.documents=[{tiny_doc}]", "chunk.size=500,600",
        "tracking.uri=http://127.0.0.1:9", f"paths.output_dir={tmp_path / 'outputs'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    started = time.perf_counter()
    proc = subprocess.run(command, check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: MLflow tracking server http://127.0.0.1:9 is unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr and time.perf_counter() - started < 60
    assert not (tmp_path / "outputs" / "cache").exists()  # no job started


def _log_shared_dataset(uri: str, data: str, run_name: str, barrier, results) -> None:
    tracker = tracking.Tracker(uri, "shared-dataset")
    tracker.start(run_name, {})
    barrier.wait()  # every process logs at the same moment, as two sweep jobs do after one cached stage
    try:
        tracker.log_dataset(Path(data), context="training", name="dataset-training-shared")
        results.put("logged")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}"[:300])
    tracker.end()


def test_processes_logging_the_same_dataset_at_once_all_get_it(tmp_path: Path) -> None:
    """The store checks for a dataset, then inserts it: without a retry, 3 of 6 processes failed here."""
    import multiprocessing

    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"text": "row {i}"}}\n' for i in range(20)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # the store and experiment exist before the jobs, as in a sweep; made by another process, so that
    # the forked jobs inherit no open connection to it
    make_store = f"from runner.engine import tracking; tracking.Tracker({uri!r}, 'shared-dataset')"
    subprocess.run([sys.executable, "-c", make_store], check=True, cwd=REPO_ROOT, capture_output=True, timeout=120)
    import mlflow.data  # noqa: F401 - imported once here, not in each job
    import pandas  # noqa: F401

    fork = multiprocessing.get_context("fork")
    barrier, results = fork.Barrier(4), fork.Queue()
    jobs = [fork.Process(target=_log_shared_dataset, args=(uri, str(data), f"job{i}", barrier, results)) for i in range(4)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=300)
    assert [results.get(timeout=5) for _ in jobs] == ["logged"] * 4
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("shared-dataset").experiment_id])
    assert len(runs) == 4 and all([d.dataset.name for d in r.inputs.dataset_inputs] == ["dataset-training-shared"] for r in runs)
