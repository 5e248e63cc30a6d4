"""Checks before any stage runs: the files the config names exist (on this machine), and the native
libraries the selected stages load run here (runner/engine/native.py), so a run fails in one line at start-up
rather than after an hour of generation, or with a bare signal."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner.core.errors import ConfigError
from runner.core.paths import resolve_path

log = logging.getLogger(__name__)


def preflight(cfg: DictConfig, root: Path) -> None:
    """Checks that need the file system, done before any model is loaded: on the machine that submits a
    sweep and again in each job, which may run elsewhere, so an error names the machine."""
    try:
        _check_files(cfg, root)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (checked on {socket.gethostname()})") from None


def _check_files(cfg: DictConfig, root: Path) -> None:
    from runner.core.models import resolve_embedding_model, resolve_gguf
    from runner.documents.files import discover_documents

    discover_documents(cfg.ingest, root)  # raises ConfigError for a missing path
    resolve_gguf(cfg.model.gguf_path, root)
    embedding = resolve_embedding_model(cfg.index.embedding_model, root)
    if not Path(embedding).exists():
        raise ConfigError(f"index.embedding_model={cfg.index.embedding_model!r} is not a local folder (no model hub is used)")
    if cfg.model.hf_path:
        hf = resolve_path(cfg.model.hf_path, root)
        if not (hf / "config.json").is_file():
            raise ConfigError(f"model.hf_path={cfg.model.hf_path!r} is not a Hugging Face model folder (no config.json in {hf})")
    if cfg.eval.probes and not resolve_path(cfg.eval.probes, root).is_file():
        raise ConfigError(f"eval.probes={cfg.eval.probes!r} does not exist")
    judge_llm, judge_model = _local_judge(cfg)
    if judge_llm is not None:
        resolve_gguf(judge_model.gguf_path, root, key="curate.judge.gguf_path" if cfg.curate.judge.gguf_path else "model.gguf_path")


def _local_judge(cfg: DictConfig) -> tuple[Any, Any]:
    """The judge's llm and model configs when ``curate.judge`` runs a local GGUF, else (None, None)."""
    from runner.questions.judge import judge_model_configs

    if not cfg.curate.judge.enabled:
        return None, None
    llm, model = judge_model_configs(cfg)
    return (llm, model) if llm.backend == "llama_cpp" else (None, None)


def native_parts(cfg: DictConfig, names: set[str], root: Path) -> dict[str, str]:
    """The native libraries the stages ``names`` load, with the model each check loads."""
    from runner.core.models import resolve_embedding_model, resolve_gguf

    wanted: dict[str, str] = {}
    if "ingest" in names:
        wanted["pdfium"] = ""
    if names & {"index", "curate", "answer", "eval"}:
        wanted["faiss"] = ""
        wanted["embeddings"] = resolve_embedding_model(cfg.index.embedding_model, root)
    if "eval" in names or (names & {"generate", "answer"} and cfg.llm.backend == "llama_cpp"):
        wanted["llama.cpp"] = str(resolve_gguf(cfg.model.gguf_path, root))
    judge_llm, judge_model = _local_judge(cfg)
    if "curate" in names and judge_llm is not None and "llama.cpp" not in wanted:
        wanted["llama.cpp"] = str(resolve_gguf(judge_model.gguf_path, root))
    if "prepare_model" in names or ("train" in names and cfg.train.backend == "peft"):
        wanted["torch"] = ""
    if "train" in names and cfg.train.backend == "mlx":
        wanted["mlx"] = ""
    return wanted


def check_native(cfg: DictConfig, names: set[str], root: Path) -> None:
    """Each native part this run uses runs once in a child process before any stage starts, so a library
    built for other CPU instructions fails here with one line, not with a signal mid-run."""
    from runner.engine import native

    outcomes = native.check_parts(native_parts(cfg, names, root), record_dir=native.pass_record_dir())
    for outcome in outcomes:
        (log.info if outcome.ok else log.error)("native check: %s", outcome.line())
    native.raise_on_failure(outcomes)
