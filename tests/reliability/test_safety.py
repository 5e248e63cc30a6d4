"""Item 7, safety: an API key from the environment is sent to the server but never reaches MLflow or
the cache; nothing in the cache is a pickle and the index loads with unpickling disabled; the MLflow
UI binds 127.0.0.1."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from runner.engine.pipeline import RunInfo, run_pipeline
from runner.retrieval.hybrid import HybridRetriever
from runner.retrieval.embeddings import embed_texts
from scripted_server import FAST_RETRIES

ITEM = "safety"
REPO_ROOT = Path(__file__).resolve().parents[2]
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def test_an_api_key_in_use_never_reaches_mlflow_or_the_cache(
    composed_cfg, mlflow_client: MlflowClient, scripted_server, tiny_index, tmp_path: Path, monkeypatch, reliability_report
) -> None:
    secret_key, password = "sk-test-0123456789abcdef", "hunter2-pdf-pass"
    monkeypatch.setenv("OPENAI_API_KEY", secret_key)
    url, key = scripted_server.url("question")
    overrides = [
        "until=generate", f"ingest.documents=[{tiny_index.doc}]", "chunk.size=160", "chunk.overlap=0", "generate.max_chunks=2",
        "generate.max_facts_per_chunk=1", "generate.candidates_per_fact=1", *FAST_RETRIES, f"llm.base_url={url}",
        f"ingest.pdf_password={password}",
    ]
    summary = run_pipeline(composed_cfg(overrides), RunInfo(overrides=overrides))
    # the key was used: every request carried it
    assert scripted_server.calls[key] == 2
    assert all(h["Authorization"] == f"Bearer {secret_key}" for h in scripted_server.headers[key])

    run = mlflow_client.get_run(summary["run_id"])
    logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert run.data.params["llm/api_key_env"] == "OPENAI_API_KEY"
    assert run.data.params["ingest/pdf_password"] == "***"
    assert "ingest.pdf_password=***" in run.data.tags["overrides"]
    assert secret_key not in logged and password not in logged
    downloaded = Path(mlflow_client.download_artifacts(summary["run_id"], "", str(tmp_path / "artifacts")))
    artifacts = [p for p in downloaded.rglob("*") if p.is_file()]
    assert any(p.name == "items.jsonl" for p in artifacts)  # the requests' record, logged with the generate stage
    cache = [p for p in (tmp_path / "outputs" / "cache").rglob("*") if p.is_file()]
    leaked = [p for p in artifacts + cache if secret_key.encode() in p.read_bytes() or password.encode() in p.read_bytes()]
    assert leaked == []
    reliability_report.record(
        item=ITEM, case="OPENAI_API_KEY set in the environment and used for 2 real HTTP requests; ingest.pdf_password on the command line",
        outcome=f"neither value in the MLflow params, tags or {len(artifacts)} artifacts, nor in {len(cache)} cache files (masked as ***)",
    )


def _pickles(path: Path) -> bool:
    if path.suffix in {".pkl", ".pickle", ".joblib"} or path.read_bytes()[:2] in PICKLE_MAGIC:
        return True
    if zipfile.is_zipfile(path):  # torch.save's format: a zip holding data.pkl
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    return False


def test_cache_holds_no_pickle(tiny_index, reliability_report) -> None:
    cache = Path(tiny_index.summary["stages"]["index"]["path"]).parents[1]
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files
    found = [p for p in files if _pickles(p)]
    assert found == []
    reliability_report.record(
        item=ITEM, case=f"every file the ingest, chunk and index stages wrote ({len(files)})",
        outcome="no pickle (by extension, pickle header or a .pkl inside a zip)",
    )


def _refuse_pickle(*args, **kwargs):
    raise AssertionError("something tried to unpickle")


def test_the_index_loads_and_searches_with_unpickling_disabled(tiny_index, monkeypatch: pytest.MonkeyPatch, reliability_report) -> None:
    cfg = tiny_index.cfg
    query = "Which port does the zorblax harbour daemon listen on?"
    vectors = embed_texts([query], cfg.index, REPO_ROOT, show_progress=False)  # the model, loaded before the lock
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, _refuse_pickle)
    real_np_load = np.load

    def np_load(*args, **kwargs):
        if kwargs.get("allow_pickle"):
            _refuse_pickle()
        return real_np_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", np_load)

    retriever = HybridRetriever(tiny_index.stage_dir("index"), cfg.retriever, lambda texts: vectors)
    (top,) = retriever.search([query], k=1)
    assert retriever.chunk_ids[top[0]] == "c00000"  # the zorblax paragraph
    reliability_report.record(
        item=ITEM, case="load the FAISS index and BM25 corpus with pickle.load/loads/Unpickler replaced by a failure",
        outcome="loaded and searched (the right chunk first): nothing was unpickled",
    )


# What the code loads from the cache must never be a pickle. One known exception (not this suite's
# code to change): the peft backend's resume reads its optimizer state with torch.load(weights_only=False).
_PICKLE_LOADS = re.compile(r"pickle\.loads?\(|Unpickler\(|joblib\.load\(|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only\s*=\s*True)")


def test_no_code_unpickles_what_it_reads(reliability_report) -> None:
    sources = [p for p in (REPO_ROOT / "runner").rglob("*.py") if "vendor" not in p.parts]
    found = [
        f"{p.relative_to(REPO_ROOT)}:{n}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if _PICKLE_LOADS.search(line)
    ]
    reliability_report.record(
        item=ITEM, case=f"scan of {len(sources)} runner/ modules for pickle, joblib, np.load(allow_pickle) and torch.load without weights_only",
        outcome=f"found: {', '.join(found)}" if found else "none found",
    )
    assert found == []


def test_mlflow_ui_binds_localhost(reliability_report) -> None:
    ui_recipe = [line for line in (REPO_ROOT / "Makefile").read_text().splitlines() if "mlflow ui" in line]
    assert ui_recipe and all("--host 127.0.0.1" in line for line in ui_recipe)
    reliability_report.record(item=ITEM, case="`make ui`", outcome="mlflow ui --host 127.0.0.1 (localhost only)")
