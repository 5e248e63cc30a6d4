"""Item 6, concurrency: two jobs on one cache at once never corrupt it. A stage key is computed by one
job while the other waits on its lock and then takes the result from the cache: two threads, two
processes, and two real CLI jobs of a joblib sweep on a cold cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig, OmegaConf

from conftest import RETRIEVAL_PARAGRAPHS
from runner.core.cache import MANIFEST
from runner.engine.pipeline import StageOutcome, StageSpec, execute_stage

ITEM = "concurrency"


def _no_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    return None


# ---------------------------------------------------------------- one key, two jobs

# A stage for the executor tests: records each real computation and is slow enough to overlap.
SLOW_STAGE = textwrap.dedent(
    """
    import os, threading, time
    from runner.core.stage import StageResult

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
    from runner.engine.pipeline import StageSpec, execute_stage

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


def test_two_threads_on_one_key_compute_once(slow_stage, repo_root: Path, tmp_path: Path, reliability_report) -> None:
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
    reliability_report.record(
        item=ITEM, case="two threads run one stage key at the same moment", outcome="computed once; the other thread waited and took it from the cache",
        items_lost=2 - len(outcomes),
    )


def test_two_processes_on_one_key_compute_once(slow_stage, repo_root: Path, tmp_path: Path, reliability_report) -> None:
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
    reliability_report.record(
        item=ITEM, case="two processes run one stage key at the same moment", outcome="computed once (file lock); the other process took it from the cache",
        items_lost=2 - len(results),
    )


def test_two_sweep_jobs_in_parallel_on_a_cold_cache_compute_each_key_once(runner_cli, tmp_path: Path, reliability_report) -> None:
    """A joblib sweep of two jobs whose stages up to curate are the same (the model and embedding stages,
    to keep it short): for every stage one job computes it and the other waits on its lock, then takes
    it from the cache."""
    stages = ("ingest", "chunk", "index", "generate", "curate")
    doc = tmp_path / "paragraphs.md"
    doc.write_text("\n\n".join(RETRIEVAL_PARAGRAPHS) + "\n", encoding="utf-8")
    overrides = ["debug=tiny", f"ingest.documents=[{doc}]", "chunk.size=160", "chunk.overlap=0", "generate.max_chunks=3", "llm.n_threads=1", "until=curate"]
    proc = runner_cli.run("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *overrides, "train.iters=2,3", timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]

    for stage in stages:
        assert len(list((runner_cli.cache / stage).glob(f"*/{MANIFEST}"))) == 1, stage
    assert not list(runner_cli.cache.glob("*/*.partial")), "a stage left half-written"
    torn = []
    for path in runner_cli.cache.rglob("*"):  # every file the two jobs wrote reads back whole
        if path.suffix == ".jsonl":
            for n, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    json.loads(line)
                except ValueError:
                    torn.append(f"{path}:{n}")
        elif path.name == MANIFEST:
            json.loads(path.read_text())
    assert torn == []
    runs = runner_cli.runs()
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    for stage in stages:  # one job computed it, the other waited on the lock and reused it
        assert sum(c.data.metrics[f"pipeline/{stage}/cache_hit"] for c in children) == 1.0, stage
    assert {c.data.tags[f"stage_key/{s}"] for c in children for s in ("generate",)} == {next((runner_cli.cache / "generate").glob(f"*/{MANIFEST}")).parent.name}

    lost = len([s for s in stages if not list((runner_cli.cache / s).glob(f"*/{MANIFEST}"))])
    assert lost == 0
    reliability_report.record(
        item=ITEM, case="joblib sweep, 2 jobs at once on a cold cache through curate (real model, real stages)",
        outcome=f"each of {len(stages)} stages computed by one job and reused by the other; no .partial left, every JSONL line and manifest parses",
        items_lost=lost,
    )
