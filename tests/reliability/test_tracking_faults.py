"""Item 5, tracking faults: a remote MLflow server that refuses connections, never answers or answers
503 fails the run at start-up with one clear line (not after an hour of generation); with
``tracking.required=false`` the run goes on and logs to the local store."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from runner.engine import tracking
from runner.core.errors import TrackingError
from runner.engine.pipeline import run_pipeline

ITEM = "tracking faults"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_check_server_fails_fast_with_a_hint_and_ignores_local_stores(reliability_report) -> None:
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"127\.0\.0\.1:9 is unreachable .*tracking\.required=false") as excinfo:
        tracking.check_server(UNREACHABLE, timeout_s=2)
    elapsed = time.perf_counter() - started
    assert elapsed < 5
    tracking.check_server("sqlite:///nowhere/mlflow.db")  # not a server: nothing to check
    tracking.check_server("file:///tmp/mlruns")
    reliability_report.record(item=ITEM, case="tracking URI where nothing listens (connection refused)", outcome=f"TrackingError in {elapsed:.1f} s: {excinfo.value}")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung server, a black-holing proxy)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes the handshakes; nobody ever reads or replies
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def unavailable_server() -> Iterator[str]:
    """An HTTP server whose /health answers 503."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_unreachable_server_with_tracking_required_stops_at_start_up(
    composed_cfg: Callable[..., DictConfig], tiny_doc: Path, tmp_path: Path, reliability_report
) -> None:
    cfg = composed_cfg([f"ingest.documents=[{tiny_doc}]", f"tracking.uri={UNREACHABLE}", "tracking.required=true"])
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"tracking server http://127\.0\.0\.1:9 is unreachable"):
        run_pipeline(cfg)
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "outputs" / "cache").exists()  # no stage ran
    reliability_report.record(item=ITEM, case="pipeline with tracking.uri refusing connections, tracking.required=true", outcome="TrackingError before any stage")


@pytest.mark.parametrize("kind", ["silent", "unavailable"])
def test_a_hung_or_failing_server_stops_the_run_at_start_up(
    kind: str, request: pytest.FixtureRequest, composed_cfg: Callable[..., DictConfig], tiny_doc: Path, tmp_path: Path, reliability_report
) -> None:
    uri = request.getfixturevalue(f"{kind}_server")
    cfg = composed_cfg([f"ingest.documents=[{tiny_doc}]", f"tracking.uri={uri}", "tracking.required=true"])
    started = time.perf_counter()
    with pytest.raises(TrackingError, match=r"is unreachable \((timed out|Service Unavailable)\); start it") as excinfo:
        run_pipeline(cfg)
    elapsed = time.perf_counter() - started
    assert elapsed < 15  # the health check's 5 s timeout, not the default of the MLflow client's retries
    assert not (tmp_path / "outputs" / "cache").exists()
    case = "accepts connections, never answers" if kind == "silent" else "answers HTTP 503"
    reliability_report.record(item=ITEM, case=f"tracking server that {case}", outcome=f"TrackingError in {elapsed:.1f} s, before any stage: {excinfo.value}")


def test_unreachable_server_without_tracking_required_logs_locally(
    composed_cfg: Callable[..., DictConfig], tiny_doc: Path, caplog: pytest.LogCaptureFixture, reliability_report
) -> None:
    cfg = composed_cfg(
        ["until=ingest", f"ingest.documents=[{tiny_doc}]", f"tracking.uri={UNREACHABLE}", "tracking.required=false"]
    )
    summary = run_pipeline(cfg)

    assert any("unreachable" in r.getMessage() and "tracking.required=false" in r.getMessage() for r in caplog.records)
    # the fallback is the SQLite store under paths.mlruns_dir
    local_uri = tracking.default_tracking_uri(Path(cfg.paths.mlruns_dir))
    run = MlflowClient(tracking_uri=local_uri).get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["pipeline/stages_run"] == 1
    reliability_report.record(
        item=ITEM, case="tracking.uri refusing connections, tracking.required=false",
        outcome="a warning, then the run proceeds and logs to the local SQLite store (FINISHED)", items_lost=1 - int(run.data.metrics["pipeline/stages_run"]),
    )


def test_cli_with_an_unreachable_server_prints_one_line(runner_cli, tiny_doc: Path, reliability_report) -> None:
    proc = runner_cli.run(f"ingest.documents=[{tiny_doc}]", f"tracking.uri={UNREACHABLE}")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "MLflow tracking server http://127.0.0.1:9 is unreachable" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not runner_cli.cache.exists()
    reliability_report.record(item=ITEM, case="CLI with tracking.uri=http://127.0.0.1:9", outcome=f"exit 2 before any stage, one line: {errors[0]}")
