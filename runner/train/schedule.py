"""The learning-rate schedule: linear warmup, then constant or cosine to 0; one rule for mlx and for torch."""

from __future__ import annotations

import math
from typing import Any


def lr_factor(step: int, job: Any) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (what :func:`mlx_schedule` computes)."""
    if job.warmup_steps and step <= job.warmup_steps:
        return step / job.warmup_steps
    if job.lr_schedule != "cosine":
        return 1.0
    decay_steps = max(job.iters - job.warmup_steps, 1)
    done = min(step - (job.warmup_steps + 1 if job.warmup_steps else 0), decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * max(done, 0) / decay_steps))


def mlx_schedule(job: Any, start: int) -> Any:
    """The schedule as an mlx optimizer takes it, shifted by ``start`` on resume."""
    import mlx.core as mx
    import mlx.optimizers as optim

    lr = job.learning_rate
    if job.lr_schedule == "constant" and not job.warmup_steps:
        return lr
    if job.lr_schedule == "cosine":
        main = optim.cosine_decay(lr, max(job.iters - job.warmup_steps, 1), 0.0)
    else:
        main = lambda step: mx.array(lr, dtype=mx.float32)  # noqa: E731
    schedule = main
    if job.warmup_steps:
        warmup = optim.linear_schedule(0.0, lr, job.warmup_steps)
        schedule = optim.join_schedules([warmup, main], [job.warmup_steps + 1])  # mlx-lm's own boundary
    if not start:
        return schedule
    return lambda step: schedule(step + start)
