"""Stage cache: keys follow content, half-written folders never count, one key is computed once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig, OmegaConf

from runner.cache import MANIFEST, CacheEntry, hash_json, write_json_atomic
from runner.pipeline import STAGES, StageOutcome, StageSpec, execute_stage, stage_key

SPECS = {spec.name: spec for spec in STAGES}


def _no_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    return None


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


# ---------------------------------------------------------------- execute_stage with a leftover


def test_leftover_partial_folder_is_recomputed_not_taken(
    composed_cfg: Callable[..., DictConfig], repo_root: Path, tiny_doc: Path, tmp_path: Path
) -> None:
    cfg = composed_cfg([f"ingest.documents=[{tiny_doc}]"])
    spec = SPECS["ingest"]
    cache_dir = tmp_path / "cache"
    key = stage_key(spec, cfg, repo_root, {})
    leftover = CacheEntry(cache_dir / "ingest", key).partial_dir
    leftover.mkdir(parents=True)
    (leftover / "pages.jsonl").write_text('{"text": "half-written junk"}\n')
    write_json_atomic(leftover / MANIFEST, {"metrics": {}, "artifacts": []})

    outcome = execute_stage(spec, cfg, repo_root, cache_dir, {}, _no_metrics)

    assert not outcome.cache_hit
    assert outcome.path == cache_dir / "ingest" / key
    assert "half-written junk" not in (outcome.path / "pages.jsonl").read_text()
    assert "zorblax" in (outcome.path / "pages.jsonl").read_text()
    assert not leftover.exists()
    again = execute_stage(spec, cfg, repo_root, cache_dir, {}, _no_metrics)
    assert again.cache_hit and again.key == key and again.result.metrics == outcome.result.metrics


# ---------------------------------------------------------------- one key, two jobs

# A stage for the executor tests: records each real computation and is slow enough to overlap.
SLOW_STAGE = textwrap.dedent(
    """
    import os, threading, time
    from runner.stage import StageResult

    def run(cfg, ctx):
        with open(cfg.extra.counter, "a") as handle:
            handle.write(f"{os.getpid()}-{threading.get_ident()}\\n")
        time.sleep(float(cfg.extra.seconds))
        (ctx.work_dir / "out.txt").write_text(str(cfg.extra.value))
        return StageResult(metrics={"value": float(cfg.extra.value)}, artifacts=["out.txt"])
    """
)
SLOW_SPEC = StageSpec("slow", "slow_stage", ("extra",))

_JOB = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from omegaconf import OmegaConf
    from runner.pipeline import StageSpec, execute_stage

    module_dir, cfg_file, cache_dir, ready_dir, root = sys.argv[1:]
    sys.path.insert(0, module_dir)
    cfg = OmegaConf.load(cfg_file)
    Path(ready_dir, str(os.getpid())).touch()
    deadline = time.time() + 30
    while len(list(Path(ready_dir).iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.01)
    spec = StageSpec("slow", "slow_stage", ("extra",))
    outcome = execute_stage(spec, cfg, Path(root), Path(cache_dir), {}, lambda m, s=None: None)
    print(json.dumps({"cache_hit": outcome.cache_hit, "path": str(outcome.path)}))
    """
)


@pytest.fixture
def slow_stage(composed_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write the slow stage module to tmp_path; return (module_dir, cfg factory)."""
    module_dir = tmp_path / "stage_module"
    module_dir.mkdir()
    (module_dir / "slow_stage.py").write_text(SLOW_STAGE)
    monkeypatch.syspath_prepend(str(module_dir))

    def make(seconds: float) -> DictConfig:
        return composed_cfg(
            [f"+extra.counter={tmp_path / 'computed.txt'}", f"+extra.seconds={seconds}", "+extra.value=42"]
        )

    yield module_dir, make
    sys.modules.pop("slow_stage", None)


def test_two_threads_on_one_key_compute_once(slow_stage, repo_root: Path, tmp_path: Path) -> None:
    _, make = slow_stage
    cfg = make(seconds=0.5)
    barrier = threading.Barrier(2)
    outcomes: list[StageOutcome] = []
    errors: list[BaseException] = []

    def job() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(execute_stage(SLOW_SPEC, cfg, repo_root, tmp_path / "cache", {}, _no_metrics))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert len((tmp_path / "computed.txt").read_text().splitlines()) == 1
    assert sorted(o.cache_hit for o in outcomes) == [False, True]
    assert outcomes[0].path == outcomes[1].path
    assert (outcomes[0].path / "out.txt").read_text() == "42"


def test_two_processes_on_one_key_compute_once(slow_stage, repo_root: Path, tmp_path: Path) -> None:
    module_dir, make = slow_stage
    cfg_file = tmp_path / "cfg.yaml"
    OmegaConf.save(make(seconds=1.0), cfg_file)
    ready = tmp_path / "ready"
    ready.mkdir()
    args = [str(module_dir), str(cfg_file), str(tmp_path / "cache"), str(ready), str(repo_root)]

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _JOB, *args], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    computed = (tmp_path / "computed.txt").read_text().splitlines()
    assert len(computed) == 1, computed
    assert sorted(r["cache_hit"] for r in results) == [False, True]
    assert results[0]["path"] == results[1]["path"]
    assert Path(results[0]["path"], "out.txt").read_text() == "42"
    assert json.loads(Path(results[0]["path"], MANIFEST).read_text())["metrics"] == {"value": 42.0}
