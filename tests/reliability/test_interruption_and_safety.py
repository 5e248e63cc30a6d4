"""Interruption and safety: a killed or terminated run never stays RUNNING in MLflow, finished
stages survive it, secrets never reach MLflow, nothing is unpickled from the cache, the UI binds
to localhost. (Bad documents, bad configs, LLM faults and the generate kill test live beside the
stage they exercise: tests/stages/test_ingest.py, tests/test_config.py,
tests/llm/test_openai_compat.py, tests/stages/test_generate.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from runner.pipeline import RunInfo, run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _start(tmp_path: Path, doc: Path, extra: list[str] = ()) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "runner", "until=index", f"ingest.documents=[{doc}]", "chunk.size=200", "chunk.overlap=0",
        f"paths.output_dir={tmp_path / 'outputs'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}", *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _long_doc(tmp_path: Path) -> Path:
    """Enough chunks that embedding them takes seconds, so a signal surely lands mid-stage."""
    path = tmp_path / "docs" / "long.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    paragraphs = [f"Setting number {i} of the zorblax daemon defaults to {i * 7} units and rotates every {i} hours." for i in range(600)]
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def _wait_for_running_run(tmp_path: Path, proc: subprocess.Popen, timeout: float = 120.0):
    """Read the job's log until it reports its MLflow run (the store is created by then), then fetch it.

    Opening the store earlier would race the job's own schema migration."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if "MLflow run " in line:
            break
        assert time.monotonic() < deadline, "the run never started"
    else:
        raise AssertionError("the job ended before starting its run")
    experiment = _client(tmp_path).get_experiment_by_name("doc2lora")
    (run,) = _client(tmp_path).search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    # the index stage loads the embedding model (seconds): a signal sent now lands mid-stage
    for line in proc.stdout:
        if "stage index    running" in line:
            return run
    raise AssertionError("the job ended before its index stage")


def test_sigterm_ends_the_run_as_killed_and_a_rerun_reuses_finished_stages(tmp_path: Path) -> None:
    doc = _long_doc(tmp_path)
    proc = _start(tmp_path, doc)
    run = _wait_for_running_run(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "interrupted" in output
    assert _client(tmp_path).get_run(run.info.run_id).info.status == "KILLED"

    rerun = _start(tmp_path, doc)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0
    assert "stage ingest   cached" in output  # finished before the signal, so reused
    cache = tmp_path / "outputs" / "cache"
    assert not list(cache.glob("*/*.partial/_stage.json"))  # a half-written stage is never committed


def test_kill_9_leaves_no_run_running_after_the_next_start(tmp_path: Path) -> None:
    doc = _long_doc(tmp_path)
    proc = _start(tmp_path, doc)
    run = _wait_for_running_run(tmp_path, proc)
    proc.kill()  # SIGKILL: the process cannot mark its own run
    proc.communicate(timeout=30)
    assert _client(tmp_path).get_run(run.info.run_id).info.status == "RUNNING"

    rerun = _start(tmp_path, doc)
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0
    assert _client(tmp_path).get_run(run.info.run_id).info.status == "KILLED"


def test_secrets_never_reach_mlflow(composed_cfg, mlflow_client: MlflowClient, tiny_doc: Path, tmp_path: Path, monkeypatch) -> None:
    secret_key, password = "sk-test-0123456789abcdef", "hunter2-pdf-pass"
    monkeypatch.setenv("OPENAI_API_KEY", secret_key)
    overrides = ["until=ingest", f"ingest.documents=[{tiny_doc}]", "llm=openai", f"ingest.pdf_password={password}"]
    summary = run_pipeline(composed_cfg(overrides), RunInfo(overrides=overrides))
    run = mlflow_client.get_run(summary["run_id"])
    logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert run.data.params["llm/api_key_env"] == "OPENAI_API_KEY"
    assert run.data.params["ingest/pdf_password"] == "***"
    assert secret_key not in logged and password not in logged
    downloaded = Path(mlflow_client.download_artifacts(summary["run_id"], "", str(tmp_path / "artifacts")))
    for path in downloaded.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert secret_key.encode() not in content and password.encode() not in content, path
    for manifest in (tmp_path / "outputs" / "cache").rglob("_stage.json"):
        assert password not in manifest.read_text()


def test_cache_holds_no_pickle(tiny_index) -> None:
    cache = Path(tiny_index.summary["stages"]["index"]["path"]).parents[1]
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.suffix not in {".pkl", ".pickle", ".joblib"}, path
        assert not path.read_bytes()[:2] in PICKLE_MAGIC, path


def test_mlflow_ui_binds_localhost() -> None:
    ui_recipe = [line for line in (REPO_ROOT / "Makefile").read_text().splitlines() if "mlflow ui" in line]
    assert ui_recipe and all("--host 127.0.0.1" in line for line in ui_recipe)
