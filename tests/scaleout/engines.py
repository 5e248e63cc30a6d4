"""Real engines on 127.0.0.1 for the scale-out tests: services started in a process group of their own
and stopped with it, the README's commands as argv, and what a sweep left (cache, MLflow runs).

The sweep commands are read from the README's "Scaling out" section, so what the README tells a
user to run is what these tests run; a test adds only its own folders and its size (TEST_SIZE).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from scripted_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
BIN = Path(sys.executable).parent
# added to every README command: one llama.cpp thread per job on two cores, three chunks and no
# eval (train is the last stage a swept train.iters changes before eval)
TEST_SIZE = ["generate.max_chunks=3", "llm.n_threads=1", "until=train"]
# Ray on loopback only: without this Ray replaces 127.0.0.1 by the machine's outward address
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def readme_command(starts_with: str) -> list[str]:
    """The command of the README's "Scaling out" section whose first words are ``starts_with``, as argv."""
    section = README.read_text(encoding="utf-8").split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    prefix = shlex.split(starts_with)
    commands = [shlex.split(line) for line in section.splitlines() if line.startswith((".venv/", "ray "))]
    matching = [argv for argv in commands if argv[: len(prefix)] == prefix]
    assert len(matching) == 1, f"README 'Scaling out' has {len(matching)} commands starting with {starts_with!r}"
    return matching[0]


def runner_argv(readme_args: list[str]) -> list[str]:
    """A README ``.venv/bin/python -m runner ...`` command with this interpreter."""
    assert readme_args[:3] == [".venv/bin/python", "-m", "runner"], readme_args
    return [sys.executable, *readme_args[1:]]


@dataclass
class Service:
    """A server process started by a fixture, in a process group of its own."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self, grace_s: float = 30) -> None:
        """SIGTERM to the group (the server and anything it started), SIGKILL to what is left after ``grace_s``."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers of the group that outlived their parent
        except ProcessLookupError:
            pass
        self.proc.wait()


def start_service(command: list[str], log: Path, ready_url: str, url: str, timeout_s: float = 120, env: dict[str, str] | None = None) -> Service:
    """Start ``command`` and wait until ``ready_url`` answers 200 (or the process exits: the log is shown)."""
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, start_new_session=True)
    service = Service(proc, url, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            service.stop()
            raise AssertionError(f"{command[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(ready_url, timeout=2).status_code == 200:
                return service
        except requests.RequestException:
            pass
        time.sleep(0.5)
    service.stop()
    raise AssertionError(f"{ready_url} not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass
class RayHead:
    service: Service
    address: str

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command that joins this cluster (address=auto reads RAY_ADDRESS)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
        return {**base, **LOOPBACK_RAY, "RAY_ADDRESS": self.address, "HYDRA_FULL_ERROR": "1", **extra}

def wait_for_ray(service: Service, env: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise AssertionError(f"ray start exited with {service.proc.returncode}:\n{service.log.read_text()[-3000:]}")
        if "Ray runtime started" in service.log.read_text():
            status = subprocess.run([str(BIN / "ray"), "status", f"--address={service.url}"], check=False, env=env, capture_output=True, text=True, timeout=60)
            if status.returncode == 0:
                return
        time.sleep(1)
    service.stop()
    raise AssertionError(f"the Ray head did not come up in {timeout_s:.0f} s:\n{service.log.read_text()[-3000:]}")


def llama_server_missing() -> str | None:
    modules = ("sse_starlette", "starlette_context", "pydantic_settings", "uvicorn", "fastapi")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"llama_cpp.server needs the [server] extra (missing {', '.join(missing)})" if missing else None


def start_llama_servers(count: int, folder: Path, n_ctx: int = 1024) -> list[Service]:
    """``count`` x ``python -m llama_cpp.server`` on the embedded SmolLM2, one thread each."""
    from runner.core.models import resolve_gguf

    model = resolve_gguf("embedded:smollm2", REPO_ROOT)
    services: list[Service] = []
    try:
        for i in range(count):
            port = free_port()
            command = [
                sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1",
            ]
            url = f"http://127.0.0.1:{port}/v1"
            services.append(start_service(command, folder / f"llama_server_{i}.log", f"{url}/models", url, timeout_s=120))
    except BaseException:
        for service in services:
            service.stop()
        raise
    return services


# ---------------------------------------------------------------- sweeps and what they left


@dataclass
class Sweep:
    """One ``python -m runner -m ...`` run in ``workdir``: its output and the stage cache it left."""

    workdir: Path
    result: subprocess.CompletedProcess
    cache: dict[str, list[str]]  # stage -> finished cache entries (keys) right after this sweep

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def stage_keys(self, stage: str) -> list[str]:
        """The cache entries a stage had after this sweep: one per distinct key that ran."""
        return self.cache.get(stage, [])

    def parent_run_id(self) -> str:
        marker = "sweep parent MLflow run "
        line = next(line for line in self.output.splitlines() if marker in line)
        return line.split(marker, 1)[1].split()[0]


def run_sweep(argv: list[str], workdir: Path, env: dict[str, str], timeout_s: float = 1500) -> Sweep:
    folders = [f"paths.output_dir={workdir / 'outputs'}", f"paths.mlruns_dir={workdir / 'mlruns'}"]
    result = subprocess.run([*argv, *TEST_SIZE, *folders], check=False, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    cache_dir = workdir / "outputs" / "cache"
    stages = [d for d in cache_dir.iterdir() if d.is_dir()] if cache_dir.is_dir() else []
    cache = {d.name: sorted(e.name for e in d.iterdir() if e.is_dir() and not e.name.endswith(".partial")) for d in stages}
    return Sweep(workdir, result, cache)


def sweep_children(client: Any, parent_id: str) -> dict[str, Any]:
    """The parent's child runs by name (job0, job1, ...)."""
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: run for run in children}

