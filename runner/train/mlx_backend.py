"""LoRA with mlx-lm's model code and LoRA layers, stepped by our loop (:mod:`runner.train.loop`).

mlx-lm loads the model and turns its linear layers into ``LoRALinear`` (``y = W x + scale * (x a) b``
with ``lora_a`` (in, r) and ``lora_b`` (r, out)); the optimizer step is compiled with ``mx.compile``.
The loop is ours rather than ``mlx_lm.tuner.train`` so that validation, the best adapter and batches
padded only to their own length work as in the PEFT backend. A compiled step is traced again for
each new batch width; measured with all 30 SmolLM2 blocks at batch 8, a step on a new width took
no longer than a repeat (5-8 s either way), so batches are padded to their own longest row only.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

from runner.core.errors import ConfigError
from runner.core.models import legacy_rope_keys
from runner.train.checkpoints import MLX_ADAPTER_FILE, mlx_checkpoint_path
from runner.train.data import Row, load_rows, padded_width
from runner.train.job import Emit, TrainJob
from runner.train.loop import run_job
from runner.train.schedule import mlx_schedule
from runner.train.targets import adapted_blocks, match_targets

def train_mlx(job: TrainJob, emit: Emit) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.utils import get_total_parameters, load

    started = time.perf_counter()
    emit({"kind": "info", "values": {"blas": blas_in_use(), "backend": "mlx"}})
    np.random.seed(job.seed)
    mx.random.seed(job.seed)
    model_dir = Path(job.model_dir)
    rope = legacy_rope_keys(json.loads((model_dir / "config.json").read_text()))
    model, tokenizer, model_config = load(str(model_dir), model_config=rope, return_config=True)

    data_dir = Path(job.data_dir)
    train_rows = load_rows(data_dir / "train.jsonl", tokenizer, job.mask_prompt, system_prompt=job.system_prompt)
    valid_rows = load_rows(data_dir / "valid.jsonl", tokenizer, job.mask_prompt, system_prompt=job.system_prompt)
    if len(train_rows) < job.batch_size:
        raise ConfigError(f"train.batch_size={job.batch_size} is invalid: the training set has only {len(train_rows)} records")

    keys = add_lora(model, job)
    trainer = MlxTrainer(job, model)
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    total = get_total_parameters(model)
    _write_adapter_config(job, keys, Path(job.adapter_dir))

    summary = run_job(job, trainer, train_rows, valid_rows, emit)
    if job.fuse_dir:
        _fuse(model, tokenizer, model_config, model_dir, Path(job.fuse_dir))
    return {**summary, "trainable_params": float(trainable), "total_params": float(total), "seconds": time.perf_counter() - started}


def add_lora(model: Any, job: TrainJob) -> Any:
    """Freeze the model and put LoRA layers on the chosen blocks; returns mlx-lm's ``keys`` (None = all linears)."""
    import mlx.nn as nn
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    blocks = adapted_blocks(job.num_layers, len(model.layers))
    keys = None
    if job.target_modules:
        linear = [name for name, m in model.layers[-1].named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
        keys = match_targets(linear, list(job.target_modules))
    lora_parameters = {"rank": job.rank, "scale": job.scale, "dropout": job.dropout, "keys": keys}
    linear_to_lora_layers(model, len(blocks), lora_parameters)
    return keys


class MlxTrainer:
    """One compiled Adam step, validation loss, logits and adapter files for an mlx-lm model with LoRA."""

    def __init__(self, job: TrainJob, model: Any) -> None:
        import mlx.core as mx
        import mlx.nn as nn
        import mlx.optimizers as optim

        self.job, self.model = job, model
        self.loss = trained_positions_loss if has_plain_head(model) else masked_loss
        self.start = 0
        if job.grad_checkpoint:
            from mlx_lm.tuner.trainer import grad_checkpoint

            grad_checkpoint(model.layers[0])
        # bias_correction as in torch.optim.Adam: without it (mlx-lm's default) the first few hundred
        # updates are 3-6x larger, and the same train.learning_rate meant another rate on each backend
        self.optimizer = optim.Adam(learning_rate=mlx_schedule(job, 0), bias_correction=True)
        loss_and_grad = nn.value_and_grad(model, self.loss)
        state = [model.state, self.optimizer.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(batch: Any, lengths: Any, trained: Any) -> tuple[Any, Any]:
            (loss, ntoks), grad = loss_and_grad(model, batch, lengths, trained)
            self.optimizer.update(model, grad)
            return loss, ntoks

        self._state, self._step = state, step
        model.train()

    def _arrays(self, rows: list[Row]) -> tuple[Any, Any, Any]:
        """Token ids padded with 0 to the batch's own width, each row's (first trained token, length), and
        the flat indices (row * (width - 1) + position) of the targets that are trained on."""
        import mlx.core as mx
        import numpy as np

        width = padded_width(rows, self.job.max_seq_length)
        batch = np.zeros((len(rows), width), np.int32)
        lengths, trained = [], []
        for i, (tokens, offset) in enumerate(rows):
            tokens = tokens[:width]
            batch[i, : len(tokens)] = tokens
            lengths.append((offset, len(tokens)))
            # target j is token j + 1: trained when offset <= j + 1 < length
            trained.extend(i * (width - 1) + j for j in range(max(offset - 1, 0), len(tokens) - 1))
        return mx.array(batch), mx.array(lengths), mx.array(np.array(trained, dtype=np.int32))

    def step(self, rows: list[Row]) -> tuple[float, int, float]:
        import mlx.core as mx

        loss, ntoks = self._step(*self._arrays(rows))
        mx.eval(self._state, loss, ntoks)
        return loss.item(), int(ntoks.item()), self.optimizer.learning_rate.item()

    def val_loss(self, batches: list[list[Row]]) -> float:
        import mlx.core as mx

        self.model.eval()
        total, tokens = 0.0, 0
        for rows in batches:
            loss, ntoks = self.loss(self.model, *self._arrays(rows))
            mx.eval(loss, ntoks)
            total += loss.item() * ntoks.item()
            tokens += int(ntoks.item())
        self.model.train()
        return total / max(tokens, 1)

    def logits(self, tokens: list[int]) -> Any:
        import mlx.core as mx
        import numpy as np

        self.model.eval()
        out = self.model(mx.array([tokens]))[0].astype(mx.float32)
        self.model.train()
        return np.array(out)

    def _weights(self) -> dict[str, Any]:
        from mlx.utils import tree_flatten

        return dict(tree_flatten(self.model.trainable_parameters()))

    def save_adapter(self, folder: Path) -> None:
        import mlx.core as mx

        mx.save_safetensors(str(folder / MLX_ADAPTER_FILE), self._weights())

    def load_adapter(self, folder: Path) -> None:
        self.model.load_weights(str(folder / MLX_ADAPTER_FILE), strict=False)

    def resume(self, checkpoint: Path, iteration: int) -> None:
        """The checkpoint's weights; the schedule continues from ``iteration`` (Adam's moments start afresh, as in mlx-lm)."""
        import mlx.core as mx

        self.model.load_weights(str(checkpoint), strict=False)
        self.start = iteration
        self.optimizer.state["step"] = mx.array(iteration, dtype=mx.uint64)
        mx.random.seed(self.job.seed + iteration)

    def save_checkpoint(self, iteration: int) -> None:
        """Written to a temp name, then renamed: a kill never leaves a short file under the checkpoint's name."""
        import mlx.core as mx

        path = mlx_checkpoint_path(Path(self.job.checkpoint_dir), self.start, iteration)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.safetensors")
        mx.save_safetensors(str(tmp), self._weights())
        tmp.replace(path)

    def save_final(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.save_adapter(folder)

    def peak_memory_gb(self) -> float:
        import mlx.core as mx

        return mx.get_peak_memory() / 1e9


def masked_loss(model: Any, batch: Any, lengths: Any, trained: Any = None) -> tuple[Any, Any]:
    """Mean cross-entropy over the trained tokens ``offset .. length-1`` of each row, and their count.

    mlx-lm's ``default_loss`` also scores one padding token per sequence (its mask ends at
    ``<= length``); with SmolLM2 that single extra target added ~0.85 to the base model's
    validation loss. Here only real tokens count, as in the PEFT backend.
    """
    import mlx.core as mx
    import mlx.nn as nn

    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)
    steps = mx.arange(1, targets.shape[1] + 1)  # position of each target token in the sequence
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])
    ce = nn.losses.cross_entropy(logits, targets) * mask
    ntoks = mask.sum()
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def trained_positions_loss(model: Any, batch: Any, lengths: Any, trained: Any) -> tuple[Any, Any]:
    """:func:`masked_loss` with the LM head run only on the trained positions (``trained``: flat indices).

    With the prompt masked, most positions of a short QA record are chat template and question;
    the head (vocabulary x hidden) is a large share of a small model's work: SmolLM2, all blocks, batch 8
    of QA records trained 1.27x the tokens/s (PEFT: 1.37x)."""
    import mlx.core as mx
    import mlx.nn as nn

    inputs, targets = batch[:, :-1], batch[:, 1:]
    hidden = model.model(inputs)
    hidden = hidden.reshape(-1, hidden.shape[-1])[trained]
    head = model.model.embed_tokens.as_linear if model.args.tie_word_embeddings else model.lm_head
    ce = nn.losses.cross_entropy(head(hidden), targets.reshape(-1)[trained])
    ntoks = mx.array(trained.size)
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def has_plain_head(model: Any) -> bool:
    """Whether the model's output is ``head(model.model(inputs))`` as in mlx-lm's llama and qwen2 code."""
    return type(model).__module__.rsplit(".", 1)[-1] in ("llama", "qwen2", "mistral") and hasattr(model, "args")


def blas_in_use() -> str:
    """Which BLAS library this process mapped (Linux only): 'openblas', 'reference' or 'unknown'."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    if "libopenblas" in maps:
        return "openblas"
    return "reference" if "libblas" in maps else "unknown"


def _write_adapter_config(job: TrainJob, keys: Any, adapter_dir: Path) -> None:
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
    adapter_dir.mkdir(parents=True, exist_ok=True)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))


def _fuse(model: Any, tokenizer: Any, config: dict[str, Any], src: Path, out: Path) -> None:
    """Merge the LoRA weights into the base linears and save an mlx-lm model folder."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import save

    fused = [(name, module.fuse()) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    if out.exists():
        shutil.rmtree(out)
    save(out, src, model, tokenizer, config, donate_model=False)
