"""One LoRA training job: mlx-lm's tuner or transformers + PEFT, run in-process or as a worker.

The train stage builds a :class:`TrainJob` and either calls :func:`run_training`
directly or starts ``python -m runner.train_worker <job.json>`` in a process whose
environment preloads OpenBLAS (it must be set before the process starts). The worker
reports events as JSON lines on its stdout; everything else the libraries print is
sent to stderr, so the channel stays clean.

Events: ``{"kind": "metrics", "step": n, "values": {...}}``, ``{"kind": "info", "values": {...}}``,
``{"kind": "result", "values": {...}}`` and, on a bad setting, ``{"kind": "error", ...}``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from runner.errors import ConfigError

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

CHECKPOINTS_DIR = "checkpoints"
MLX_ADAPTER_FILE = "adapters.safetensors"
_MLX_CKPT = re.compile(r"^(\d{7})_adapters\.safetensors$")
_SEGMENT = re.compile(r"^segment_(\d{7})$")


@dataclass
class TrainJob:
    """Everything one training run needs; plain values so it travels as JSON."""

    backend: str = field(metadata={"help": "mlx | peft"})
    model_dir: str = field(metadata={"help": "Folder the weights are loaded from (the MLX-quantized copy for QLoRA)."})
    base_hf_dir: str = field(metadata={"help": "Hugging Face folder of the base model (config for exports)."})
    data_dir: str = field(metadata={"help": "Folder with train.jsonl and valid.jsonl."})
    data_format: str = field(metadata={"help": "chat | completions | text"})
    adapter_dir: str = field(metadata={"help": "Where the final adapter (with its config) is written."})
    checkpoint_dir: str = field(metadata={"help": "Where periodic checkpoints go; also read to resume."})
    iters: int = 200
    num_layers: int = 2
    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    target_modules: Optional[list[str]] = None
    batch_size: int = 1
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_seq_length: int = 512
    grad_checkpoint: bool = False
    steps_per_report: int = 10
    steps_per_eval: int = 50
    save_every: int = 50
    val_batches: int = 10
    seed: int = 0
    mask_prompt: bool = True
    fuse_dir: Optional[str] = field(default=None, metadata={"help": "Write the base model with the adapter merged here."})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainJob":
        return cls(**json.loads(text))


def run_training(job: TrainJob, emit: Emit) -> dict[str, Any]:
    """Train, save the adapter into ``job.adapter_dir`` and return the summary numbers."""
    if job.backend == "mlx":
        return _train_mlx(job, emit)
    if job.backend == "peft":
        return _train_peft(job, emit)
    raise ConfigError(f"train.backend={job.backend!r} is invalid: must be one of mlx, peft")


def is_whole_safetensors(path: Path) -> bool:
    """Whether a safetensors file is as long as its own header says (8-byte header size, JSON header,
    then the tensor data up to the largest end offset)."""
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_size))
    except (OSError, ValueError):
        return False
    data_end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    return path.stat().st_size == 8 + header_size + data_end


def latest_checkpoint(job: TrainJob) -> tuple[int, Optional[Path]]:
    """(iteration, path) of the newest checkpoint a killed run left behind, or (0, None)."""
    root = Path(job.checkpoint_dir)
    if not root.is_dir():
        return 0, None
    best: tuple[int, Optional[Path]] = (0, None)
    if job.backend == "mlx":
        # segment_<start>/<k>_adapters.safetensors holds iteration start + k
        for segment in root.iterdir():
            seg = _SEGMENT.match(segment.name)
            if not seg or not segment.is_dir():
                continue
            for file in segment.iterdir():
                found = _MLX_CKPT.match(file.name)
                if found and is_whole_safetensors(file):  # mlx-lm writes in place: a kill can cut one short
                    iteration = int(seg.group(1)) + int(found.group(1))
                    if iteration > best[0]:
                        best = (iteration, file)
    else:
        for folder in root.iterdir():
            if folder.name.isdigit() and (folder / "trainer_state.pt").is_file():
                iteration = int(folder.name)
                if iteration > best[0]:
                    best = (iteration, folder)
    return best


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _rope_fixups(model_dir: Path) -> dict[str, Any]:
    """mlx-lm reads only the legacy ``rope_theta``; supply it from transformers 5's ``rope_parameters``."""
    from runner.models import legacy_rope_keys

    return legacy_rope_keys(json.loads((model_dir / "config.json").read_text()))


def _blas_in_use() -> str:
    """Which BLAS library this process mapped (Linux only): 'openblas', 'reference' or 'unknown'."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    if "libopenblas" in maps:
        return "openblas"
    return "reference" if "libblas" in maps else "unknown"


# --------------------------------------------------------------------------- mlx


def _train_mlx(job: TrainJob, emit: Emit) -> dict[str, Any]:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset
    from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import get_total_parameters, load

    started = time.perf_counter()
    emit({"kind": "info", "values": {"blas": _blas_in_use(), "backend": "mlx"}})
    np.random.seed(job.seed)
    mx.random.seed(job.seed)
    model_dir = Path(job.model_dir)
    model, tokenizer, model_config = load(str(model_dir), model_config=_rope_fixups(model_dir), return_config=True)

    data_options = types.SimpleNamespace(mask_prompt=job.mask_prompt)
    train_set, valid_set, _ = load_local_dataset(Path(job.data_dir), tokenizer, data_options)
    if len(train_set) < job.batch_size:
        raise ConfigError(f"train.batch_size={job.batch_size} is invalid: the training set has only {len(train_set)} records")
    train_data = CacheDataset(train_set)
    val_data = CacheDataset(valid_set) if len(valid_set) else None
    eval_batch = min(job.batch_size, len(valid_set)) if len(valid_set) else 0
    masked_loss = _mlx_masked_loss()

    model.freeze()
    n_layers = len(model.layers)
    if job.num_layers > n_layers:
        raise ConfigError(f"train.num_layers={job.num_layers} is invalid: the model has {n_layers} layers")
    keys = _mlx_lora_keys(model.layers[-1], job.target_modules, (nn.Linear, nn.QuantizedLinear))
    lora_parameters = {"rank": job.rank, "scale": job.scale, "dropout": job.dropout, "keys": keys}
    linear_to_lora_layers(model, job.num_layers, lora_parameters)

    def val_loss() -> float:
        if val_data is None:
            return float("nan")
        np.random.seed(job.seed)  # the same validation batches before and after training
        return evaluate(model, val_data, eval_batch, job.val_batches, max_seq_length=job.max_seq_length, loss=masked_loss)

    # LoRA B starts at zero, so this is the base model's loss
    loss_before = val_loss()

    start, resume_file = latest_checkpoint(job)
    start = min(start, job.iters)
    if resume_file is not None:
        log.info("resuming from %s (iteration %d)", resume_file, start)
        model.load_weights(str(resume_file), strict=False)
    emit({"kind": "info", "values": {"resumed_from": start}})

    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = get_total_parameters(model)
    adapter_dir = Path(job.adapter_dir)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    _write_mlx_adapter_config(job, keys, adapter_dir)

    callback = _mlx_reporter(emit, offset=start)
    remaining = job.iters - start
    train_seconds = 0.0
    if remaining > 0:
        segment = Path(job.checkpoint_dir) / f"segment_{start:07d}"
        segment.mkdir(parents=True, exist_ok=True)
        args = TrainingArgs(
            batch_size=job.batch_size,
            iters=remaining,
            val_batches=job.val_batches,
            steps_per_report=job.steps_per_report,
            steps_per_eval=job.steps_per_eval,
            steps_per_save=job.save_every,
            adapter_file=str(segment / MLX_ADAPTER_FILE),
            max_seq_length=job.max_seq_length,
            grad_checkpoint=job.grad_checkpoint,
        )
        optimizer = optim.Adam(learning_rate=_mlx_schedule(job, start))
        np.random.seed(job.seed + start)
        mx.random.seed(job.seed + start)
        train_started = time.perf_counter()
        train(
            model=model,
            optimizer=optimizer,
            train_dataset=train_data,
            val_dataset=val_data if job.batch_size <= len(valid_set) else None,
            args=args,
            loss=masked_loss,
            training_callback=callback,
        )
        train_seconds = time.perf_counter() - train_started

    mx.save_safetensors(str(adapter_dir / MLX_ADAPTER_FILE), dict(tree_flatten(model.trainable_parameters())))
    loss_after = val_loss()

    if job.fuse_dir:
        _fuse_mlx(model, tokenizer, model_config, model_dir, Path(job.fuse_dir))

    return {
        "val/loss_before": loss_before,
        "val/loss_after": loss_after,
        "trainable_params": float(trainable),
        "total_params": float(total),
        "tokens_per_second": _mean(callback.tokens_per_second),
        "train_seconds": train_seconds,
        "iterations": float(job.iters),
        "resumed_from": float(start),
        "seconds": time.perf_counter() - started,
    }


def _mlx_masked_loss() -> Callable:
    """mlx-lm's ``default_loss`` without its off-by-one: it also scores one padding token per sequence.

    Its mask keeps targets at positions ``offset .. length`` (token ``length`` is the
    padding, id 0); with SmolLM2 that single extra target added ~0.85 to the base model's
    validation loss and made most of the "improvement" after a few steps. Here only the
    real tokens ``offset .. length-1`` count, as in the peft backend.
    """
    import mlx.core as mx
    import mlx.nn as nn

    def loss(model: Any, batch: Any, lengths: Any) -> tuple[Any, Any]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model(inputs)
        steps = mx.arange(1, targets.shape[1] + 1)  # position of each target token in the sequence
        mask = mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])
        ce = nn.losses.cross_entropy(logits, targets) * mask
        ntoks = mask.sum()
        return ce.astype(mx.float32).sum() / ntoks, ntoks

    return loss


def _mlx_lora_keys(layer: Any, targets: Optional[list[str]], linear_types: tuple) -> Optional[list[str]]:
    """Module paths inside one block to adapt; None keeps mlx-lm's default (every linear layer)."""
    if not targets:
        return None
    candidates = [name for name, module in layer.named_modules() if isinstance(module, linear_types)]
    return _match_targets(candidates, targets)


def _match_targets(candidates: list[str], targets: list[str]) -> list[str]:
    """Candidates equal to a target or ending with ``.<target>`` (PEFT's rule); every target must match."""
    chosen: list[str] = []
    for target in targets:
        hits = [c for c in candidates if c == target or c.endswith("." + target)]
        if not hits:
            raise ConfigError(
                f"train.target_modules: {target!r} matches no linear layer in a block; available: {', '.join(sorted(candidates))}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _mlx_schedule(job: TrainJob, start: int) -> Any:
    """Learning rate as mlx schedule (warmup, then constant or cosine to 0), shifted by ``start`` on resume."""
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


def _write_mlx_adapter_config(job: TrainJob, keys: Optional[list[str]], adapter_dir: Path) -> None:
    """The config mlx-lm's ``load(..., adapter_path=)`` and ``fuse`` read, plus where it came from."""
    config = {
        "fine_tune_type": "lora",
        "num_layers": job.num_layers,
        "lora_parameters": {"rank": job.rank, "scale": job.scale, "dropout": job.dropout, "keys": keys},
        "model": job.model_dir,
        "base_hf_dir": job.base_hf_dir,
        "iters": job.iters,
        "batch_size": job.batch_size,
        "learning_rate": job.learning_rate,
        "lr_schedule": job.lr_schedule,
        "warmup_steps": job.warmup_steps,
        "max_seq_length": job.max_seq_length,
        "mask_prompt": job.mask_prompt,
        "data_format": job.data_format,
        "seed": job.seed,
    }
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))


def _fuse_mlx(model: Any, tokenizer: Any, config: dict[str, Any], src: Path, out: Path) -> None:
    """Merge the LoRA weights into the base linears and save an mlx-lm model folder."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import save

    fused = [(name, module.fuse()) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    if out.exists():
        shutil.rmtree(out)
    save(out, src, model, tokenizer, config, donate_model=False)


def _mlx_reporter(emit: Emit, offset: int) -> Any:
    """An mlx-lm TrainingCallback that maps its reports to our metric names (step = global iteration)."""
    from mlx_lm.tuner.callbacks import TrainingCallback

    class Reporter(TrainingCallback):
        def __init__(self) -> None:
            self.tokens_per_second: list[float] = []

        def on_train_loss_report(self, info: dict) -> None:
            self.tokens_per_second.append(float(info["tokens_per_second"]))
            values = {
                "train/loss": float(info["train_loss"]),
                "train/learning_rate": float(info["learning_rate"]),
                "train/tokens_per_second": float(info["tokens_per_second"]),
                "train/iterations_per_second": float(info["iterations_per_second"]),
                "train/peak_memory_gb": float(info["peak_memory"]),
            }
            emit({"kind": "metrics", "step": int(info["iteration"]) + offset, "values": values})

        def on_val_loss_report(self, info: dict) -> None:
            emit({"kind": "metrics", "step": int(info["iteration"]) + offset, "values": {"val/loss": float(info["val_loss"])}})

    return Reporter()


# --------------------------------------------------------------------------- peft


def _train_peft(job: TrainJob, emit: Emit) -> dict[str, Any]:
    """transformers + PEFT on torch, mirroring the mlx backend's data, loss, schedule and reports."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runner.jsonl import read_jsonl

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    emit({"kind": "info", "values": {"backend": "peft", "device": device, "dtype": str(dtype)}})
    random.seed(job.seed)
    torch.manual_seed(job.seed)

    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    model = AutoModelForCausalLM.from_pretrained(job.model_dir, dtype=dtype).to(device)
    blocks = _torch_blocks(model)
    if job.num_layers > len(blocks):
        raise ConfigError(f"train.num_layers={job.num_layers} is invalid: the model has {len(blocks)} layers")
    linear_names = [name for name, module in blocks[-1].named_modules() if isinstance(module, torch.nn.Linear)]
    targets = _match_targets(linear_names, job.target_modules) if job.target_modules else linear_names
    first = 0 if job.num_layers == -1 else len(blocks) - job.num_layers
    lora_config = LoraConfig(
        r=job.rank,
        lora_alpha=job.scale * job.rank,  # PEFT scales by alpha / r; mlx-lm by `scale`
        lora_dropout=job.dropout,
        target_modules=targets,
        layers_to_transform=list(range(first, len(blocks))),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora_config)
    if job.grad_checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable, everything = model.get_nb_trainable_parameters()
    total = everything - trainable  # the base model alone, as mlx-lm counts it

    data_dir = Path(job.data_dir)
    train_rows = [_encode_record(r, tokenizer, job.mask_prompt) for r in read_jsonl(data_dir / "train.jsonl")]
    valid_path = data_dir / "valid.jsonl"
    valid_rows = [_encode_record(r, tokenizer, job.mask_prompt) for r in read_jsonl(valid_path)] if valid_path.exists() else []
    if len(train_rows) < job.batch_size:
        raise ConfigError(f"train.batch_size={job.batch_size} is invalid: the training set has only {len(train_rows)} records")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def collate(rows: list[tuple[list[int], int]]) -> dict[str, Any]:
        return _collate(rows, job.max_seq_length, pad_id, device)

    eval_batch = min(job.batch_size, len(valid_rows)) if valid_rows else 0
    val_order = sorted(range(len(valid_rows)), key=lambda i: len(valid_rows[i][0]))
    val_batches = [val_order[i : i + eval_batch] for i in range(0, len(val_order) - eval_batch + 1, eval_batch)] if eval_batch else []
    random.Random(job.seed).shuffle(val_batches)
    if job.val_batches != -1:
        val_batches = val_batches[: job.val_batches]

    @torch.no_grad()
    def val_loss() -> float:
        if not val_batches:
            return float("nan")
        model.eval()
        loss_sum, tokens = 0.0, 0
        for batch_idx in val_batches:
            batch = collate([valid_rows[i] for i in batch_idx])
            loss, n = _batch_loss(model, batch)
            loss_sum += float(loss) * n
            tokens += n
        model.train()
        return loss_sum / max(tokens, 1)

    loss_before = val_loss()

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=job.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, job))
    start, resume = latest_checkpoint(job)
    start = min(start, job.iters)
    if resume is not None:
        log.info("resuming from %s (iteration %d)", resume, start)
        set_peft_model_state_dict(model, load_file(str(resume / "adapter_model.safetensors")))
        state = torch.load(resume / "trainer_state.pt", map_location=device, weights_only=True)  # no pickle
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    emit({"kind": "info", "values": {"resumed_from": start}})

    # the same batching as mlx-lm: fixed batches of similar length, shuffled every pass
    order = sorted(range(len(train_rows)), key=lambda i: len(train_rows[i][0]))
    train_batches = [order[i : i + job.batch_size] for i in range(0, len(order) - job.batch_size + 1, job.batch_size)]
    rng = random.Random(job.seed + start)

    def batches():
        while True:
            for j in rng.sample(range(len(train_batches)), len(train_batches)):
                yield train_batches[j]

    model.train()
    tokens_per_second: list[float] = []
    losses, n_tokens, steps, window_s, train_seconds = 0.0, 0, 0, 0.0, 0.0
    batch_iter = batches()
    for it in range(start + 1, job.iters + 1):
        if valid_rows and (it == start + 1 or it % job.steps_per_eval == 0 or it == job.iters):
            emit({"kind": "metrics", "step": it - 1, "values": {"val/loss": val_loss()}})
        tic = time.perf_counter()
        batch = collate([train_rows[i] for i in next(batch_iter)])
        loss, n = _batch_loss(model, batch)
        loss.backward()
        current_lr = optimizer.param_groups[0]["lr"]  # the rate this step uses, as mlx-lm reports it
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses += float(loss.detach())
        n_tokens += n
        steps += 1
        elapsed = time.perf_counter() - tic
        window_s += elapsed
        train_seconds += elapsed
        if it % job.steps_per_report == 0 or it == job.iters:
            rate = n_tokens / window_s if window_s else 0.0
            tokens_per_second.append(rate)
            emit(
                {
                    "kind": "metrics",
                    "step": it,
                    "values": {
                        "train/loss": losses / steps,
                        "train/learning_rate": current_lr,
                        "train/tokens_per_second": rate,
                        "train/iterations_per_second": steps / window_s if window_s else 0.0,
                        "train/peak_memory_gb": _torch_peak_memory_gb(device),
                    },
                }
            )
            losses, n_tokens, steps, window_s = 0.0, 0, 0, 0.0
        if it % job.save_every == 0:
            _save_peft_checkpoint(model, optimizer, scheduler, Path(job.checkpoint_dir) / f"{it:07d}", it)

    adapter_dir = Path(job.adapter_dir)
    model.save_pretrained(str(adapter_dir))
    loss_after = val_loss()

    if job.fuse_dir:
        merged = model.merge_and_unload()
        merged.save_pretrained(job.fuse_dir)
        tokenizer.save_pretrained(job.fuse_dir)

    return {
        "val/loss_before": loss_before,
        "val/loss_after": loss_after,
        "trainable_params": float(trainable),
        "total_params": float(total),
        "tokens_per_second": _mean(tokens_per_second),
        "train_seconds": train_seconds,
        "iterations": float(job.iters),
        "resumed_from": float(start),
        "seconds": time.perf_counter() - started,
    }


def _torch_blocks(model: Any) -> Any:
    """The decoder's list of transformer blocks (the ModuleList as long as num_hidden_layers)."""
    import torch

    n = model.config.num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError(f"cannot find the {n} transformer blocks of {type(model).__name__} for LoRA")


def _encode_record(record: dict[str, Any], tokenizer: Any, mask_prompt: bool) -> tuple[list[int], int]:
    """(token ids, index of the first trained token) exactly as mlx-lm's dataset classes build them."""
    if "messages" in record or ("prompt" in record and "completion" in record):
        if "messages" in record:
            messages = record["messages"]
            add_generation_prompt = messages[-1].get("role") == "assistant"
        else:
            messages = [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]
            add_generation_prompt = True
        tokens = list(tokenizer.apply_chat_template(messages, return_dict=False))
        if not mask_prompt:
            return tokens, 0
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=add_generation_prompt, return_dict=False)
        return tokens, len(prompt)
    if "text" in record:
        tokens = list(tokenizer.encode(record["text"]))
        if tokens[-1] != tokenizer.eos_token_id:
            tokens.append(tokenizer.eos_token_id)
        return tokens, 0
    raise ConfigError(f"dataset record has none of messages / prompt+completion / text: {sorted(record)}")


def _collate(rows: list[tuple[list[int], int]], max_len: int, pad_id: int, device: str) -> dict[str, Any]:
    import torch

    width = min(max(len(tokens) for tokens, _ in rows), max_len)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (tokens, offset) in enumerate(rows):
        tokens = tokens[:width]
        input_ids[i, : len(tokens)] = torch.tensor(tokens)
        attention[i, : len(tokens)] = 1
        labels[i, offset : len(tokens)] = torch.tensor(tokens[offset:])
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "labels": labels.to(device)}


def _batch_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Mean cross-entropy over trained tokens and their count (HF shifts the labels itself)."""
    out = model(**batch)
    return out.loss, int((batch["labels"][:, 1:] != -100).sum())


def _lr_factor(step: int, job: TrainJob) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``, as ``_mlx_schedule`` computes it."""
    if job.warmup_steps and step <= job.warmup_steps:
        return step / job.warmup_steps
    if job.lr_schedule != "cosine":
        return 1.0
    decay_steps = max(job.iters - job.warmup_steps, 1)
    done = min(step - (job.warmup_steps + 1 if job.warmup_steps else 0), decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * max(done, 0) / decay_steps))


def _torch_peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    except ImportError:
        return float("nan")


def _save_peft_checkpoint(model: Any, optimizer: Any, scheduler: Any, folder: Path, iteration: int) -> None:
    """Adapter weights, optimizer and schedule state; written to a temp name, then renamed."""
    import torch

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "iteration": iteration}, tmp / "trainer_state.pt")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


# --------------------------------------------------------------------------- worker entry


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m runner.train_worker job.json``: run the job, report events on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m runner.train_worker JOB.json\n")
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
