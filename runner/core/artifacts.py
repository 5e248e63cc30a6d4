"""The files each stage writes into its cache folder: the pipeline's data flow in one place.

A stage reads another stage's output only through these names and ``ctx.inputs[<stage>]``,
never through that stage's module, so a reader sees what flows where without following imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.jsonl import read_jsonl


class Ingest:
    # doc_id, source, page, text, heading_path (in force at the page top),
    # headings (starting on the page: title, level, offset in text, in_text, path)
    PAGES = "pages.jsonl"
    REPORT = "ingest_report.json"  # skipped files, warnings, skipped_pages, extraction (PDF extractor per document)


class Chunk:
    CHUNKS = "chunks.jsonl"  # chunk_id, doc_id, source, page, text, heading, heading_path (in force at its start)


class Index:
    FAISS = "dense.faiss"
    BM25 = "bm25_corpus.json"
    META = "index_meta.json"


class Generate:
    ITEMS = "items.jsonl"  # one line per model request, appended as it finishes
    INSTRUCTIONS = "instructions.jsonl"  # questions with their chunk, page and fact
    FACTS = "facts.jsonl"  # every fact asked about and trained: fact_id, text, kind, chunk, page, heading


class Curate:
    CURATED = "curated.jsonl"
    DROPPED = "dropped.jsonl"  # every dropped question with its reason (judge_rejected: with judge_score, judge_reason)
    JUDGE_ITEMS = "judge_items.jsonl"  # curate.judge: one line per judge request, appended as it finishes


class Answer:
    ANSWERS = "answers.jsonl"
    DROPPED = "answers_dropped.jsonl"
    ITEMS = "answer_items.jsonl"


class Dataset:
    TRAIN = "train.jsonl"
    VALID = "valid.jsonl"
    PROVENANCE = "provenance.jsonl"
    # questions the eval stage asks, one per line: set (heldout | unseen | train), id, question,
    # reference (the fact sentence), fact_id, chunk_id, context (the fact's chunk with its heading)
    EVAL_SETS = "eval_sets.jsonl"
    COVERAGE = "coverage.png"


class PrepareModel:
    INFO = "model_info.json"  # where the Hugging Face folder (and an MLX copy) is: read with runner.core.models


class Train:
    ADAPTER_DIR = "adapter"  # the backend's own format, with its adapter_config.json
    ADAPTER_GGUF = "adapter.gguf"  # llama.cpp LoRA: Llama(model_path=..., lora_path=...)
    JOB = "train_job.json"


class Eval:
    COMPARISON = "comparison.jsonl"
    SUMMARY = "eval_summary.json"
    REPORT = "report.md"
    CHART = "base_vs_tuned.png"


def load_chunks(chunk_dir: Path) -> list[dict[str, Any]]:
    """The chunk stage's records, in reading order (the order the index stores them in)."""
    return read_jsonl(Path(chunk_dir) / Chunk.CHUNKS)
