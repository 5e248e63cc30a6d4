"""Retrieval over the index stage's output: BM25, dense with MMR, and weighted RRF fusion."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runner.core.artifacts import Index


_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def weighted_rrf(rankings: Sequence[Sequence[int]], weights: Sequence[float], c: int = 60) -> list[int]:
    """Fuse ranked id lists: score(d) = sum_i w_i / (c + rank_i(d)), ranks from 1; ties keep first-seen order."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (c + rank)
    order: dict[int, int] = {}
    for ranking in rankings:
        for doc in ranking:
            order.setdefault(doc, len(order))
    return sorted(scores, key=lambda doc: (-scores[doc], order[doc]))


def mmr(query: np.ndarray, candidates: np.ndarray, lambda_mult: float, k: int) -> list[int]:
    """Maximal Marginal Relevance: positions into ``candidates``, most relevant first, then diverse."""
    if len(candidates) == 0:
        return []
    relevance = candidates @ query
    selected = [int(np.argmax(relevance))]
    while len(selected) < min(k, len(candidates)):
        redundancy = (candidates @ candidates[selected].T).max(axis=1)
        score = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        score[selected] = -np.inf
        selected.append(int(np.argmax(score)))
    return selected


class HybridRetriever:
    """BM25 + FAISS (optionally MMR) fused with weighted Reciprocal Rank Fusion."""

    def __init__(self, index_dir: Path, retriever_cfg: Any, embed_queries: Any):
        import faiss
        from rank_bm25 import BM25Okapi

        self.cfg = retriever_cfg
        self.embed_queries = embed_queries
        corpus = json.loads((index_dir / Index.BM25).read_text())
        self.chunk_ids: list[str] = corpus["chunk_ids"]
        meta = json.loads((index_dir / Index.META).read_text())
        self.bm25 = BM25Okapi(corpus["tokens"], k1=meta.get("bm25_k1", 1.5), b=meta.get("bm25_b", 0.75))
        index = faiss.read_index(str(index_dir / Index.FAISS))
        self.faiss_index = index
        self.vectors = index.reconstruct_n(0, index.ntotal)

    def bm25_ranking(self, query: str, depth: int) -> list[int]:
        scores = self.bm25.get_scores(tokenize(query))
        return [int(i) for i in np.argsort(-scores, kind="stable")[:depth]]

    def dense_ranking(self, query_vector: np.ndarray, depth: int) -> list[int]:
        fetch = min(max(depth, self.cfg.fetch_k), len(self.chunk_ids))
        _, found = self.faiss_index.search(query_vector[None, :].astype(np.float32), fetch)
        candidates = [int(i) for i in found[0] if i >= 0]
        if not self.cfg.use_mmr:
            return candidates[:depth]
        order = mmr(query_vector, self.vectors[candidates], self.cfg.lambda_mult, depth)
        return [candidates[i] for i in order]

    def rankings(self, queries: list[str], depth: int) -> dict[str, list[list[int]]]:
        """BM25, dense and fused rankings (chunk positions) for each query."""
        vectors = self.embed_queries(queries)
        weights = (self.cfg.weights.bm25, self.cfg.weights.dense)
        result: dict[str, list[list[int]]] = {"bm25": [], "dense": [], "ensemble": []}
        for query, vector in zip(queries, vectors):
            sparse = self.bm25_ranking(query, depth)
            dense = self.dense_ranking(vector, depth)
            result["bm25"].append(sparse)
            result["dense"].append(dense)
            result["ensemble"].append(weighted_rrf([sparse, dense], weights, self.cfg.rrf_c)[:depth])
        return result

    def search(self, queries: list[str], k: int | None = None) -> list[list[int]]:
        """Top-k chunk positions per query with the configured retriever kind."""
        k = k or self.cfg.k
        depth = max(k, self.cfg.fetch_k)
        return [ranking[:k] for ranking in self.rankings(queries, depth)[self.cfg.kind]]


def retrieval_quality(rankings: list[list[int]], targets: list[int], k: int) -> dict[str, float]:
    """hit@1, hit@k and MRR of target positions in ranked lists."""
    if not targets:
        return {"hit@1": 0.0, f"hit@{k}": 0.0, "mrr": 0.0}
    hit1 = hitk = rr = 0.0
    for ranking, target in zip(rankings, targets):
        if target in ranking:
            rank = ranking.index(target) + 1
            hit1 += rank == 1
            hitk += rank <= k
            rr += 1.0 / rank
    n = len(targets)
    return {"hit@1": hit1 / n, f"hit@{k}": hitk / n, "mrr": rr / n}
