"""Stage cache: keys follow content; a folder without its manifest or still .partial never counts.
(A leftover from a crash and two jobs on one key: tests/reliability/test_interruption.py, test_concurrency.py.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from runner.core.cache import MANIFEST, CacheEntry, hash_json, write_json_atomic
from runner.engine.pipeline import STAGES, StageSpec, stage_key

SPECS = {spec.name: spec for spec in STAGES}


# ---------------------------------------------------------------- hashing and keys


def test_hash_json_ignores_key_order_and_sees_values() -> None:
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})
    assert len(hash_json({})) == 16


def test_chunk_key_follows_its_config_slice_only(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    spec, inputs = SPECS["chunk"], {"ingest": "k-ingest"}
    base = stage_key(spec, composed_cfg(), repo_root, inputs)
    assert stage_key(spec, composed_cfg(), repo_root, inputs) == base  # deterministic
    assert stage_key(spec, composed_cfg(["chunk.size=900"]), repo_root, inputs) != base
    assert stage_key(spec, composed_cfg(["chunk=tokens"]), repo_root, inputs) != base
    # token-sized chunks use the embedding model's tokenizer; character-sized ones do not
    assert stage_key(spec, composed_cfg(["index.embedding_model=/models/other"]), repo_root, inputs) == base
    tokens = stage_key(spec, composed_cfg(["chunk=tokens"]), repo_root, inputs)
    assert stage_key(spec, composed_cfg(["chunk=tokens", "index.embedding_model=/models/other"]), repo_root, inputs) != tokens
    for unrelated in ("index.batch_size=7", "retriever.k=2", "train.iters=3", "llm.temperature=0.9", "until=chunk"):
        assert stage_key(spec, composed_cfg([unrelated]), repo_root, inputs) == base, unrelated
    assert stage_key(spec, composed_cfg(), repo_root, {"ingest": "k-other"}) != base


def test_index_key_follows_index_slice_and_input(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    spec, inputs = SPECS["index"], {"chunk": "k-chunk"}
    base = stage_key(spec, composed_cfg(), repo_root, inputs)
    assert stage_key(spec, composed_cfg(["index.batch_size=7"]), repo_root, inputs) != base
    assert stage_key(spec, composed_cfg(["chunk.size=900"]), repo_root, inputs) == base  # reaches index via its input
    assert stage_key(spec, composed_cfg(), repo_root, {"chunk": "k-other"}) != base


def test_ingest_key_follows_document_bytes_not_timestamps(
    composed_cfg: Callable[..., DictConfig], repo_root: Path, tiny_doc: Path
) -> None:
    spec = SPECS["ingest"]
    cfg = composed_cfg([f"ingest.documents=[{tiny_doc.parent}]"])
    base = stage_key(spec, cfg, repo_root, {})
    os.utime(tiny_doc, (1_000_000, 1_000_000))
    assert stage_key(spec, cfg, repo_root, {}) == base
    tiny_doc.write_text(tiny_doc.read_text() + "\nOne more line.\n", encoding="utf-8")
    changed = stage_key(spec, cfg, repo_root, {})
    assert changed != base
    (tiny_doc.parent / "second.md").write_text("A second document.", encoding="utf-8")
    with_second = stage_key(spec, cfg, repo_root, {})
    assert with_second != changed  # a new file in a configured folder
    with_password = composed_cfg([f"ingest.documents=[{tiny_doc.parent}]", "ingest.pdf_password=x"])
    assert stage_key(spec, with_password, repo_root, {}) != with_second  # the ingest config slice


def test_key_follows_the_stage_source_file(composed_cfg: Callable[..., DictConfig], repo_root: Path) -> None:
    cfg = composed_cfg()
    spec = SPECS["chunk"]
    other_code = StageSpec(spec.name, "runner.stages.index", spec.config_keys, spec.inputs)
    assert stage_key(spec, cfg, repo_root, {"ingest": "k"}) != stage_key(other_code, cfg, repo_root, {"ingest": "k"})


# ---------------------------------------------------------------- CacheEntry


def test_partial_folder_and_manifest_less_folder_are_not_complete(tmp_path: Path) -> None:
    entry = CacheEntry(tmp_path / "chunk", "abc123")
    assert not entry.is_complete()
    work = entry.prepare_partial(resume=False)
    (work / "chunks.jsonl").write_text("{}\n")
    write_json_atomic(work / MANIFEST, {"stage": "chunk"})  # even with a manifest, .partial is not final
    assert not entry.is_complete()
    entry.final_dir.mkdir()
    (entry.final_dir / "chunks.jsonl").write_text("{}\n")  # a leftover without its manifest
    assert not entry.is_complete()


def test_commit_moves_the_work_into_place_and_replaces_a_leftover(tmp_path: Path) -> None:
    entry = CacheEntry(tmp_path / "chunk", "abc123")
    entry.final_dir.mkdir(parents=True)
    (entry.final_dir / "stale.txt").write_text("from a crashed run")
    work = entry.prepare_partial(resume=False)
    (work / "chunks.jsonl").write_text('{"id": 1}\n')
    entry.commit({"stage": "chunk", "metrics": {}})
    assert entry.is_complete()
    assert not entry.partial_dir.exists()
    assert sorted(p.name for p in entry.final_dir.iterdir()) == [MANIFEST, "chunks.jsonl"]
    assert entry.read_manifest() == {"stage": "chunk", "metrics": {}}


def test_prepare_partial_clears_leftovers_unless_resuming(tmp_path: Path) -> None:
    entry = CacheEntry(tmp_path / "generate", "k1")
    (entry.prepare_partial(resume=False) / "done.jsonl").write_text('{"q": 1}\n')
    assert (entry.prepare_partial(resume=True) / "done.jsonl").exists()
    assert list(entry.prepare_partial(resume=False).iterdir()) == []
