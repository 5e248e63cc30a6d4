"""Train: LoRA on the dataset stage's jsonl files, with mlx-lm (default) or transformers + PEFT.

On Linux, mlx's CPU wheel ships a reference BLAS that trains ~15x slower than
OpenBLAS; with ``train.fast_blas`` the mlx job runs in a worker process whose
environment preloads the OpenBLAS from ``cmeel-openblas`` (this has to happen
before the process starts). The worker streams metrics as JSON lines, forwarded
here to ``ctx.log_metrics`` as they arrive.

Outputs in the work folder: ``adapter/`` (the backend's own format with its config),
``adapter.gguf`` (llama.cpp LoRA), ``checkpoints/`` (every ``train.save_every``
iterations; a killed run resumes from the newest) and ``fused/`` with ``train.fuse``.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import logging
import math
import os
import site
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from tqdm import tqdm

from runner.cache import hash_source
from runner.errors import ConfigError, RunnerError
from runner.stage import StageContext, StageResult
from runner.stages.export import CONVERTER, mlx_adapter_to_peft, peft_adapter_to_gguf
from runner.models import prepared_hf_dir, prepared_mlx_dir
from runner.train_worker import CHECKPOINTS_DIR, TrainJob, run_training

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
ADAPTER_GGUF = "adapter.gguf"
PEFT_COPY_DIR = "adapter_peft"  # mlx backend only: the PEFT layout the GGUF is converted from
FUSED_DIR = "fused"
JOB_FILE = "train_job.json"

_OPENBLAS = Path("cmeel.prefix") / "lib" / "libopenblas.so.0"


class TrainError(RunnerError):
    """The training worker failed."""


def adapter_dir(stage_dir: Path) -> Path:
    """The trained adapter folder (mlx-lm or PEFT format, with its adapter_config.json)."""
    return Path(stage_dir) / ADAPTER_DIR


def adapter_gguf(stage_dir: Path) -> Path:
    """The adapter as a llama.cpp GGUF LoRA (``Llama(model_path=..., lora_path=...)``)."""
    return Path(stage_dir) / ADAPTER_GGUF


def code_fingerprint(cfg: Any, root: Path) -> list[str]:
    """Hashes of the code this stage runs outside its own module, for the pipeline's cache key."""
    from runner import train_worker
    from runner.stages import export, prepare_model

    return [hash_source(m.__file__) for m in (train_worker, export, prepare_model)] + [hash_source(CONVERTER)]


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Train a LoRA adapter, export it to GGUF, report losses before and after."""
    started = time.perf_counter()
    job = build_job(cfg, ctx)
    job_path = ctx.work_dir / JOB_FILE
    job_path.write_text(job.to_json())

    forward = _MetricForwarder(ctx.log_metrics, job.iters)
    env = fast_blas_env() if (job.backend == "mlx" and cfg.train.fast_blas and sys.platform.startswith("linux")) else None
    if env is not None:
        with tempfile.TemporaryDirectory(prefix="doc2lora-blas-") as scratch:
            env = _link_gfortran(env, Path(scratch))
            result = run_worker(job_path, env, forward)
    else:
        result = run_training(job, forward)
    forward.close()
    if forward.info.get("blas") == "reference" and cfg.train.fast_blas and sys.platform.startswith("linux"):
        log.warning("train.fast_blas=true but mlx ran on its bundled reference BLAS (~15x slower); is cmeel-openblas installed?")

    export_started = time.perf_counter()
    base_hf = Path(job.base_hf_dir)
    peft_dir = adapter_dir(ctx.work_dir)
    if job.backend == "mlx":
        peft_dir = ctx.work_dir / PEFT_COPY_DIR
        mlx_adapter_to_peft(adapter_dir(ctx.work_dir), peft_dir, base_hf)
    peft_adapter_to_gguf(peft_dir, base_hf, adapter_gguf(ctx.work_dir))

    metrics = {k: float(v) for k, v in result.items() if _finite(v)}
    metrics["export_seconds"] = time.perf_counter() - export_started
    metrics["seconds"] = time.perf_counter() - started
    log.info(
        "val loss %.3f -> %.3f, %.0f tokens/s (%s)",
        result.get("val/loss_before", float("nan")),
        result.get("val/loss_after", float("nan")),
        result.get("tokens_per_second", float("nan")),
        forward.info.get("blas") or forward.info.get("device") or job.backend,
    )
    artifacts = [ADAPTER_DIR, ADAPTER_GGUF, JOB_FILE]
    summary = {"backend": job.backend, **forward.info}
    if job.fuse_dir:
        summary["fused_dir"] = FUSED_DIR
    return StageResult(metrics=metrics, artifacts=artifacts, summary=summary)


def build_job(cfg: Any, ctx: StageContext) -> TrainJob:
    """Translate ``cfg.train`` and the upstream folders into a :class:`TrainJob`."""
    train = cfg.train
    prepared = ctx.inputs["prepare_model"]
    base_hf = prepared_hf_dir(prepared)
    weights = base_hf
    if train.quantize.bits:
        quantized = prepared_mlx_dir(prepared)
        if train.backend == "mlx":
            if quantized is None:
                raise ConfigError("train.quantize.bits is set but prepare_model wrote no MLX-quantized copy")
            weights = quantized
        else:
            log.warning("train.quantize.bits applies to the mlx backend only; peft trains the full-precision weights")
    mask_prompt = bool(train.mask_prompt)
    if cfg.dataset.format == "text" and mask_prompt:
        log.warning("dataset.format=text has no prompt/answer split: training on every token (mask_prompt ignored)")
        mask_prompt = False
    return TrainJob(
        backend=train.backend,
        model_dir=str(weights),
        base_hf_dir=str(base_hf),
        data_dir=str(ctx.inputs["dataset"]),
        data_format=cfg.dataset.format,
        adapter_dir=str(adapter_dir(ctx.work_dir)),
        checkpoint_dir=str(ctx.work_dir / CHECKPOINTS_DIR),
        iters=train.iters,
        num_layers=train.num_layers,
        rank=train.rank,
        scale=train.scale,
        dropout=train.dropout,
        target_modules=list(train.target_modules) if train.target_modules else None,
        batch_size=train.batch_size,
        learning_rate=train.learning_rate,
        lr_schedule=train.lr_schedule,
        warmup_steps=train.warmup_steps,
        max_seq_length=train.max_seq_length,
        grad_checkpoint=train.grad_checkpoint,
        steps_per_report=train.steps_per_report,
        steps_per_eval=train.steps_per_eval,
        save_every=train.save_every,
        val_batches=train.val_batches,
        seed=train.seed,
        mask_prompt=mask_prompt,
        fuse_dir=str(ctx.work_dir / FUSED_DIR) if train.fuse else None,
    )


def fast_blas_env(base: Optional[dict[str, str]] = None) -> Optional[dict[str, str]]:
    """Environment that preloads cmeel-openblas into an mlx process; None (with a warning) when unavailable.

    ``LD_PRELOAD`` makes OpenBLAS's ``cblas_*`` symbols win over the reference BLAS that
    mlx's wheel links. One OpenBLAS thread is fastest here (mlx already runs ops in
    parallel); an ``OPENBLAS_NUM_THREADS`` already in the environment is kept.
    """
    env = dict(os.environ if base is None else base)
    openblas = _find_site_file(_OPENBLAS)
    if openblas is None:
        log.warning("cmeel-openblas not found: mlx trains with its reference BLAS (~15x slower); pip install cmeel-openblas")
        return None
    mlx_libs = _mlx_cpu_libs()
    paths = [str(mlx_libs)] if mlx_libs else []
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    env["LD_PRELOAD"] = " ".join([str(openblas)] + env.get("LD_PRELOAD", "").split())
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def _link_gfortran(env: dict[str, str], scratch: Path) -> dict[str, str]:
    """OpenBLAS needs ``libgfortran.so.5``; mlx's wheel has one under a hashed name: link it in ``scratch``."""
    mlx_libs = _mlx_cpu_libs()
    candidates = sorted(mlx_libs.glob("libgfortran*.so*")) if mlx_libs else []
    if not candidates:
        return env  # rely on a system libgfortran5; the worker reports which BLAS it got
    (scratch / "libgfortran.so.5").symlink_to(candidates[0])
    env = dict(env)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(scratch)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    return env


def run_worker(job_path: Path, env: dict[str, str], on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run ``python -m runner.train_worker`` with ``env``; forward its events live; return its result."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = [sys.executable, "-m", "runner.train_worker", str(job_path)]
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


class _MetricForwarder:
    """Turns worker events into ``ctx.log_metrics`` calls and remembers the info events."""

    def __init__(self, log_metrics: Callable[[dict[str, float], Optional[int]], None], iters: int):
        self.log_metrics = log_metrics
        self.info: dict[str, Any] = {}
        self.bar = tqdm(total=iters, desc="train", unit="it")

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "metrics":
            values = {k: float(v) for k, v in event["values"].items() if _finite(v)}
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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _site_dirs() -> list[Path]:
    dirs = [Path(p) for p in sys.path if p]
    try:
        dirs += [Path(p) for p in site.getsitepackages()]
    except AttributeError:  # some virtualenv builds lack it
        pass
    return dirs


def _find_site_file(relative: Path) -> Optional[Path]:
    for folder in _site_dirs():
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def _mlx_cpu_libs() -> Optional[Path]:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        libs = Path(location).parent / "mlx_cpu.libs"
        if libs.is_dir():
            return libs
    return None
