"""Fixtures: a Ray head, an MLflow tracking server and two llama.cpp servers, each on 127.0.0.1,
started once and stopped whatever happens (tests/scaleout/engines.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_server import free_port

from .engines import (
    BIN,
    LOOPBACK_RAY,
    RayHead,
    Service,
    llama_server_missing,
    readme_command,
    start_llama_servers,
    start_service,
    wait_for_ray,
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``mlflow server`` on 127.0.0.1: SQLite backend, artifacts stored and served by the server."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"),
    ]
    url = f"http://127.0.0.1:{port}"
    service = start_service(command, folder / "server.log", f"{url}/health", url, timeout_s=180)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    """The README's ``ray start --head`` on 127.0.0.1, on free ports and in a temp folder of its own,
    kept in the foreground (--block) so that stopping its process group stops the whole cluster."""
    pytest.importorskip("ray", reason="Ray is an extra: pip install -e '.[ray]'")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    readme = readme_command(".venv/bin/ray start --head")
    port = free_port()
    args = [a.replace("6379", str(port)) for a in readme[1:]]
    # socket paths live under the temp folder and must stay short (108 bytes)
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    own = [
        "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", "--object-store-memory=100000000",
        f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
    ]
    env = {**os.environ, **LOOPBACK_RAY}
    log = temp / "ray_start.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([str(BIN / "ray"), *args, *own], stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    service = Service(proc, f"127.0.0.1:{port}", log)
    try:
        wait_for_ray(service, env, timeout_s=180)
        yield RayHead(service, f"127.0.0.1:{port}")
    finally:
        service.stop(grace_s=10)  # then SIGKILL: every Ray process of this cluster is in the group
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def llama_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Service]]:
    """Two llama.cpp servers of the same model: a pool."""
    missing = llama_server_missing()
    if missing:
        pytest.skip(missing)
    services = start_llama_servers(2, tmp_path_factory.mktemp("llama_servers"))
    yield services
    for service in services:
        service.stop()

