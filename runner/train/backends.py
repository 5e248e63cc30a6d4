"""Which library trains a job: ``train.backend`` picks mlx or peft.

Apart from :mod:`runner.train.job`, so that the backends can import the job's types without a circle.
"""

from __future__ import annotations

from typing import Any

from runner.core.errors import ConfigError
from runner.train.job import Emit, TrainJob


def run_training(job: TrainJob, emit: Emit) -> dict[str, Any]:
    """Train, save the best adapter into ``job.adapter_dir`` and return the summary numbers."""
    if job.backend == "mlx":
        from runner.train.mlx_backend import train_mlx

        return train_mlx(job, emit)
    if job.backend == "peft":
        from runner.train.peft_backend import train_peft

        return train_peft(job, emit)
    raise ConfigError(f"train.backend={job.backend!r} is invalid: must be one of mlx, peft")
