"""Dataset: write train/valid JSONL in the trainer's format, provenance in a side file.

Formats: ``chat`` ({"messages": [...]}), ``text`` (the original Mistral template) and
``completions`` ({"prompt", "completion"}), all read by mlx-lm's loader. The split puts
``dataset.valid_fraction`` of the groups (questions, or source chunks) in valid, and a
question text never lands in both files.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections import Counter, defaultdict
from typing import Any

from runner.artifacts import Answer, Dataset, Ingest
from runner.errors import InputError
from runner.facts import CHARS_PER_TOKEN
from runner.jsonl import read_jsonl, write_jsonl
from runner.stage import StageContext, StageResult

log = logging.getLogger(__name__)



def format_record(question: str, answer: str, fmt: str) -> dict[str, Any]:
    if fmt == "chat":
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    if fmt == "text":
        return {"text": f"<s>[INST] {question} [/INST] {answer}</s>"}
    return {"prompt": question, "completion": answer}


def _normalize(question: str) -> str:
    return " ".join(question.lower().split())


def split_records(records: list[dict[str, Any]], valid_fraction: float, split_by: str, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split into (train, valid): whole groups go to one side; valid gets ~valid_fraction of records."""
    key = "chunk_id" if split_by == "chunk" else "question"
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        group = record[key] if key == "chunk_id" else _normalize(record["question"])
        groups[group].append(record)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target = math.ceil(valid_fraction * len(records)) if len(records) > 1 else 0
    valid_groups: set[str] = set()
    size = 0
    for group in order:
        if size >= target:
            break
        if size + len(groups[group]) > target:
            continue  # a group that overshoots could take most records (or all of them) into valid
        valid_groups.add(group)
        size += len(groups[group])
    if target and not valid_groups and len(order) > 1:
        # every group is larger than the target: the smallest one still gives a validation set
        smallest = min(order, key=lambda g: len(groups[g]))
        if len(groups[smallest]) <= len(records) - len(groups[smallest]):
            valid_groups.add(smallest)
    train = [r for g in order if g not in valid_groups for r in groups[g]]
    train_questions = {_normalize(r["question"]) for r in train}
    valid = [r for g in order if g in valid_groups for r in groups[g] if _normalize(r["question"]) not in train_questions]
    return train, valid


def draw_coverage(pages: list[dict[str, Any]], examples: list[dict[str, Any]], path: Any) -> float:
    """Bar chart of kept examples per document page (gaps show uncovered pages); return the covered share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter((e["source"], e["page"]) for e in examples)
    keys = [(p["source"], p["page"]) for p in pages]
    values = [counts.get(key, 0) for key in keys]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(keys)), 3))
    ax.bar(range(len(keys)), values, color=["tab:blue" if v else "tab:red" for v in values])
    ax.set_xlabel("page (documents in order; red = no example)")
    ax.set_ylabel("training examples")
    ax.set_title(f"Coverage: {sum(v > 0 for v in values)} of {len(keys)} pages have examples")
    step = max(1, len(keys) // 20)
    ax.set_xticks(range(0, len(keys), step), [str(keys[i][1]) for i in range(0, len(keys), step)], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return sum(v > 0 for v in values) / max(1, len(keys))


def _provenance(split: str, line: int, record: dict[str, Any]) -> dict[str, Any]:
    fields = ("qid", "chunk_id", "context_chunk_ids", "doc_id", "source", "page", "fact", "strategy")
    return {"split": split, "line": line, **{f: record.get(f) for f in fields}}


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Write train.jsonl / valid.jsonl in ``dataset.format`` plus provenance.jsonl."""
    answered = read_jsonl(ctx.inputs["answer"] / Answer.ANSWERS)
    if not answered:
        raise InputError(
            "no question survived curation and answering, so there is nothing to train on: "
            "see curate/dropped.jsonl and answer/answers_dropped.jsonl in MLflow, then generate more "
            "(generate.max_chunks, generate.candidates_per_fact) or use a stronger model"
        )
    ds = cfg.dataset
    train, valid = split_records(answered, ds.valid_fraction, ds.split_by, ds.seed)
    write_jsonl(ctx.work_dir / Dataset.TRAIN, (format_record(r["question"], r["answer"], ds.format) for r in train))
    if valid:  # mlx-lm's loader fails on an empty file (IndexError); a missing one means "no validation"
        write_jsonl(ctx.work_dir / Dataset.VALID, (format_record(r["question"], r["answer"], ds.format) for r in valid))
    provenance = [_provenance("train", i, r) for i, r in enumerate(train)] + [_provenance("valid", i, r) for i, r in enumerate(valid)]
    write_jsonl(ctx.work_dir / Dataset.PROVENANCE, provenance)
    answer_chars = [len(r["answer"]) for r in answered] or [0]
    metrics = {
        "train_size": len(train),
        "valid_size": len(valid),
        "train_approx_tokens": sum(len(r["question"]) + len(r["answer"]) for r in train) / CHARS_PER_TOKEN,
        "valid_approx_tokens": sum(len(r["question"]) + len(r["answer"]) for r in valid) / CHARS_PER_TOKEN,
        "answer_chars_mean": statistics.mean(answer_chars),
        "answer_chars_median": statistics.median(answer_chars),
        "answer_chars_max": max(answer_chars),
    }
    pages = read_jsonl(ctx.inputs["ingest"] / Ingest.PAGES)
    metrics["pages_covered_share"] = draw_coverage(pages, answered, ctx.work_dir / Dataset.COVERAGE)
    log.info("dataset: %d train / %d valid records (%s format)", len(train), len(valid), ds.format)
    return StageResult(
        metrics=metrics,
        artifacts=[Dataset.TRAIN, Dataset.PROVENANCE, Dataset.COVERAGE] + ([Dataset.VALID] if valid else []),
        datasets={"training": Dataset.TRAIN, **({"validation": Dataset.VALID} if valid else {})},
    )
