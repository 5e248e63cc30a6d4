"""Train: LoRA on the dataset stage's jsonl files, exported for llama.cpp and checked against the trainer.

The work itself lives in :mod:`runner.train` (backends mlx and PEFT, the shared loop, the export).
This stage builds the job from ``cfg.train`` and its inputs, runs it (mlx in a worker with OpenBLAS
on Linux), writes ``adapter.gguf`` and checks that llama.cpp with it predicts what the trained
model predicts (``train/export/top1_agreement`` against the base models' own agreement).

Outputs in the work folder: ``adapter/`` (the backend's format with its config; the adapter of the
lowest validation loss), ``adapter.gguf``, ``train_job.json``, ``checkpoints/`` (every
``train.save_every`` iterations and ``best/``; a killed run resumes from the newest),
``adapter_peft/`` (mlx only: the PEFT layout the GGUF is written from) and ``fused/`` with ``train.fuse``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from runner.core.artifacts import Dataset, Train
from runner.core.cache import hash_source
from runner.core.errors import ConfigError
from runner.core.jsonl import read_jsonl
from runner.core.models import prepared_hf_dir, prepared_mlx_dir, resolve_gguf
from runner.core.stage import StageContext, StageResult
from runner.train import worker
from runner.train.checkpoints import CHECKPOINTS_DIR
from runner.train.export import export_adapter
from runner.train.fidelity import check_export
from runner.train.job import TrainJob, iterations_for

log = logging.getLogger(__name__)

PEFT_COPY_DIR = "adapter_peft"
FUSED_DIR = "fused"
REFERENCE_FILE = "export_reference.safetensors"  # the trainer's logits; removed after the check


def code_fingerprint(cfg: Any, root: Path) -> list[list[str]]:
    """Hashes of the code this stage runs outside its own module (every file of runner/train), for the cache key."""
    import runner.core.models
    import runner.train

    files = sorted(Path(runner.train.__file__).parent.glob("*.py")) + [Path(runner.core.models.__file__)]
    return [[path.name, hash_source(path)] for path in files]


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Train a LoRA adapter, export it to GGUF, check the export, report losses and throughput."""
    started = time.perf_counter()
    job = build_job(cfg, ctx)
    job_path = ctx.work_dir / Train.JOB
    job_path.write_text(job.to_json())
    result, info = worker.train(job, job_path, ctx.log_metrics)

    export_started = time.perf_counter()
    adapter = ctx.work_dir / Train.ADAPTER_GGUF
    export_adapter(job.backend, Path(job.adapter_dir), Path(job.base_hf_dir), adapter, ctx.work_dir / PEFT_COPY_DIR)
    metrics = {k: float(v) for k, v in result.items() if worker.finite(v)}
    metrics["export_seconds"] = time.perf_counter() - export_started

    if job.reference_file:
        check_started = time.perf_counter()
        reference = Path(job.reference_file)
        gguf = resolve_gguf(cfg.model.gguf_path, ctx.root)
        n_threads = int(cfg.llm.n_threads or 1)
        metrics.update(check_export(reference, gguf, adapter, job.export_check_tolerance, job.export_check_margin, n_threads))
        reference.unlink()
        metrics["export/check_seconds"] = time.perf_counter() - check_started
    metrics["seconds"] = time.perf_counter() - started
    log.info(
        "val loss %.3f -> %.3f (best at iteration %d of %d), %.0f trained tokens/s (%s)",
        result.get("val/loss_before", float("nan")),
        result.get("val/loss_after", float("nan")),
        result.get("best_iteration", 0),
        job.iters,
        result.get("tokens_per_second", float("nan")),
        info.get("blas") or info.get("device") or job.backend,
    )
    summary = {"backend": job.backend, **info}
    if job.fuse_dir:
        summary["fused_dir"] = FUSED_DIR
    return StageResult(metrics=metrics, artifacts=[Train.ADAPTER_DIR, Train.ADAPTER_GGUF, Train.JOB], summary=summary)


def build_job(cfg: Any, ctx: StageContext) -> TrainJob:
    """``cfg.train`` with the iterations resolved, plus the upstream folders and this stage's outputs."""
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
    data_dir = Path(ctx.inputs["dataset"])
    return TrainJob.from_config(
        train,
        iters=iterations_for(train, len(read_jsonl(data_dir / Dataset.TRAIN))),
        mask_prompt=mask_prompt,
        model_dir=str(weights),
        base_hf_dir=str(base_hf),
        data_dir=str(data_dir),
        data_format=cfg.dataset.format,
        system_prompt=cfg.model.system_prompt,
        adapter_dir=str(ctx.work_dir / Train.ADAPTER_DIR),
        checkpoint_dir=str(ctx.work_dir / CHECKPOINTS_DIR),
        fuse_dir=str(ctx.work_dir / FUSED_DIR) if train.fuse else None,
        reference_file=str(ctx.work_dir / REFERENCE_FILE) if train.export_check_records else None,
    )
