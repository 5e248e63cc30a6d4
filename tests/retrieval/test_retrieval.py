"""Retrieval: weighted RRF and MMR by hand, retrieval metrics, and the hybrid retriever on a real index."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import RETRIEVAL_PARAGRAPHS, BuiltIndex
from runner.retrieval.hybrid import HybridRetriever, mmr, retrieval_quality, weighted_rrf
from runner.core.artifacts import load_chunks
from runner.retrieval.embeddings import embed_texts

# ---------------------------------------------------------------- weighted RRF


def test_weighted_rrf_matches_hand_computed_scores() -> None:
    bm25 = [10, 20, 30]  # ranks 1, 2, 3
    dense = [30, 10, 40]  # ranks 1, 2, 3
    # score(d) = sum_i w_i / (c + rank_i(d)), c = 1, weights bm25 0.3 / dense 0.7
    #   10: 0.3/(1+1) + 0.7/(1+2) = 0.15  + 0.2333 = 0.3833
    #   20: 0.3/(1+2)             = 0.10           = 0.1000
    #   30: 0.3/(1+3) + 0.7/(1+1) = 0.075 + 0.35   = 0.4250
    #   40:             0.7/(1+3) =         0.175  = 0.1750
    # -> 30 (0.425), 10 (0.383), 40 (0.175), 20 (0.100)
    assert weighted_rrf([bm25, dense], [0.3, 0.7], c=1) == [30, 10, 40, 20]

    # equal weights 0.5 / 0.5, c = 1:
    #   10: 0.5/2 + 0.5/3 = 0.4167;  30: 0.5/4 + 0.5/2 = 0.375;  20: 0.5/3 = 0.1667;  40: 0.5/4 = 0.125
    assert weighted_rrf([bm25, dense], [0.5, 0.5], c=1) == [10, 30, 20, 40]


def test_weighted_rrf_with_the_default_constant() -> None:
    bm25 = [1, 2, 3]
    dense = [3, 2, 1]
    # c = 60, weights 0.3 / 0.7
    #   1: 0.3/61 + 0.7/63 = 0.0049180 + 0.0111111 = 0.0160291
    #   2: 0.3/62 + 0.7/62 = 1.0/62               = 0.0161290
    #   3: 0.3/63 + 0.7/61 = 0.0047619 + 0.0114754 = 0.0162373
    # -> 3, 2, 1: a large c flattens the ranks, so the heavier list wins the close calls
    assert weighted_rrf([bm25, dense], [0.3, 0.7], c=60) == [3, 2, 1]
    # equal weights: 1 and 3 tie at 0.5/61 + 0.5/63 = 0.0081967 + 0.0079365 = 0.0161332,
    # above 2's 0.5/62 + 0.5/62 = 0.0161290 -> the tie first, in first-seen order (1 before 3), then 2
    assert weighted_rrf([bm25, dense], [0.5, 0.5], c=60) == [1, 3, 2]
    assert weighted_rrf([dense, bm25], [0.5, 0.5], c=60) == [3, 1, 2]


def test_weighted_rrf_ties_keep_first_seen_order_and_zero_weight_follows_the_other_list() -> None:
    assert weighted_rrf([[7], [9]], [0.5, 0.5]) == [7, 9]
    assert weighted_rrf([[5, 6, 7], [7, 8, 5]], [1.0, 0.0]) == [5, 6, 7, 8]
    assert weighted_rrf([[5, 6, 7], [7, 8, 5]], [0.0, 1.0]) == [7, 8, 5, 6]
    assert weighted_rrf([[], []], [0.3, 0.7]) == []


# ---------------------------------------------------------------- MMR


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


QUERY = _unit(1, 0, 0)
CANDIDATES = np.stack(
    [
        _unit(1, 0, 0),  # 0: relevance 1.000, the best match
        _unit(1, 0.1, 0),  # 1: relevance 0.995, near-duplicate of 0
        _unit(1, 1, 0),  # 2: relevance 0.707, similarity to 0: 0.707
        _unit(0.2, 0, 1),  # 3: relevance 0.196, similarity to 0: 0.196 (least similar to 0)
    ]
)


def test_mmr_with_lambda_one_is_pure_relevance_order() -> None:
    assert mmr(QUERY, CANDIDATES, lambda_mult=1.0, k=4) == [0, 1, 2, 3]


def test_mmr_with_lambda_zero_picks_the_least_similar_second() -> None:
    # first pick is always the most relevant (0); then score = -max similarity to the picks:
    #   second: sims to 0 are 1:0.995, 2:0.707, 3:0.196 -> 3
    #   third: max sims to {0,3} are 1: max(0.995, 0.196*0.995+0.98*0)=0.995, 2: max(0.707, 0.139)=0.707 -> 2
    assert mmr(QUERY, CANDIDATES, lambda_mult=0.0, k=4) == [0, 3, 2, 1]


def test_mmr_below_one_half_prefers_diversity_over_the_near_duplicate() -> None:
    # the query equals candidate 0, so relevance(j) = similarity(j, 0) and the second-pick score is
    # (lambda - (1 - lambda)) * sim(j, 0); lambda 0.3:
    #   1: -0.4 * 0.995 = -0.398;  2: -0.4 * 0.707 = -0.283;  3: -0.4 * 0.196 = -0.078  -> 3
    assert mmr(QUERY, CANDIDATES, lambda_mult=0.3, k=2) == [0, 3]
    # lambda 0.7 flips the sign: 1: 0.4 * 0.995 = 0.398 is best -> the near-duplicate
    assert mmr(QUERY, CANDIDATES, lambda_mult=0.7, k=2) == [0, 1]


def test_mmr_edge_cases() -> None:
    assert mmr(QUERY, CANDIDATES[:0], lambda_mult=0.5, k=3) == []
    assert mmr(QUERY, CANDIDATES, lambda_mult=0.5, k=10) == mmr(QUERY, CANDIDATES, lambda_mult=0.5, k=4)
    assert len(mmr(QUERY, CANDIDATES, lambda_mult=0.5, k=1)) == 1


# ---------------------------------------------------------------- retrieval_quality


def test_retrieval_quality_arithmetic() -> None:
    rankings = [[5, 1, 2], [3, 4, 5], [7, 8, 9], [2, 6]]
    targets = [5, 5, 1, 6]
    # query 1: target at rank 1 -> hit@1, hit@3, rr 1
    # query 2: target at rank 3 -> hit@3, rr 1/3
    # query 3: target missing   -> nothing
    # query 4: target at rank 2 -> hit@3, rr 1/2
    quality = retrieval_quality(rankings, targets, k=3)
    assert quality == pytest.approx({"hit@1": 1 / 4, "hit@3": 3 / 4, "mrr": (1 + 1 / 3 + 1 / 2) / 4})


def test_retrieval_quality_counts_reciprocal_rank_beyond_k_but_not_hits() -> None:
    quality = retrieval_quality([[1, 2, 3, 4]], [4], k=2)
    assert quality == pytest.approx({"hit@1": 0.0, "hit@2": 0.0, "mrr": 0.25})


def test_retrieval_quality_without_targets_is_zero() -> None:
    assert retrieval_quality([], [], k=4) == {"hit@1": 0.0, "hit@4": 0.0, "mrr": 0.0}


# ---------------------------------------------------------------- the hybrid retriever on a real index

QUERIES = [
    "Which port does the zorblax harbour daemon listen on?",
    "How many fennel entries does the lantern cache keep?",
    "What happens to the turnip queue and the marmalade scheduler before an upgrade?",
    "When do cohort tokens expire at the badger gateway?",
    "How often does the walrus exporter send metrics to the observatory?",
    "Where is the key for pelican vault backups stored?",
]


def _retriever(tiny_index: BuiltIndex, **retriever: object) -> HybridRetriever:
    cfg = tiny_index.cfg.copy()
    for key, value in retriever.items():
        OmegaConf.update(cfg, f"retriever.{key}", value)
    root = cfg.paths.root

    def embed_queries(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cfg.index, root, show_progress=False)

    return HybridRetriever(tiny_index.stage_dir("index"), cfg.retriever, embed_queries)


def test_positions_map_to_the_chunks_in_order(tiny_index: BuiltIndex) -> None:
    chunks = load_chunks(tiny_index.stage_dir("chunk"))
    assert [c["text"] for c in chunks] == RETRIEVAL_PARAGRAPHS
    assert _retriever(tiny_index).chunk_ids == [c["chunk_id"] for c in chunks]


@pytest.mark.parametrize("kind", ["bm25", "ensemble", "dense"])
def test_unique_words_retrieve_their_chunk_first(tiny_index: BuiltIndex, kind: str) -> None:
    retriever = _retriever(tiny_index, kind=kind, k=3)
    results = retriever.search(QUERIES)
    assert [ranking[0] for ranking in results] == list(range(len(QUERIES)))
    assert all(len(ranking) == 3 and len(set(ranking)) == 3 for ranking in results)


def test_rankings_expose_each_retriever_and_fuse_them(tiny_index: BuiltIndex) -> None:
    retriever = _retriever(tiny_index, use_mmr=False)
    depth = len(RETRIEVAL_PARAGRAPHS)
    rankings = retriever.rankings(QUERIES[:2], depth=depth)
    for sparse, dense, fused in zip(rankings["bm25"], rankings["dense"], rankings["ensemble"]):
        assert sorted(sparse) == sorted(dense) == sorted(fused) == list(range(depth))
        assert fused == weighted_rrf([sparse, dense], [0.3, 0.7], c=60)


def test_ensemble_with_bm25_weight_only_follows_bm25(tiny_index: BuiltIndex) -> None:
    retriever = _retriever(tiny_index, **{"weights.bm25": 1.0, "weights.dense": 0.0})
    rankings = retriever.rankings(QUERIES, depth=len(RETRIEVAL_PARAGRAPHS))
    assert rankings["ensemble"] == rankings["bm25"]


def test_dense_mmr_with_lambda_one_equals_plain_similarity_order(tiny_index: BuiltIndex) -> None:
    plain = _retriever(tiny_index, use_mmr=False)
    relevance_only = _retriever(tiny_index, use_mmr=True, lambda_mult=1.0)
    vectors = embed_texts(QUERIES, tiny_index.cfg.index, tiny_index.cfg.paths.root, show_progress=False)
    for vector in vectors:
        assert relevance_only.dense_ranking(vector, 4) == plain.dense_ranking(vector, 4)


def test_search_quality_on_the_tiny_corpus(tiny_index: BuiltIndex) -> None:
    retriever = _retriever(tiny_index)
    quality = retrieval_quality(retriever.search(QUERIES, k=4), list(range(len(QUERIES))), k=4)
    assert quality == {"hit@1": 1.0, "hit@4": 1.0, "mrr": 1.0}
