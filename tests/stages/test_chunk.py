"""Chunk: sizes respect chunk.size (chars or embedding tokens), chunks overlap, pages are kept, and each chunk
carries the section heading in force where it starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig
from tokenizers import Tokenizer

from runner.core.jsonl import read_jsonl, write_jsonl
from runner.core.models import resolve_embedding_model
from runner.core.stage import StageContext
from runner.stages import chunk
from runner.core.artifacts import Chunk, Ingest, load_chunks
from runner.stages.chunk import make_splitter, split_pages

# short sentences, so the splitter can fill the overlap with whole sentences
SENTENCES = [f"Step {i} sets the {word} valve to {i * 7} bar." for i, word in enumerate(["red", "blue", "green", "amber"] * 25)]
LONG_PAGE = " ".join(SENTENCES)


def _overlap(previous: str, following: str) -> int:
    """Length of the longest suffix of ``previous`` that starts ``following``."""
    return max((n for n in range(1, len(previous) + 1) if following.startswith(previous[-n:])), default=0)


@pytest.fixture(scope="module")
def tokenizer(repo_root: Path) -> Tokenizer:
    """The embedding model's tokenizer, counting real tokens (no padding, no truncation)."""
    folder = Path(resolve_embedding_model("embedded:all-minilm-l6-v2", repo_root))
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _count_tokens(tok: Tokenizer, text: str) -> int:
    return len(tok.encode(text, add_special_tokens=False).ids)


def test_char_chunks_respect_size_and_overlap(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    cfg = composed_cfg(["chunk.size=200", "chunk.overlap=60"])
    pages = [{"doc_id": "d001", "source": "long.md", "page": 1, "text": LONG_PAGE}]
    chunks = split_pages(pages, make_splitter(cfg.chunk, cfg.index.embedding_model, repo_root))

    assert len(chunks) >= len(LONG_PAGE) // 200
    assert all(len(c["text"]) <= 200 for c in chunks)
    assert max(len(c["text"]) for c in chunks) > 150  # chunks are filled, not tiny
    for previous, following in zip(chunks, chunks[1:]):
        shared = _overlap(previous["text"], following["text"])
        assert 20 <= shared <= 60, (previous["text"], following["text"])
    joined = " ".join(c["text"] for c in chunks)
    assert all(sentence in joined for sentence in SENTENCES)  # nothing is lost


def test_zero_overlap_gives_disjoint_chunks(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    cfg = composed_cfg(["chunk.size=200", "chunk.overlap=0"])
    pages = [{"doc_id": "d001", "source": "long.md", "page": 1, "text": LONG_PAGE}]
    chunks = split_pages(pages, make_splitter(cfg.chunk, cfg.index.embedding_model, repo_root))
    assert " ".join(c["text"] for c in chunks) == LONG_PAGE


def test_token_chunks_respect_size_in_embedding_tokens(
    composed_cfg: Callable[..., DictConfig], repo_root: Path, tokenizer: Tokenizer
) -> None:
    cfg = composed_cfg(["chunk=tokens"])  # 200 tokens, 40 overlap
    assert cfg.chunk.unit == "tokens"
    total = _count_tokens(tokenizer, LONG_PAGE)
    assert total > 2 * cfg.chunk.size  # the page needs several chunks
    pages = [{"doc_id": "d001", "source": "long.md", "page": 1, "text": LONG_PAGE}]
    chunks = split_pages(pages, make_splitter(cfg.chunk, cfg.index.embedding_model, repo_root))

    counts = [_count_tokens(tokenizer, c["text"]) for c in chunks]
    assert len(chunks) >= total // cfg.chunk.size
    assert max(counts) <= cfg.chunk.size
    assert max(counts) > cfg.chunk.size * 0.8
    assert max(len(c["text"]) for c in chunks) > cfg.chunk.size  # sized in tokens, not characters
    for previous, following in zip(chunks, chunks[1:]):
        assert _overlap(previous["text"], following["text"]) > 0


def test_chunk_stage_keeps_document_and_page_of_every_chunk(
    composed_cfg: Callable[..., DictConfig], repo_root: Path, tmp_path: Path
) -> None:
    pages = [
        {"doc_id": "d001", "source": "a.pdf", "page": 1, "text": LONG_PAGE[:700]},
        {"doc_id": "d001", "source": "a.pdf", "page": 2, "text": LONG_PAGE[700:1500]},
        {"doc_id": "d002", "source": "b.md", "page": 1, "text": "A short note about the pump."},
    ]
    ingest_dir, work = tmp_path / "ingest", tmp_path / "work"
    ingest_dir.mkdir()
    work.mkdir()
    write_jsonl(ingest_dir / Ingest.PAGES, pages)
    cfg = composed_cfg(["chunk.size=200", "chunk.overlap=40"])
    ctx = StageContext(name="chunk", cfg=cfg, root=repo_root, work_dir=work, inputs={"ingest": ingest_dir})

    result = chunk.run(cfg, ctx)

    chunks = load_chunks(work)
    assert result.artifacts == [Chunk.CHUNKS]
    assert result.metrics["chunks"] == len(chunks)
    assert result.metrics["max_chars"] <= 200
    assert [c["chunk_id"] for c in chunks] == [f"c{i:05d}" for i in range(len(chunks))]
    by_page = {(p["source"], p["page"]): p for p in pages}
    for record in chunks:
        page = by_page[(record["source"], record["page"])]
        assert record["doc_id"] == page["doc_id"]
        assert record["text"] in page["text"]  # never crosses a page boundary
    assert {(c["source"], c["page"]) for c in chunks} == set(by_page)
    assert chunks[-1]["text"] == "A short note about the pump."
    assert all(json.loads(line) for line in (work / Chunk.CHUNKS).read_text().splitlines())


def test_blank_pages_produce_no_chunks(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    cfg = composed_cfg(["chunk.size=200", "chunk.overlap=20"])
    pages = [
        {"doc_id": "d001", "source": "a.md", "page": 1, "text": "   \n\n  "},
        {"doc_id": "d001", "source": "a.md", "page": 2, "text": "Real text on page two."},
    ]
    chunks = split_pages(pages, make_splitter(cfg.chunk, cfg.index.embedding_model, repo_root))
    assert [(c["page"], c["text"], c["chunk_id"]) for c in chunks] == [(2, "Real text on page two.", "c00000")]


# Two sections on page 1, the second running on over page 2 (records as ingest writes them, issue 17)
HARBOUR = " ".join(f"Harbour step {i} sets the quay valve to {i * 3} bar." for i in range(8))
LANTERN = " ".join(f"Lantern step {i} keeps {i * 5} fennel entries." for i in range(12))
SECTIONED_PAGE = f"Harbour settings\n{HARBOUR}\nLantern cache\n{LANTERN}"
LANTERN_AT = SECTIONED_PAGE.index("Lantern cache")
SECTIONED_PAGES = [
    {
        "doc_id": "d001", "source": "guide.pdf", "page": 1, "text": SECTIONED_PAGE, "heading_path": ["Guide"],
        "headings": [
            {"title": "Harbour settings", "level": 1, "offset": 0, "in_text": True, "path": ["Guide", "Harbour settings"]},
            {"title": "Lantern cache", "level": 1, "offset": LANTERN_AT, "in_text": True, "path": ["Guide", "Lantern cache"]},
        ],
    },
    {"doc_id": "d001", "source": "guide.pdf", "page": 2, "text": LANTERN, "heading_path": ["Guide", "Lantern cache"], "headings": []},
]


def test_each_chunk_carries_the_heading_in_force_where_it_starts(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    cfg = composed_cfg(["chunk.size=160", "chunk.overlap=40"])
    chunks = split_pages(SECTIONED_PAGES, make_splitter(cfg.chunk, cfg.index.embedding_model, repo_root))

    page_one = [c for c in chunks if c["page"] == 1]
    assert len(page_one) > 4
    for record in page_one:
        start = SECTIONED_PAGE.index(record["text"])
        expected = "Lantern cache" if start >= LANTERN_AT else "Harbour settings"
        assert (record["heading"], record["heading_path"]) == (expected, ["Guide", expected]), record["text"]
    # a chunk that begins mid-section (after the heading line) still has that section's heading
    assert any(c["heading"] == "Lantern cache" and not c["text"].startswith("Lantern cache") for c in page_one)
    # page 2 opens mid-section: every chunk inherits the heading from page 1
    assert {c["heading"] for c in chunks if c["page"] == 2} == {"Lantern cache"}
    # a chunk a heading starts inside lists it at its offset in the chunk's text, so a fact below it gets it
    inside = [c for c in page_one if c["headings"]]
    assert inside and all(c["text"][h["offset"]:].startswith(h["title"]) for c in inside for h in c["headings"])
    assert {h["title"] for c in inside for h in c["headings"]} == {"Lantern cache"}


def test_pages_from_before_headings_give_chunks_no_heading(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    cfg = composed_cfg(["chunk.size=200", "chunk.overlap=0"])
    pages = [{"doc_id": "d001", "source": "old.md", "page": 1, "text": LONG_PAGE[:400]}]  # an ingest record without headings
    chunks = split_pages(pages, make_splitter(cfg.chunk, cfg.index.embedding_model, repo_root))
    assert chunks and all(c["heading"] is None and c["heading_path"] == [] for c in chunks)


def test_ingest_then_chunk_keeps_outline_headings_on_chunks(
    composed_cfg: Callable[..., DictConfig], repo_root: Path, tmp_path: Path, run_ingest
) -> None:
    from pdfs import build_sectioned_pdf

    sections = [
        (page, level, title, " ".join(f"{title} step {i} sets the {title.lower()} value to {i * 3}." for i in range(8)))
        for page, level, title in [(1, 0, "Installation"), (1, 1, "System requirements"), (2, 1, "Network ports")]
    ]
    run_ingest([build_sectioned_pdf(tmp_path / "guide.pdf", sections)])
    work = tmp_path / "chunks"
    work.mkdir()
    cfg = composed_cfg(["chunk.size=200", "chunk.overlap=0"])
    chunk.run(cfg, StageContext(name="chunk", cfg=cfg, root=repo_root, work_dir=work, inputs={"ingest": tmp_path / "work"}))

    chunks = load_chunks(work)
    page_one = read_jsonl(tmp_path / "work" / Ingest.PAGES)[0]["text"]
    section_two = page_one.index("System requirements\n")
    for record in (c for c in chunks if c["page"] == 1):
        before = page_one.index(record["text"]) < section_two
        assert record["heading_path"] == (["Installation"] if before else ["Installation", "System requirements"])
    assert {c["heading"] for c in chunks if c["page"] == 1} == {"Installation", "System requirements"}
    assert {c["heading"] for c in chunks if c["page"] == 2} == {"Network ports"}
    assert chunks[-1]["heading_path"] == ["Installation", "Network ports"]
