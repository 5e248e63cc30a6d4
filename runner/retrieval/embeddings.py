"""Sentence embeddings of texts with the configured embedding model (``index.*``), shared by the
index, curation (near-duplicates, specificity gate), retrieval and evaluation (similarity)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.core.models import load_embedder


def embed_texts(texts: list[str], index_cfg: Any, root: Any, show_progress: bool = True) -> np.ndarray:
    model = load_embedder(index_cfg.embedding_model, root, index_cfg.device)
    vectors = model.encode(
        texts,
        batch_size=index_cfg.batch_size,
        normalize_embeddings=index_cfg.normalize,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )
    return np.asarray(vectors, dtype=np.float32)
