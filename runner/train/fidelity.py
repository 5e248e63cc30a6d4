"""Is the adapter llama.cpp serves the adapter that was trained? Next-token logits, compared.

The trainer writes its own model's logits on a few training records, before training (the base)
and after (with the exported adapter): :func:`write_reference`. After the export, llama.cpp runs
the same token ids through the base GGUF alone and with ``adapter.gguf``; :func:`check_export`
compares position by position (teacher forcing): top-1 agreement and the largest absolute logit
difference.

The base GGUF is usually quantized (the embedded SmolLM2 is Q4_1) while the trainer holds float32
weights, so even two base models do not agree everywhere. That base-vs-base agreement is the
yardstick: a faithful export agrees with the trainer about as well as the bases do; a wrong LoRA
scale, a transposed or misordered matrix falls below it. With a float32 copy of the base GGUF the
comparison is exact (tests/train/test_fidelity.py: 100 % agreement, logits within 0.05).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from runner.train.export import ExportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    tokens: list[list[int]]
    base: list[Any]  # (positions, vocab) float32 logits per sequence, the base model
    tuned: list[Any]  # the same with the trained adapter


@dataclass(frozen=True)
class Agreement:
    top1: float  # share of positions whose most likely next token is the same
    confident_top1: float  # the same, over the positions where the reference's top-1 leads by >= margin
    max_abs_diff: float  # largest |logit difference| over every position and vocabulary entry
    positions: int
    confident_positions: int


def write_reference(path: Path, tokens: list[list[int]], base: list[Any], tuned: list[Any]) -> None:
    """The trainer's logits for :func:`check_export` (safetensors, written to a temp name first)."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors = {}
    for i, (ids, before, after) in enumerate(zip(tokens, base, tuned)):
        tensors[f"tokens.{i}"] = np.asarray(ids, dtype=np.int32)
        tensors[f"base.{i}"] = np.ascontiguousarray(before, dtype=np.float32)
        tensors[f"tuned.{i}"] = np.ascontiguousarray(after, dtype=np.float32)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def read_reference(path: Path) -> Reference:
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    count = sum(1 for key in tensors if key.startswith("tokens."))
    return Reference(
        tokens=[tensors[f"tokens.{i}"].tolist() for i in range(count)],
        base=[tensors[f"base.{i}"] for i in range(count)],
        tuned=[tensors[f"tuned.{i}"] for i in range(count)],
    )


def llama_cpp_logits(model_path: Path, lora_path: Optional[Path], sequences: list[list[int]], n_threads: int = 1) -> list[Any]:
    """llama.cpp's next-token logits at every position of each sequence (teacher forcing)."""
    import numpy as np
    from llama_cpp import Llama

    n_ctx = max(len(tokens) for tokens in sequences)
    llm = Llama(
        model_path=str(model_path),
        lora_path=str(lora_path) if lora_path else None,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        logits_all=True,
        verbose=False,
    )
    try:
        out = []
        for tokens in sequences:
            llm.reset()
            llm.eval(tokens)
            out.append(np.array(llm.scores[: len(tokens)], dtype=np.float32))
        return out
    finally:
        llm.close()


def agreement(reference: list[Any], served: list[Any], margin: float = 0.0) -> Agreement:
    """Top-1 agreement (over all positions, and over those where the reference's top-1 leads its
    runner-up by at least ``margin`` logits) and the largest logit difference of two models."""
    import numpy as np

    same = positions = confident_same = confident = 0
    largest = 0.0
    for ref, got in zip(reference, served):
        vocab = min(ref.shape[1], got.shape[1])  # a padded embedding matrix may add unused rows
        ref, got = ref[:, :vocab], got[:, :vocab]
        agree = ref.argmax(axis=1) == got.argmax(axis=1)
        top2 = np.sort(ref, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] >= margin
        same += int(agree.sum())
        positions += len(agree)
        confident_same += int(agree[sure].sum())
        confident += int(sure.sum())
        largest = max(largest, float(np.abs(ref - got).max()))
    return Agreement(
        top1=same / positions,
        confident_top1=confident_same / confident if confident else float("nan"),
        max_abs_diff=largest,
        positions=positions,
        confident_positions=confident,
    )


def check_export(
    reference_file: Path, base_gguf: Path, adapter_gguf: Path, tolerance: float, margin: float, n_threads: int = 1
) -> dict[str, float]:
    """Metrics ``export/*``; raises :class:`ExportError` when, on the positions where the trained model
    is confident (top-1 ahead by ``margin`` logits), llama.cpp + the adapter agrees with it on fewer
    top-1 tokens than the two base models do on theirs, by more than ``tolerance``.

    Near-ties are left out of the rule because a quantized base flips them. Measured on SmolLM2 Q4_1
    with 11 adapters (mlx and PEFT, 2 or 30 blocks, learning rate 1e-4 to 1e-3, changing 6-57 % of the
    trained model's top-1 tokens): faithful exports agreed with the trainer on 93.5-97.6 % of all
    positions against 98.2-99.6 % for the bases (gaps up to 5.5 points), but on the positions led by
    0.5 logits or more on 99.3-100 %, as the bases did (100 %). There, on the adapters that change a
    quarter or more of the top-1 tokens, a doubled alpha fell to 61-88 % (all failed), a halved one to
    82-97 % (5 of 6 failed), transposed square updates to 92-94 % on the two strongest all-block ones;
    on weak adapters such faults move too few confident predictions to show here (tests/train/
    test_fidelity.py catches them against a float32 copy of the base).
    """
    reference = read_reference(reference_file)
    base = agreement(reference.base, llama_cpp_logits(base_gguf, None, reference.tokens, n_threads), margin)
    tuned = agreement(reference.tuned, llama_cpp_logits(base_gguf, adapter_gguf, reference.tokens, n_threads), margin)
    changed = agreement(reference.base, reference.tuned)
    metrics = {
        "export/top1_agreement": tuned.top1,
        "export/top1_agreement_base": base.top1,
        "export/top1_agreement_confident": tuned.confident_top1,
        "export/top1_agreement_confident_base": base.confident_top1,
        "export/max_abs_logit_diff": tuned.max_abs_diff,
        "export/max_abs_logit_diff_base": base.max_abs_diff,
        "export/adapter_top1_change": 1.0 - changed.top1,  # how much the adapter changes the trainer's own model
        "export/positions": float(tuned.positions),
        "export/confident_positions": float(tuned.confident_positions),
    }
    log.info(
        "export check on %d positions: llama.cpp + adapter agrees with the trained model on %.1f%% of top-1 tokens, "
        "%.1f%% of the %d confident ones (base vs base %.1f%%, %.1f%%); the adapter changes %.1f%%",
        tuned.positions, 100 * tuned.top1, 100 * tuned.confident_top1, tuned.confident_positions,
        100 * base.top1, 100 * base.confident_top1, 100 * (1.0 - changed.top1),
    )
    if not tuned.confident_positions or not base.confident_positions:
        log.warning("export check: no position where the model is %.2g logits sure of its next token; nothing to compare", margin)
        return metrics
    if tuned.confident_top1 < base.confident_top1 - tolerance:
        raise ExportError(
            f"{adapter_gguf.name} does not reproduce the trained adapter: where the trained model is sure of the next token, "
            f"llama.cpp with the adapter agrees with it on {100 * tuned.confident_top1:.1f}% of {tuned.confident_positions} positions, "
            f"the base models on {100 * base.confident_top1:.1f}% (allowed gap train.export_check_tolerance={tolerance}); "
            "the export is wrong, not the training"
        )
    return metrics
