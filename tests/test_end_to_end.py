"""The real CLI end to end on the bundled sample with the tiny debug config: one run,
a cached rerun, a 2-job multirun (parent/child MLflow runs, shared stages computed once)
and a reproduction from the run id. (Two parallel jobs on a cold cache, a failing sweep job and
interrupted runs: tests/reliability/.)

Everything is real: the llama.cpp model, FAISS, mlx-lm training, the MLflow SQLite store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO_ROOT = Path(__file__).resolve().parent.parent
# one llama.cpp thread: on two shared cores, two threads ran generation and eval several times slower
TINY = ["debug=tiny", "generate.max_chunks=3", "eval.max_questions=3", "llm.n_threads=1"]


def run_cli(args: list[str], workdir: Path, module: str = "runner", timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    paths = [f"paths.output_dir={workdir / 'outputs'}", f"paths.mlruns_dir={workdir / 'mlruns'}"]
    cmd = [sys.executable, "-m", module, *args] + (paths if module == "runner" else [])
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def client_for(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")


def runs(workdir: Path):
    client = client_for(workdir)
    experiment = client.get_experiment_by_name("doc2lora")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=100)


def executed_stage_keys(workdir: Path, stage: str) -> list[str]:
    return sorted(p.name for p in (workdir / "outputs" / "cache" / stage).iterdir() if p.is_dir() and not p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("e2e")
    return workdir, run_cli(TINY, workdir)


def test_full_pipeline_records_one_finished_run_with_eval_table(first_run) -> None:
    workdir, result = first_run
    (run,) = runs(workdir)
    assert run.info.status == "FINISHED"
    assert run.data.params["chunk/size"] == "600"
    metrics = run.data.metrics
    for key in ("chunk/chunks", "generate/questions", "dataset/train_size", "train/val/loss_before", "train/val/loss_after"):
        assert key in metrics, key
    assert any(k.startswith("eval/probes/rougeL/") for k in metrics)
    assert "base" in result.stdout and "tuned" in result.stdout  # console summary table
    artifacts = {a.path for a in client_for(workdir).list_artifacts(run.info.run_id, "eval")}
    assert "eval/report.md" in artifacts
    assert "eval/probes_comparison.json" in artifacts
    (eval_dir,) = [p for p in (workdir / "outputs" / "cache" / "eval").iterdir() if p.is_dir() and not p.name.endswith(".partial")]
    for set_name in ("probes", "heldout"):
        rows = [json.loads(line) for line in (eval_dir / f"comparison_{set_name}.jsonl").read_text().splitlines()]
        assert len(rows) == metrics[f"eval/{set_name}/questions"] == len({r["id"] for r in rows})
        assert all(isinstance(r["base_answer"], str) and isinstance(r["tuned_answer"], str) for r in rows)


def test_second_run_skips_every_stage(first_run) -> None:
    workdir, _ = first_run
    result = run_cli(TINY, workdir)
    second = runs(workdir)[-1]
    stages = [k for k in second.data.metrics if k.startswith("pipeline/") and k.endswith("/cache_hit")]
    assert stages and all(second.data.metrics[k] == 1.0 for k in stages)
    assert second.data.metrics["pipeline/cache_hits"] == len(stages)
    assert "cached" in result.stderr + result.stdout


def test_changing_train_iters_reruns_only_train_and_eval(first_run) -> None:
    workdir, _ = first_run
    run_cli(TINY + ["train.iters=3"], workdir)
    metrics = runs(workdir)[-1].data.metrics
    rerun = {k.split("/")[1] for k, v in metrics.items() if k.startswith("pipeline/") and k.endswith("/cache_hit") and v == 0.0}
    assert rerun == {"train", "eval"}


def test_reproduce_gives_same_config_hash_and_metrics(first_run) -> None:
    workdir, _ = first_run
    original = runs(workdir)[0]
    env_uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    run_cli([original.info.run_id, "--tracking-uri", env_uri], workdir, module="runner.cli.reproduce")
    copy = runs(workdir)[-1]
    assert copy.data.tags["reproduced_from"] == original.info.run_id
    assert copy.data.tags["config_hash"] == original.data.tags["config_hash"]
    for key in ("chunk/chunks", "dataset/train_size", "train/val/loss_after", "eval/probes/rougeL/tuned"):
        assert copy.data.metrics[key] == pytest.approx(original.data.metrics[key]), key


def test_multirun_nests_jobs_under_one_parent_and_shares_the_dataset(tmp_path: Path) -> None:
    result = run_cli(["-m", *TINY, "train.iters=2,3"], tmp_path)
    all_runs = runs(tmp_path)
    parents = [r for r in all_runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED"
    for stage in ("generate", "answer", "dataset"):
        assert len(executed_stage_keys(tmp_path, stage)) == 1, stage
    assert len(executed_stage_keys(tmp_path, "train")) == 2
    second_job = [c for c in children if c.data.tags["mlflow.runName"] == "job1"][0]
    assert second_job.data.metrics["pipeline/dataset/cache_hit"] == 1.0
    assert "cached" in result.stderr + result.stdout
