"""The iteration loop both backends share: batches, reports, validation, checkpoints and the best adapter.

A backend supplies a :class:`Trainer` (one optimizer step, a validation loss, saving and loading
its adapter); this module decides when each happens, so mlx and PEFT report the same metrics at
the same steps:

* ``train/*`` every ``steps_per_report`` iterations and at the last one;
* ``val/loss`` at the start (step = the iteration trained so far), every ``steps_per_eval`` iterations
  and after the last one, always on the same validation batches;
* a checkpoint every ``save_every`` iterations; the adapter with the lowest validation loss in ``best/``.

At the end the model holds the best adapter (the last one without a validation set).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.train.checkpoints import BestAdapter, latest_checkpoint
from runner.train.data import Row, batch_stream, length_batches, padded_width, token_counts, validation_batches
from runner.train.job import Emit, TrainJob

log = logging.getLogger(__name__)


class Trainer(Protocol):
    def step(self, rows: list[Row]) -> tuple[float, int, float]:
        """One optimizer step on a batch: (mean loss, trained tokens, learning rate used)."""

    def val_loss(self, batches: list[list[Row]]) -> float:
        """Mean loss per trained token over the batches (the model left in training mode)."""

    def save_checkpoint(self, iteration: int) -> None: ...

    def save_adapter(self, folder: Path) -> None: ...

    def load_adapter(self, folder: Path) -> None: ...

    def resume(self, checkpoint: Path, iteration: int) -> None:
        """Load the checkpoint of ``iteration`` that :func:`~runner.train.checkpoints.latest_checkpoint` found."""

    def save_final(self, folder: Path) -> None:
        """The adapter in the backend's own format, with its config, for export."""

    def logits(self, tokens: list[int]) -> Any:
        """Next-token logits at every position of one sequence, as a float32 numpy array (positions, vocab)."""

    def peak_memory_gb(self) -> float: ...


@dataclass
class LoopResult:
    best_iteration: int  # 0 when there was no validation set (the last adapter is kept)
    best_val_loss: float
    last_val_loss: float
    tokens_per_second: float  # trained (unmasked) tokens per second of step time, over the whole run
    input_tokens_per_second: float  # every real token of the batches (prompt included)
    train_seconds: float
    padding_share: float  # padded positions / all positions the batches held


def run_job(job: TrainJob, trainer: Trainer, train_rows: list[Row], valid_rows: list[Row], emit: Emit) -> dict[str, float]:
    """Validate, resume, train, keep the best adapter, save it; the trainer's logits for the export check.

    Returns the numbers both backends report: losses before and of the exported adapter, the best
    iteration, throughput and padding.
    """
    val = validation_rows(job, valid_rows)
    loss_before = trainer.val_loss(val) if val else float("nan")  # LoRA B starts at zero: the base model
    checked = [tokens[: job.max_seq_length] for tokens, _ in train_rows[: job.export_check_records]]
    base_logits = [trainer.logits(tokens) for tokens in checked] if job.reference_file else []

    start, checkpoint = latest_checkpoint(job)
    start = min(start, job.iters)
    if checkpoint is not None:
        log.info("resuming from %s (iteration %d)", checkpoint, start)
        trainer.resume(checkpoint, start)
    emit({"kind": "info", "values": {"resumed_from": start}})
    if val:
        emit({"kind": "metrics", "step": start, "values": {"val/loss": trainer.val_loss(val) if start else loss_before}})

    result = train_loop(job, trainer, train_rows, val, start, emit)
    if result.best_iteration:
        emit({"kind": "metrics", "step": result.best_iteration, "values": {"val/loss_best": result.best_val_loss}})
    trainer.save_final(Path(job.adapter_dir))
    if job.reference_file:
        from runner.train.fidelity import write_reference

        write_reference(Path(job.reference_file), checked, base_logits, [trainer.logits(tokens) for tokens in checked])
    exported_loss = result.best_val_loss if result.best_iteration else result.last_val_loss
    return {
        **token_counts(train_rows),
        "val/loss_before": loss_before,
        "val/loss_after": exported_loss,  # the exported (best) adapter's
        "val/loss_best": result.best_val_loss,
        "val/loss_last": result.last_val_loss,
        "best_iteration": float(result.best_iteration or job.iters),
        "tokens_per_second": result.tokens_per_second,
        "input_tokens_per_second": result.input_tokens_per_second,
        "padding_share": result.padding_share,
        "train_seconds": result.train_seconds,
        "iterations": float(job.iters),
        "resumed_from": float(start),
    }


def validation_rows(job: TrainJob, rows: list[Row]) -> list[list[Row]]:
    batches = validation_batches(rows, job.batch_size, job.max_seq_length, job.val_batches, job.seed)
    return [[rows[i] for i in batch] for batch in batches]


def train_loop(job: TrainJob, trainer: Trainer, train_rows: list[Row], val: list[list[Row]], start: int, emit: Emit) -> LoopResult:
    """Iterations ``start + 1 .. job.iters``; returns with the best adapter loaded into the model."""
    batches = length_batches(train_rows, job.batch_size, job.max_seq_length)
    stream = batch_stream(batches, job.seed + start)
    best = BestAdapter.restore(Path(job.checkpoint_dir), start)
    window = _Window()
    trained = real_tokens = padded_tokens = 0
    train_seconds = 0.0
    last_val = float("nan")
    for it in range(start + 1, job.iters + 1):
        rows = [train_rows[i] for i in next(stream)]
        tic = time.perf_counter()
        loss, n_trained, lr = trainer.step(rows)
        elapsed = time.perf_counter() - tic
        n_real = sum(min(len(tokens), job.max_seq_length) for tokens, _ in rows)
        window.add(loss, n_trained, n_real, elapsed)
        train_seconds += elapsed
        trained += n_trained
        real_tokens += n_real
        padded_tokens += padded_width(rows, job.max_seq_length) * len(rows)
        if it % job.steps_per_report == 0 or it == job.iters:
            emit({"kind": "metrics", "step": it, "values": window.report(lr, trainer.peak_memory_gb())})
            window = _Window()
        if val and (it % job.steps_per_eval == 0 or it == job.iters):
            last_val = trainer.val_loss(val)
            emit({"kind": "metrics", "step": it, "values": {"val/loss": last_val}})
            best.offer(it, last_val, trainer.save_adapter)
        if it % job.save_every == 0:
            trainer.save_checkpoint(it)
    if best.found and best.iteration != job.iters:
        trainer.load_adapter(best.folder)
    return LoopResult(
        best_iteration=best.iteration,
        best_val_loss=best.val_loss if best.found else float("nan"),
        last_val_loss=last_val,
        tokens_per_second=trained / train_seconds if train_seconds else float("nan"),
        input_tokens_per_second=real_tokens / train_seconds if train_seconds else float("nan"),
        train_seconds=train_seconds,
        padding_share=1.0 - real_tokens / padded_tokens if padded_tokens else float("nan"),
    )


class _Window:
    """Sums over the steps since the last report."""

    def __init__(self) -> None:
        self.losses, self.trained, self.real, self.steps, self.seconds = 0.0, 0, 0, 0, 0.0

    def add(self, loss: float, trained: int, real: int, seconds: float) -> None:
        self.losses += loss
        self.trained += trained
        self.real += real
        self.steps += 1
        self.seconds += seconds

    def report(self, lr: float, peak_memory_gb: float) -> dict[str, Any]:
        per_s = (lambda n: n / self.seconds) if self.seconds else (lambda n: 0.0)
        return {
            "train/loss": self.losses / self.steps,
            "train/learning_rate": lr,
            "train/tokens_per_second": per_s(self.trained),
            "train/input_tokens_per_second": per_s(self.real),
            "train/iterations_per_second": per_s(self.steps),
            "train/peak_memory_gb": peak_memory_gb,
        }
