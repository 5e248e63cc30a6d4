"""Item 4, interruption: a run stopped at any point (SIGTERM or Ctrl-C, or kill -9 with no chance to
clean up) loses no finished item and duplicates none when rerun, never takes a half-written stage
folder as complete, and leaves no MLflow run RUNNING; the rerun is a new run that reuses the
finished work.

The kill -9 scenario runs the real CLI four times with the same command on one cache: killed while
generating questions, killed while answering them, killed while training (mlx, tiny settings), then
to the end. Each kill is a SIGKILL to the job's process group (the runner and its training worker).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from conftest import RETRIEVAL_PARAGRAPHS, compose_config
from runner.core.cache import MANIFEST, CacheEntry, write_json_atomic
from runner.core.jsonl import read_jsonl
from runner.engine.pipeline import STAGES, execute_stage, stage_key
from runner.core.artifacts import Answer, Curate, Generate, load_chunks
from runner.stages.generate import build_items
from tiny_model import SMALL_TRAINING

ITEM = "interruption"
REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- SIGTERM (what Ctrl-C and schedulers send)


def _long_doc(tmp_path: Path) -> Path:
    """Enough chunks that embedding them takes seconds, so a signal surely lands mid-stage."""
    path = tmp_path / "docs" / "long.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    paragraphs = [f"Setting number {i} of the zorblax daemon defaults to {i * 7} units and rotates every {i} hours." for i in range(600)]
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path


def _index_run(runner_cli, doc: Path, **popen: Any) -> subprocess.Popen:
    overrides = ["until=index", f"ingest.documents=[{doc}]", "chunk.size=200", "chunk.overlap=0"]
    return subprocess.Popen(runner_cli.command(*overrides), cwd=REPO_ROOT, env=runner_cli.env(), text=True, **popen)


def test_sigterm_ends_the_run_as_killed_and_a_rerun_reuses_finished_stages(tmp_path: Path, runner_cli, reliability_report) -> None:
    doc = _long_doc(tmp_path)
    proc = _index_run(runner_cli, doc, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # the job's log says when its MLflow run exists (opening the store earlier would race its schema
    # migration) and when the index stage starts (it loads the embedding model: seconds)
    for line in proc.stdout:
        if "stage index    running" in line:
            break
    else:
        raise AssertionError("the job ended before its index stage")
    (run,) = [r for r in runner_cli.runs() if r.info.status == "RUNNING"]
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output
    assert runner_cli.client().get_run(run.info.run_id).info.status == "KILLED"

    rerun = _index_run(runner_cli, doc, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert "stage ingest   cached" in output and "stage chunk    cached" in output  # finished before the signal, so reused
    assert not list(runner_cli.cache.glob("*/*.partial/_stage.json"))  # a half-written stage is never committed
    runs = runner_cli.runs()
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"] and runs[1].info.run_id != run.info.run_id
    reliability_report.record(
        item=ITEM, case="SIGTERM to the CLI while the index stage embeds 600 chunks",
        outcome="exit 130 with an 'interrupted' line, MLflow run KILLED; the rerun is a new run taking ingest and chunk from the cache",
    )


def test_sigterm_to_a_sweep_ends_the_parent_and_the_running_job_killed(tmp_path: Path, runner_cli, reliability_report) -> None:
    doc = _long_doc(tmp_path)
    overrides = ["-m", "until=index", f"ingest.documents=[{doc}]", "chunk.size=200", "chunk.overlap=0,10"]
    proc = subprocess.Popen(runner_cli.command(*overrides), cwd=REPO_ROOT, env=runner_cli.env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in proc.stdout:
        if "stage index    running" in line:  # job0 is embedding
            break
    else:
        raise AssertionError("the sweep ended before its first index stage")
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output[-3000:]
    runs = runner_cli.runs()
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "KILLED"  # ended at exit, not left RUNNING
    assert [(c.info.run_name, c.info.status) for c in children] == [("job0", "KILLED")]  # Ctrl-C stops the whole sweep
    reliability_report.record(
        item=ITEM, case="SIGTERM to a 2-job multirun while its first job embeds",
        outcome="exit 130; the running job's MLflow run and the sweep's parent run both KILLED, the second job not started",
    )


# ---------------------------------------------------------------- a half-written stage folder


def test_leftover_partial_folder_is_recomputed_not_taken(
    composed_cfg: Callable[..., DictConfig], repo_root: Path, tiny_doc: Path, tmp_path: Path, reliability_report
) -> None:
    cfg = composed_cfg([f"ingest.documents=[{tiny_doc}]"])
    spec = next(s for s in STAGES if s.name == "ingest")
    cache_dir = tmp_path / "cache"
    key = stage_key(spec, cfg, repo_root, {})
    leftover = CacheEntry(cache_dir / "ingest", key).partial_dir
    leftover.mkdir(parents=True)
    (leftover / "pages.jsonl").write_text('{"text": "half-written junk"}\n')
    write_json_atomic(leftover / MANIFEST, {"metrics": {}, "artifacts": []})

    outcome = execute_stage(spec, cfg, repo_root, cache_dir, {}, lambda metrics, step=None: None)

    assert not outcome.cache_hit
    assert outcome.path == cache_dir / "ingest" / key
    assert "half-written junk" not in (outcome.path / "pages.jsonl").read_text()
    assert "zorblax" in (outcome.path / "pages.jsonl").read_text()
    assert not leftover.exists()
    again = execute_stage(spec, cfg, repo_root, cache_dir, {}, lambda metrics, step=None: None)
    assert again.cache_hit and again.key == key and again.result.metrics == outcome.result.metrics
    reliability_report.record(
        item=ITEM, case="a half-written ingest folder (<key>.partial, even with a manifest) left by a crash",
        outcome="recomputed, never taken as complete; the next run takes the committed folder from the cache",
    )


# ---------------------------------------------------------------- kill -9 in three stages, then a rerun

# Nine short paragraphs, one chunk each at chunk.size=160: nine questions, then (curated) answers.
KILL_PARAGRAPHS = RETRIEVAL_PARAGRAPHS + [
    "The quokka relay accepts at most 250 concurrent sessions; raise relay.max_sessions to allow more.",
    "Log files of the heron collector rotate when they reach 512 MB and are kept for 14 days.",
    "The narwhal importer retries a failed upload 5 times, waiting 30 seconds between attempts.",
]
TRAIN_ITERS = 8


def _kill_overrides(doc: Path) -> list[str]:
    """One request per chunk; two sequences decoded together, so results are appended out of order;
    the curation gates that need a capable model off; every question answered by the model (RAG);
    training of 8 iterations with a checkpoint every 2."""
    return [
        "until=train", f"ingest.documents=[{doc}]", "chunk.size=160", "chunk.overlap=0",
        "llm.n_ctx=1024", "llm.max_tokens=40", "llm.n_threads=1", "llm.parallel=2",
        "generate.max_chunks=null", "generate.seed=11", "generate.chars_per_question=null", "generate.questions_per_chunk=1",
        "generate.max_facts_per_chunk=1", "generate.candidates_per_fact=1",
        "curate.specificity_gate=false", "curate.min_fact_overlap=0.0",
        "answer.mode=rag", "answer.grounding=off", "answer.max_tokens=48",
        f"train.iters={TRAIN_ITERS}", "train.save_every=2", "train.steps_per_report=1", f"train.steps_per_eval={TRAIN_ITERS}",
        "train.val_batches=2", "train.max_seq_length=128", *SMALL_TRAINING,
    ]


def _lines(path: Optional[Path]) -> list[dict[str, Any]]:
    return read_jsonl(path) if path is not None and path.exists() else []


def _partial(stage_dir: Path) -> Optional[Path]:
    return next(stage_dir.glob("*.partial"), None) if stage_dir.exists() else None


def _partial_lines(stage_dir: Path, name: str) -> list[dict[str, Any]]:
    """The records a running stage has appended so far to ``name`` in its work folder."""
    partial = _partial(stage_dir)
    return _lines(partial / name if partial else None)


def _complete_safetensors(path: Path) -> bool:
    """Whether a safetensors file is whole: its header and every tensor it declares are on disk."""
    data = path.read_bytes()
    if len(data) < 8:
        return False
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        return False
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return len(data) == 8 + size + end


def _checkpoints(train_dir: Optional[Path]) -> dict[int, Path]:
    """Iteration -> mlx checkpoint file under a train work folder."""
    if train_dir is None:
        return {}
    found = {}
    for file in train_dir.glob("checkpoints/segment_*/*_adapters.safetensors"):
        found[int(file.parent.name.split("_")[1]) + int(file.name.split("_")[0])] = file
    return found


@dataclass
class Attempt:
    log: Path
    returncode: int
    run_id: Optional[str] = None  # the attempt's MLflow run
    status_after_kill: Optional[str] = None

    @property
    def output(self) -> str:
        return self.log.read_text()


@dataclass
class KillScenario:
    cli: Any
    expected_items: list[str]
    attempts: list[Attempt] = field(default_factory=list)
    generate_before: list[dict[str, Any]] = field(default_factory=list)
    generate_partial: Optional[Path] = None
    answer_before: list[dict[str, Any]] = field(default_factory=list)
    answer_partial: Optional[Path] = None
    checkpoint_at_kill: int = 0
    incomplete_at_kill: list[str] = field(default_factory=list)
    final: Optional[subprocess.CompletedProcess] = None

    def final_dir(self, stage: str) -> Path:
        (manifest,) = (self.cli.cache / stage).glob(f"*/{MANIFEST}")
        return manifest.parent

    def client(self) -> MlflowClient:
        return self.cli.client()


def _kill_when(cli, overrides: list[str], log: Path, ready: Callable[[], bool], timeout: float = 300) -> Attempt:
    """Start the CLI, SIGKILL its process group as soon as ``ready()``; the job must still be running then."""
    proc = cli.start(*overrides, log=log)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)  # polling the work folder the job writes, not a guess at how long it takes
        assert proc.poll() is None, f"the job ended before it could be killed:\n{log.read_text()[-3000:]}"
        assert ready(), f"nothing to kill at after {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        cli.kill(proc)
    finally:
        if proc.poll() is None:
            cli.kill(proc)
    assert proc.returncode == -signal.SIGKILL
    running = [r for r in cli.runs() if r.info.status == "RUNNING"]
    assert len(running) == 1, "the killed attempt's run should be the only one left RUNNING (it could not end itself)"
    return Attempt(log, proc.returncode, running[0].info.run_id, running[0].info.status)


@pytest.fixture(scope="module")
def kill_scenario(tmp_path_factory: pytest.TempPathFactory, runner_cli_at) -> KillScenario:
    work = tmp_path_factory.mktemp("kill9")
    cli = runner_cli_at(work)
    doc = work / "docs" / "paragraphs.md"
    doc.parent.mkdir()
    doc.write_text("\n\n".join(KILL_PARAGRAPHS) + "\n", encoding="utf-8")
    overrides = _kill_overrides(doc)
    scenario = KillScenario(cli, expected_items=[])
    cache = cli.cache

    # 1. killed while generating: at least one request done, not all
    scenario.attempts.append(
        _kill_when(cli, overrides, work / "1-generate.log", lambda: len(_partial_lines(cache / "generate", Generate.ITEMS)) >= 1)
    )
    scenario.generate_partial = _partial(cache / "generate")
    scenario.generate_before = _lines(scenario.generate_partial / Generate.ITEMS)
    (chunk_manifest,) = (cache / "chunk").glob(f"*/{MANIFEST}")
    cfg = compose_config([*overrides, f"paths.output_dir={work / 'outputs'}"])
    scenario.expected_items = [item.item_id for item in build_items(load_chunks(chunk_manifest.parent), cfg)]

    # 2. the same command: generation resumes, curation runs, killed while answering
    scenario.attempts.append(
        _kill_when(cli, overrides, work / "2-answer.log", lambda: len(_partial_lines(cache / "answer", Answer.ITEMS)) >= 1)
    )
    scenario.answer_partial = _partial(cache / "answer")
    scenario.answer_before = _lines(scenario.answer_partial / Answer.ITEMS)

    # 3. answers resume, dataset and model conversion run, killed once training wrote a whole checkpoint
    def checkpoint_written() -> bool:
        return any(_complete_safetensors(f) for f in _checkpoints(_partial(cache / "train")).values())

    scenario.attempts.append(_kill_when(cli, overrides, work / "3-train.log", checkpoint_written))
    on_disk = _checkpoints(_partial(cache / "train"))
    scenario.checkpoint_at_kill = max(i for i, f in on_disk.items() if _complete_safetensors(f))
    scenario.incomplete_at_kill = [str(f) for f in on_disk.values() if not _complete_safetensors(f)]

    # 4. the same command once more, to the end
    scenario.final = subprocess.run(cli.command(*overrides), cwd=REPO_ROOT, env=cli.env(), capture_output=True, text=True, timeout=900)
    return scenario


def _final_ok(scenario: KillScenario) -> str:
    output = scenario.final.stdout + scenario.final.stderr
    assert scenario.final.returncode == 0, output[-3000:]
    return output


def test_killed_mid_generation_resumes_without_duplicates_or_losses(kill_scenario: KillScenario, reliability_report) -> None:
    s = kill_scenario
    expected, before = s.expected_items, s.generate_before
    assert len(expected) == len(KILL_PARAGRAPHS)
    assert 1 <= len(before) < len(expected), "killed after generation finished its requests"
    assert f"resuming, {len(before)} of {len(expected)} requests already done" in s.attempts[1].output
    _final_ok(s)

    final = s.final_dir("generate")
    assert final.name == s.generate_partial.name.removesuffix(".partial") and not s.generate_partial.exists()
    items = read_jsonl(final / Generate.ITEMS)
    ids = [r["item_id"] for r in items]
    assert len(ids) == len(set(ids)), "an item was generated twice"
    assert sorted(ids) == sorted(expected), "an item was lost"
    assert items[: len(before)] == before  # finished work was kept, not redone
    assert all(r["status"] != "error" for r in items)
    questions = read_jsonl(final / Generate.INSTRUCTIONS)
    assert len({q["qid"] for q in questions}) == len(questions)
    by_item = {r["item_id"]: r for r in items}
    for item_id in expected:
        asked = [q["question"] for q in questions if q["qid"].rsplit("-q", 1)[0] == item_id]
        assert asked == by_item[item_id]["questions"]
    assert json.loads((final / MANIFEST).read_text())["metrics"]["requests"] == len(expected)

    lost, duplicated = len(set(expected) - set(ids)), len(ids) - len(set(ids))
    assert lost == duplicated == 0
    reliability_report.record(
        item=ITEM, case=f"kill -9 while generating questions ({len(before)} of {len(expected)} requests done), then the same command",
        outcome=f"resumed, the finished requests ({len(before)}) kept as they were; {len(ids)} requests, each once; 0 duplicated",
        items_lost=lost,
    )


def test_killed_mid_answer_every_curated_question_is_answered_exactly_once(kill_scenario: KillScenario, reliability_report) -> None:
    s = kill_scenario
    _final_ok(s)
    curated = read_jsonl(s.final_dir("curate") / Curate.CURATED)
    qids = [q["qid"] for q in curated]
    assert len(qids) >= 3, "too few curated questions to kill the answer stage in its middle"
    before = s.answer_before
    assert 1 <= len(before) < len(qids), "killed after the answer stage finished its requests"
    assert f"resuming, {len(before)} of {len(qids)} requests already done" in s.attempts[2].output

    final = s.final_dir("answer")
    assert final.name == s.answer_partial.name.removesuffix(".partial") and not s.answer_partial.exists()
    items = read_jsonl(final / Answer.ITEMS)
    ids = [r["item_id"] for r in items]
    assert len(ids) == len(set(ids)), "a question was sent to the model twice"
    assert set(ids) == {f"{qid}-a0" for qid in qids}  # answer.grounding=off: one attempt each
    assert items[: len(before)] == before  # answers written before the kill were kept, not redone
    answered = [r["qid"] for r in read_jsonl(final / Answer.ANSWERS) + read_jsonl(final / Answer.DROPPED)]
    assert sorted(answered) == sorted(qids), "every curated question is answered (kept or dropped with a reason) exactly once"

    lost, duplicated = len(set(qids) - set(answered)), len(answered) - len(set(answered))
    assert lost == duplicated == 0
    reliability_report.record(
        item=ITEM, case=f"kill -9 while answering ({len(before)} of {len(qids)} curated questions answered), then the same command",
        outcome=f"resumed, the finished answers ({len(before)}) kept as they were; {len(qids)} questions each answered exactly once "
        "(answers.jsonl + answers_dropped.jsonl); 0 duplicated",
        items_lost=lost,
    )


def test_killed_mid_training_resumes_from_the_last_checkpoint(kill_scenario: KillScenario, reliability_report) -> None:
    s = kill_scenario
    _final_ok(s)
    checkpoint = s.checkpoint_at_kill
    assert not s.incomplete_at_kill, f"a checkpoint was half-written when the job was killed: {s.incomplete_at_kill}"
    assert 2 <= checkpoint < TRAIN_ITERS
    client = s.client()

    final = s.final_dir("train")
    manifest = json.loads((final / MANIFEST).read_text())
    assert manifest["metrics"]["resumed_from"] == checkpoint
    assert f"train: resumed_from={checkpoint}" in s.final.stdout + s.final.stderr
    final_run = s.cli.runs()[-1]
    steps = sorted(m.step for m in client.get_metric_history(final_run.info.run_id, "train/loss"))
    assert steps == list(range(checkpoint + 1, TRAIN_ITERS + 1)), "the rerun trained from the checkpoint on, not from the start"
    assert (final / "adapter" / "adapters.safetensors").is_file() and (final / "adapter.gguf").stat().st_size > 0

    lost = len(set(range(1, TRAIN_ITERS + 1)) - set(range(1, checkpoint + 1)) - set(steps))
    assert lost == 0
    reliability_report.record(
        item=ITEM, case=f"kill -9 of the runner and its mlx training worker after the checkpoint at iteration {checkpoint} of {TRAIN_ITERS}",
        outcome=f"the rerun resumed from iteration {checkpoint} (train/resumed_from) and trained {steps[0]}..{steps[-1]} only; adapter and adapter.gguf written",
        items_lost=lost,
    )


def test_killed_attempts_are_marked_killed_and_the_rerun_reuses_their_work(kill_scenario: KillScenario, reliability_report) -> None:
    s = kill_scenario
    _final_ok(s)
    client = s.client()
    killed = [client.get_run(a.run_id).info.status for a in s.attempts]
    assert [a.status_after_kill for a in s.attempts] == ["RUNNING"] * 3  # kill -9: no chance to end its own run
    assert killed == ["KILLED"] * 3  # each marked by the next start (its process is gone)
    runs = s.cli.runs()
    final = runs[-1]
    assert final.info.status == "FINISHED" and final.info.run_id not in {a.run_id for a in s.attempts}
    assert [r.info.status for r in runs].count("RUNNING") == 0
    hits = {k.split("/")[1]: v for k, v in final.data.metrics.items() if k.startswith("pipeline/") and k.endswith("/cache_hit")}
    # finished by the killed attempts, so reused; train resumed in its work folder
    assert hits == {s: 1.0 for s in ("ingest", "chunk", "index", "generate", "curate", "answer", "dataset", "prepare_model")} | {"train": 0.0}
    reliability_report.record(
        item=ITEM, case="the MLflow runs of the three attempts killed with -9",
        outcome="RUNNING right after each kill, KILLED by the next start; the final run is a new FINISHED run that took 8 finished stages from the cache",
    )
