"""Index: dense embeddings in FAISS plus a BM25 corpus over the same chunk ids.

FAISS is saved with its own writer; BM25 is stored as its tokenized corpus (JSON)
and rebuilt on load, so nothing in the cache is ever unpickled.
"""

from __future__ import annotations

import logging
import time
from typing import Any


from runner.core.cache import write_json_atomic
from runner.core.artifacts import Index, load_chunks
from runner.retrieval.embeddings import embed_texts
from runner.core.models import load_embedder
from runner.retrieval.hybrid import tokenize
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Embed every chunk into a FAISS inner-product index and store the BM25 corpus."""
    import faiss

    chunks = load_chunks(ctx.inputs["chunk"])
    texts = [c["text"] for c in chunks]
    load_embedder(cfg.index.embedding_model, ctx.root, cfg.index.device)  # keep model loading out of the rate
    started = time.perf_counter()
    vectors = embed_texts(texts, cfg.index, ctx.root)
    embed_s = time.perf_counter() - started
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, str(ctx.work_dir / Index.FAISS))
    write_json_atomic(ctx.work_dir / Index.BM25, {"chunk_ids": [c["chunk_id"] for c in chunks], "tokens": [tokenize(t) for t in texts]})
    write_json_atomic(
        ctx.work_dir / Index.META,
        {
            "embedding_model": cfg.index.embedding_model,
            "dim": int(vectors.shape[1]),
            "normalize": cfg.index.normalize,
            "count": len(chunks),
            "bm25_k1": cfg.index.bm25_k1,
            "bm25_b": cfg.index.bm25_b,
        },
    )
    rate = len(chunks) / embed_s if embed_s else 0.0
    log.info("indexed %d chunks (dim %d), %.1f chunks/s", len(chunks), vectors.shape[1], rate)
    return StageResult(
        metrics={"chunks": len(chunks), "dim": int(vectors.shape[1]), "embed_chunks_per_s": rate},
        artifacts=[Index.META],
    )
