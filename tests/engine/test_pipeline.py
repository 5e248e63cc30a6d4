"""The pipeline end to end (ingest -> chunk -> index): cache hits, selective reruns, MLflow records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import DictConfig

from runner.core.errors import ConfigError, InputError
from runner.engine.pipeline import run_pipeline, stage_names

UNTIL_INDEX = ["until=index", "chunk.size=120", "chunk.overlap=20"]


@pytest.fixture
def run_twice(composed_cfg: Callable[..., DictConfig], tiny_doc: Path):
    """Run the pipeline on the tiny document, then again with extra overrides; return both summaries."""

    def _run(*second_overrides: str) -> tuple[dict[str, Any], dict[str, Any]]:
        base = [*UNTIL_INDEX, f"ingest.documents=[{tiny_doc}]"]
        first = run_pipeline(composed_cfg(base))
        second = run_pipeline(composed_cfg([*base, *second_overrides]))
        return first, second

    return _run


def _hits(summary: dict[str, Any]) -> dict[str, bool]:
    return {name: stage["cache_hit"] for name, stage in summary["stages"].items()}


def test_second_run_takes_every_stage_from_the_cache(run_twice, mlflow_client, tmp_path: Path) -> None:
    first, second = run_twice()

    assert _hits(first) == {"ingest": False, "chunk": False, "index": False}
    assert _hits(second) == {"ingest": True, "chunk": True, "index": True}
    assert {n: s["key"] for n, s in second["stages"].items()} == {n: s["key"] for n, s in first["stages"].items()}
    assert second["run_id"] != first["run_id"]
    assert second["config_hash"] == first["config_hash"]
    for stage in first["stages"].values():
        assert Path(stage["path"]).is_relative_to(tmp_path / "outputs" / "cache")

    first_run = mlflow_client.get_run(first["run_id"])
    second_run = mlflow_client.get_run(second["run_id"])
    assert first_run.data.metrics["pipeline/cache_hits"] == 0
    assert first_run.data.metrics["pipeline/stages_run"] == 3
    assert second_run.data.metrics["pipeline/cache_hits"] == 3
    assert second_run.data.metrics["pipeline/stages_run"] == 0
    for name in ("ingest", "chunk", "index"):
        assert second_run.data.metrics[f"pipeline/{name}/cache_hit"] == 1.0
        assert second_run.data.tags[f"stage_key/{name}"] == first["stages"][name]["key"]
    # a cached stage still reports the metrics it computed the first time
    assert second_run.data.metrics["chunk/chunks"] == first_run.data.metrics["chunk/chunks"] >= 2
    assert second_run.info.status == "FINISHED"


def test_changing_index_batch_size_reruns_only_index(run_twice) -> None:
    first, second = run_twice("index.batch_size=2")
    assert _hits(second) == {"ingest": True, "chunk": True, "index": False}
    assert second["stages"]["index"]["key"] != first["stages"]["index"]["key"]


def test_changing_chunk_size_reruns_chunk_and_index(run_twice) -> None:
    _, second = run_twice("chunk.size=100")
    assert _hits(second) == {"ingest": True, "chunk": False, "index": False}


def test_changing_an_unrelated_setting_reruns_nothing(run_twice) -> None:
    first, second = run_twice("retriever.k=2", "train.iters=7")
    assert _hits(second) == {"ingest": True, "chunk": True, "index": True}
    assert second["config_hash"] != first["config_hash"]


def test_editing_the_document_reruns_every_stage(
    composed_cfg: Callable[..., DictConfig], tiny_doc: Path
) -> None:
    cfg = composed_cfg([*UNTIL_INDEX, f"ingest.documents=[{tiny_doc}]"])
    run_pipeline(cfg)
    tiny_doc.write_text(tiny_doc.read_text() + "\n## Added\n\nThe kumquat relay restarts hourly.\n", encoding="utf-8")
    assert _hits(run_pipeline(cfg)) == {"ingest": False, "chunk": False, "index": False}


def test_until_selects_a_prefix_of_the_stages(composed_cfg: Callable[..., DictConfig], tiny_doc: Path) -> None:
    summary = run_pipeline(composed_cfg(["until=chunk", f"ingest.documents=[{tiny_doc}]"]))
    assert list(summary["stages"]) == ["ingest", "chunk"]
    expected = re.escape(f"until='nonsense' is invalid: must be one of {', '.join(stage_names())}")
    assert stage_names()[:3] == ["ingest", "chunk", "index"]
    with pytest.raises(ConfigError, match=expected):
        run_pipeline(composed_cfg(["until=nonsense", f"ingest.documents=[{tiny_doc}]"]))


def test_missing_document_fails_before_any_run_or_stage(
    composed_cfg: Callable[..., DictConfig], mlflow_client, tmp_path: Path
) -> None:
    experiment = f"missing-{tmp_path.name}"
    cfg = composed_cfg(["until=index", f"ingest.documents=[{tmp_path / 'nope.pdf'}]", f"tracking.experiment={experiment}"])
    with pytest.raises(ConfigError, match=r"ingest\.documents entry .*nope\.pdf"):
        run_pipeline(cfg)
    assert mlflow_client.get_experiment_by_name(experiment) is None
    assert not (tmp_path / "outputs").exists()


def test_a_failing_stage_marks_the_run_failed(
    composed_cfg: Callable[..., DictConfig], mlflow_client, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.txt").write_bytes(b"")
    experiment = f"failing-{tmp_path.name}"
    cfg = composed_cfg(["until=index", f"ingest.documents=[{docs}]", f"tracking.experiment={experiment}"])
    with pytest.raises(InputError, match="empty.txt"):
        run_pipeline(cfg)
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not list((tmp_path / "outputs" / "cache" / "ingest").glob("*/_stage.json"))  # nothing committed


def test_cli_runs_the_pipeline_and_logs_the_resolved_config(
    repo_root: Path, tmp_path: Path, tiny_doc: Path, mlflow_dir: Path, mlflow_client
) -> None:
    experiment = f"cli-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "until=ingest",
            f"ingest.documents=[{tiny_doc}]",
            f"paths.output_dir={tmp_path / 'outputs'}",
            f"paths.mlruns_dir={mlflow_dir}",
            f"tracking.uri=sqlite:///{mlflow_dir / 'mlflow.db'}",
            f"tracking.experiment={experiment}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = mlflow_client.search_runs([mlflow_client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["paths/root"] == str(repo_root)
    assert "until=ingest" in run.data.tags["overrides"]
    assert run.data.tags["choice/chunk"] == "default"
    logged = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "config")}
    assert {"config/config.yaml", "config/overrides.yaml"} <= logged
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    assert list((tmp_path / "outputs" / "cache" / "ingest").glob("*/pages.jsonl"))


def test_stage_keys_do_not_depend_on_where_the_model_lives(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """The same model reached through another path (a symlinked or moved folder) keeps its cache."""
    from runner.engine.pipeline import STAGES, stage_key

    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "m.gguf").write_bytes(b"GGUF" + bytes(64))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.symlink_to(project, target_is_directory=True)
    keys = {}
    for root in (project, elsewhere):
        cfg = composed_cfg([f"model.gguf_path={root / 'models' / 'm.gguf'}"])
        keys[root] = {spec.name: stage_key(spec, cfg, root, {}) for spec in STAGES if spec.name in ("prepare_model", "generate", "eval")}
    assert keys[project] == keys[elsewhere]


def test_every_library_module_a_stage_reads_documents_or_questions_with_is_in_its_cache_key() -> None:
    """A stage's key hashes its own module and its ``code``: a library module it imports to shape its output
    (documents, questions, retrieval, evaluation) and not listed there would let a stale result be reused."""
    import ast
    import importlib

    from runner.engine.pipeline import STAGES

    shaping = ("runner.documents.", "runner.questions.", "runner.retrieval.", "runner.evaluation.")
    for spec in STAGES:
        source = Path(importlib.import_module(spec.module).__file__).read_text(encoding="utf-8")
        imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) and node.module}
        missing = {m for m in imported if m.startswith(shaping)} - set(spec.code)
        assert not missing, f"{spec.name}: {sorted(missing)} not in its code list"
