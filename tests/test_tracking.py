"""MLflow tracking: params, tags and status of a run, secrets masked.
(An unreachable server: tests/reliability/test_tracking_faults.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from runner import tracking
from runner.errors import TrackingError
from runner.pipeline import RunInfo, run_pipeline

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
