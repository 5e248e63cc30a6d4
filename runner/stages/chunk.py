"""Chunk: split each page into overlapping chunks (characters or embedding-model tokens).

Splitting is done by semantic-text-splitter, which prefers paragraph, then sentence,
then word boundaries, so chunks rarely cut a sentence in half. Chunks never cross
pages, so every chunk keeps an exact (document, page) citation, the section
heading in force where it starts (one that starts mid-section inherits it), and the
headings that start inside it, so a fact below one of them gets its own heading.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runner.core.artifacts import Chunk, Ingest
from runner.documents.headings import heading_path_at
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.core.models import resolve_embedding_model
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)


def make_splitter(chunk_cfg: Any, embedding_model: str, root: Path):
    from semantic_text_splitter import TextSplitter

    if chunk_cfg.unit == "chars":
        return TextSplitter(chunk_cfg.size, overlap=chunk_cfg.overlap)
    from tokenizers import Tokenizer

    tokenizer_file = Path(resolve_embedding_model(embedding_model, root)) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    # tokenizer.json may pad/truncate every text to a fixed length (all-MiniLM: 128),
    # which would make every piece measure the same; count real tokens instead
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return TextSplitter.from_huggingface_tokenizer(tokenizer, chunk_cfg.size, overlap=chunk_cfg.overlap)


def split_pages(pages: list[dict[str, Any]], splitter: Any) -> list[dict[str, Any]]:
    """Split pages into chunk records with stable ids in reading order, each with the heading in force at its start."""
    chunks: list[dict[str, Any]] = []
    for page in tqdm(pages, desc="chunk", unit="page"):
        for offset, piece in splitter.chunk_indices(page["text"]):
            text = piece.strip()
            if not text:
                continue
            start = offset + len(piece) - len(piece.lstrip())
            path = heading_path_at(page, start)
            chunks.append(
                {
                    "chunk_id": f"c{len(chunks):05d}",
                    "doc_id": page["doc_id"],
                    "source": page["source"],
                    "page": page["page"],
                    "text": text,
                    "heading": path[-1] if path else None,
                    "heading_path": path,
                    # the headings that start inside the chunk, at their offset in its text (a fact's own heading)
                    "headings": [
                        {"offset": h["offset"] - start, "title": h["title"]}
                        for h in page.get("headings") or [] if start < h["offset"] < start + len(text)
                    ],
                }
            )
    return chunks


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Write ``chunks.jsonl``: one record per chunk with its document and page."""
    pages = read_jsonl(ctx.inputs["ingest"] / Ingest.PAGES)
    splitter = make_splitter(cfg.chunk, cfg.index.embedding_model, ctx.root)
    chunks = split_pages(pages, splitter)
    write_jsonl(ctx.work_dir / Chunk.CHUNKS, chunks)
    lengths = [len(c["text"]) for c in chunks]
    log.info("%d pages -> %d chunks (mean %.0f chars)", len(pages), len(chunks), sum(lengths) / max(1, len(lengths)))
    return StageResult(
        metrics={
            "chunks": len(chunks),
            "mean_chars": sum(lengths) / max(1, len(lengths)),
            "max_chars": max(lengths, default=0),
        },
        artifacts=[Chunk.CHUNKS],
    )
