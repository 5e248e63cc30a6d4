"""Run a training job here or in a worker process, and turn its events into metrics.

``python -m runner.train.worker <job.json>`` runs one :class:`~runner.train.job.TrainJob` and
reports events as JSON lines on its stdout; everything the libraries print goes to stderr, so
the channel stays clean. Events: ``{"kind": "metrics", "step": n, "values": {...}}``,
``{"kind": "info", "values": {...}}``, ``{"kind": "result", "values": {...}}`` and, on a bad
setting, ``{"kind": "error", "type": "ConfigError", "message": ...}``.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from tqdm import tqdm

from runner.core.errors import ConfigError, RunnerError
from runner.train.blas import fast_blas_env, link_gfortran
from runner.train.backends import run_training
from runner.train.job import TrainJob

log = logging.getLogger(__name__)

LogMetrics = Callable[[dict[str, float], Optional[int]], None]


class TrainError(RunnerError):
    """The training worker failed."""


def train(job: TrainJob, job_path: Path, log_metrics: LogMetrics) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``job`` (saved at ``job_path``); mlx on Linux in a worker with OpenBLAS when ``job.fast_blas``.

    Returns (the job's summary numbers, its info events: blas, device, resumed_from ...)."""
    forward = EventForwarder(log_metrics, job.iters)
    linux = sys.platform.startswith("linux")
    env = fast_blas_env() if (job.backend == "mlx" and job.fast_blas and linux) else None
    try:
        if env is not None:
            with tempfile.TemporaryDirectory(prefix="doc2lora-blas-") as scratch:
                result = run_worker(job_path, link_gfortran(env, Path(scratch)), forward)
        else:
            result = run_training(job, forward)
    finally:
        forward.close()
    if forward.info.get("blas") == "reference" and job.fast_blas and linux:
        log.warning("train.fast_blas=true but mlx ran on its bundled reference BLAS (~15x slower); is cmeel-openblas installed?")
    return result, forward.info


def run_worker(job_path: Path, env: dict[str, str], on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run ``python -m runner.train.worker`` with ``env``; forward its events live; return its result."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = [sys.executable, "-m", "runner.train.worker", str(job_path)]
    stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
    result: Optional[dict[str, Any]] = None
    error: Optional[dict[str, Any]] = None
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1)

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line:
                stderr_tail.append(line)
                log.debug("worker: %s", line)

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                log.debug("worker stdout: %s", line.rstrip())
                continue
            if event.get("kind") == "result":
                result = event["values"]
            elif event.get("kind") == "error":
                error = event
            else:
                on_event(event)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: stop the worker we started
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
    if error is not None and error.get("type") == "ConfigError":
        raise ConfigError(error["message"])
    if returncode != 0 or result is None:
        tail = "\n".join(stderr_tail)
        raise TrainError(f"training worker failed (exit {returncode}); last output:\n{tail}")
    return result


class EventForwarder:
    """Turns training events into ``log_metrics`` calls and a progress bar; remembers the info events."""

    def __init__(self, log_metrics: LogMetrics, iters: int):
        self.log_metrics = log_metrics
        self.info: dict[str, Any] = {}
        self.bar = tqdm(total=iters, desc="train", unit="it")

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "metrics":
            values = {k: float(v) for k, v in event["values"].items() if finite(v)}
            if values:
                self.log_metrics(values, event.get("step"))
            self._show_progress(values, event.get("step"))
        elif kind == "info":
            self.info.update(event["values"])
            log.info("train: %s", ", ".join(f"{k}={v}" for k, v in event["values"].items()))

    def _show_progress(self, values: dict[str, float], step: Optional[int]) -> None:
        if step is not None and step > self.bar.n:
            self.bar.update(min(step, self.bar.total) - self.bar.n)
        shown = {"loss": values.get("train/loss"), "val_loss": values.get("val/loss"), "tok_s": values.get("train/tokens_per_second")}
        postfix = {k: f"{v:.3g}" for k, v in shown.items() if v is not None}
        if postfix:
            self.bar.set_postfix(postfix)

    def close(self) -> None:
        self.bar.close()


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m runner.train.worker job.json``: run the job, report events on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m runner.train.worker JOB.json\n")
        return 2
    # keep the real stdout for events; route every library print (rich, tqdm, print) to stderr
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    def emit(event: dict[str, Any]) -> None:
        channel.write(json.dumps(event, default=float) + "\n")

    try:
        job = TrainJob.from_json(Path(argv[0]).read_text())
        result = run_training(job, emit)
    except ConfigError as exc:
        emit({"kind": "error", "type": "ConfigError", "message": str(exc)})
        return 3
    emit({"kind": "result", "values": result})
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
