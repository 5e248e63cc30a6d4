"""One training job: the schema's ``TrainConfig`` plus where the model, data and outputs are.

A :class:`TrainJob` is built from the resolved config (:meth:`TrainJob.from_config`), so every
default lives in ``runner/core/schema.py`` only. It holds plain values and travels as JSON to the
worker process (:mod:`runner.train.worker`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from runner.core.errors import ConfigError
from runner.core.schema import QuantizeConfig, TrainConfig

# a training event: {"kind": "metrics" | "info", "step": n, "values": {...}}
Emit = Callable[[dict[str, Any]], None]


@dataclass(kw_only=True)
class TrainJob(TrainConfig):
    """``TrainConfig`` with ``iters`` and ``mask_prompt`` resolved, and the folders the job reads and writes."""

    model_dir: str = field(metadata={"help": "Folder the weights are loaded from (the MLX-quantized copy for QLoRA)."})
    base_hf_dir: str = field(metadata={"help": "Hugging Face folder of the base model (config for exports)."})
    data_dir: str = field(metadata={"help": "Folder with train.jsonl and valid.jsonl."})
    data_format: str = field(metadata={"help": "chat | completions | text"})
    adapter_dir: str = field(metadata={"help": "Where the exported adapter (with its config) is written."})
    checkpoint_dir: str = field(metadata={"help": "Periodic checkpoints and the best adapter so far; read to resume."})
    fuse_dir: Optional[str] = field(default=None, metadata={"help": "Write the base model with the adapter merged here."})
    system_prompt: Optional[str] = field(default=None, metadata={"help": "The chats' system turn; none = no system prompt at all."})
    reference_file: Optional[str] = field(
        default=None, metadata={"help": "Where the trainer's next-token logits on a few training records go (export check)."}
    )

    def __post_init__(self) -> None:
        if self.iters is None:
            raise ConfigError("a TrainJob needs its number of iterations resolved (see iterations_for)")
        if isinstance(self.quantize, dict):
            self.quantize = QuantizeConfig(**self.quantize)

    @classmethod
    def from_config(cls, train: Any, **job: Any) -> "TrainJob":
        """Every ``train.*`` value (a DictConfig or TrainConfig), overridden and completed by ``job``."""
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(OmegaConf.structured(train), resolve=True)
        return cls(**{**values, **job})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainJob":
        return cls(**json.loads(text))


def iterations_for(train: Any, train_records: int) -> int:
    """``train.iters`` when set, else ``train.epochs`` passes over the batches the training set makes."""
    if train_records < train.batch_size:
        raise ConfigError(f"train.batch_size={train.batch_size} is invalid: the training set has only {train_records} records")
    if train.iters is not None:
        return int(train.iters)
    batches = math.ceil(train_records / train.batch_size)  # the last batch may be smaller (runner/train/data.py)
    return max(1, math.ceil(train.epochs * batches))
