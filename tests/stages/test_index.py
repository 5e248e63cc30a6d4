"""Index: FAISS written with its own writer, BM25 as JSON, rows aligned with chunks.jsonl, no pickles."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from conftest import RETRIEVAL_PARAGRAPHS, BuiltIndex
from runner.core.cache import MANIFEST
from runner.core.artifacts import Index, load_chunks
from runner.retrieval.embeddings import embed_texts
from runner.retrieval.hybrid import tokenize


def _looks_pickled(path: Path) -> bool:
    """Pickle protocols 2-5 start with the PROTO opcode (0x80) and the protocol number."""
    head = path.read_bytes()[:2]
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def test_stage_folder_holds_faiss_json_and_no_pickle(tiny_index: BuiltIndex) -> None:
    index_dir = tiny_index.stage_dir("index")
    names = sorted(p.name for p in index_dir.iterdir())
    assert names == sorted([Index.FAISS, Index.BM25, Index.META, MANIFEST])
    for path in index_dir.rglob("*"):
        assert path.suffix not in {".pkl", ".pickle", ".joblib"}
        assert not _looks_pickled(path), path
    for name in (Index.BM25, Index.META, MANIFEST):
        json.loads((index_dir / name).read_text())


def test_faiss_index_reads_back_with_one_normalized_row_per_chunk(tiny_index: BuiltIndex) -> None:
    chunks = load_chunks(tiny_index.stage_dir("chunk"))
    assert len(chunks) == len(RETRIEVAL_PARAGRAPHS)
    index = faiss.read_index(str(tiny_index.stage_dir("index") / Index.FAISS))
    assert isinstance(index, faiss.IndexFlatIP)
    assert index.ntotal == len(chunks)
    vectors = index.reconstruct_n(0, index.ntotal)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    meta = json.loads((tiny_index.stage_dir("index") / Index.META).read_text())
    assert meta["count"] == len(chunks) and meta["dim"] == index.d == 384
    assert meta["embedding_model"] == tiny_index.cfg.index.embedding_model


def test_faiss_rows_and_bm25_corpus_follow_chunk_order(tiny_index: BuiltIndex) -> None:
    chunks = load_chunks(tiny_index.stage_dir("chunk"))
    corpus = json.loads((tiny_index.stage_dir("index") / Index.BM25).read_text())
    assert corpus["chunk_ids"] == [c["chunk_id"] for c in chunks]
    assert corpus["tokens"] == [tokenize(c["text"]) for c in chunks]

    index = faiss.read_index(str(tiny_index.stage_dir("index") / Index.FAISS))
    fresh = embed_texts([chunks[3]["text"]], tiny_index.cfg.index, tiny_index.cfg.paths.root, show_progress=False)
    np.testing.assert_allclose(index.reconstruct(3), fresh[0], atol=1e-4)


def test_metrics_and_manifest(tiny_index: BuiltIndex) -> None:
    manifest = json.loads((tiny_index.stage_dir("index") / MANIFEST).read_text())
    assert manifest["stage"] == "index"
    assert manifest["metrics"]["chunks"] == len(RETRIEVAL_PARAGRAPHS)
    assert manifest["metrics"]["dim"] == 384
    assert manifest["inputs"] == {"chunk": tiny_index.summary["stages"]["chunk"]["key"]}
    assert manifest["config"]["index"]["batch_size"] == tiny_index.cfg.index.batch_size
    assert tiny_index.summary["metrics"]["index/chunks"] == len(RETRIEVAL_PARAGRAPHS)


def test_tokenize_lowercases_and_keeps_word_characters() -> None:
    assert tokenize("Port 7311: Zorblax-daemon's quasar_journal!") == ["port", "7311", "zorblax", "daemon", "s", "quasar_journal"]
