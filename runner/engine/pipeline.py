"""Run the stages in order with a content-addressed cache and MLflow tracking."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from runner.engine import tracking
from runner.core.cache import CacheEntry, hash_file, hash_json, hash_source
from runner.core.errors import ConfigError, RunnerError
from runner.core.paths import resolve_path
from runner.engine.preflight import check_native, preflight
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str
    config_keys: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    resumable: bool = False
    # library modules whose code also shapes the output (hashed into the key with the stage module)
    code: tuple[str, ...] = ()
    # extra content to hash into the key, e.g. the documents' bytes
    fingerprint: Optional[Callable[[DictConfig, Path], Any]] = None


# the PDF text extractors: an upgrade can change the extracted text
_EXTRACTORS = ("pypdf", "pypdfium2")


def _document_fingerprint(cfg: DictConfig, root: Path) -> Any:
    from runner.documents.files import discover_documents

    files, _ = discover_documents(cfg.ingest, root)
    return {
        "documents": [[_relative_to(path, root), hash_file(path)] for path in files],
        "extractors": [_version(name) for name in _EXTRACTORS],
    }


def _version(distribution: str) -> str:
    try:
        return f"{distribution} {importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} not installed"


def _relative_to(path: Path, root: Path) -> str:
    """Paths inside the project are keyed relative to it, so a moved checkout keeps its cache."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _tokenizer_fingerprint(cfg: DictConfig, root: Path) -> Any:
    """Token-sized chunks depend on the embedding model's tokenizer; character-sized ones do not."""
    return cfg.index.embedding_model if cfg.chunk.unit == "tokens" else None


def _memo_dir(cfg: DictConfig, root: Path) -> Path:
    return resolve_path(cfg.paths.cache_dir, root) / "fingerprints"


def _gguf_fingerprint(cfg: DictConfig, root: Path) -> Any:
    """The GGUF's identity, not its location: a replaced file or an upgraded model package changes the
    replies, the same model reached through another path does not."""
    from runner.core.models import model_identity

    return model_identity(cfg.model.gguf_path, root, _memo_dir(cfg, root))


def _local_llm_fingerprint(cfg: DictConfig, root: Path) -> Any:
    return _gguf_fingerprint(cfg, root) if cfg.llm.backend == "llama_cpp" else None


def _model_fingerprint(cfg: DictConfig, root: Path) -> Any:
    """The training weights' source: the user's Hugging Face folder, else the GGUF converted from."""
    from runner.core.models import model_identity

    spec = cfg.model.hf_path or cfg.model.gguf_path
    return model_identity(spec, root, _memo_dir(cfg, root))


def _train_code_fingerprint(cfg: DictConfig, root: Path) -> Any:
    from runner.stages.train import code_fingerprint

    return code_fingerprint(cfg, root)


def _probes_fingerprint(cfg: DictConfig, root: Path) -> Any:
    if not cfg.eval.probes:
        return None
    path = resolve_path(cfg.eval.probes, root)
    return hash_file(path) if path.is_file() else None


# what changes a model's replies (speed knobs such as parallel, n_threads, n_batch and retries do not)
_LLM_OUTPUT = (
    "model.chat_format",
    "llm.backend",
    "llm.n_ctx",
    "llm.temperature",
    "llm.top_p",
    "llm.max_tokens",
    "llm.seed",
    "llm.base_url",
    "llm.api_model",
    "llm.response_format",
)
_QUESTION_PROMPTS = ("prompts.question_system", "prompts.question_user", "prompts.fact_system", "prompts.fact_user", "prompts.fact_examples")
_ANSWER_PROMPTS = ("prompts.answer_system", "prompts.answer_user", "prompts.check_system", "prompts.check_user", "prompts.fact_examples")

_STRUCTURE_CODE = ("runner.documents.structure", "runner.documents.structure.records", "runner.documents.structure.layouts", "runner.documents.structure.sentences")
_LLM_CODE = ("runner.llm.base", "runner.llm.llama_cpp", "runner.llm.openai_compat", "runner.llm.resumable", "runner.core.models")

STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "ingest",
        "runner.stages.ingest",
        ("ingest",),
        code=(
            "runner.documents.files", "runner.documents.pdf_text", "runner.documents.pdf_headings", "runner.documents.markup",
            "runner.documents.text_clean", "runner.documents.headings",
        ),  # fmt: skip
        fingerprint=_document_fingerprint,
    ),
    StageSpec("chunk", "runner.stages.chunk", ("chunk",), ("ingest",), code=("runner.documents.headings",), fingerprint=_tokenizer_fingerprint),
    StageSpec("index", "runner.stages.index", ("index",), ("chunk",), code=("runner.retrieval.hybrid", "runner.retrieval.embeddings", "runner.core.models")),
    StageSpec(
        "generate",
        "runner.stages.generate",
        ("generate", *_QUESTION_PROMPTS, *_LLM_OUTPUT),
        ("chunk",),
        resumable=True,
        code=("runner.questions.facts", "runner.questions.fact_selection", "runner.documents.headings", *_STRUCTURE_CODE, "runner.questions.templates", *_LLM_CODE),
        fingerprint=_local_llm_fingerprint,
    ),
    StageSpec(
        "curate",
        "runner.stages.curate",
        ("curate", "index.embedding_model", "prompts.fact_examples", "generate.topic"),
        ("generate", "index", "chunk"),
        resumable=True,  # curate.judge appends its verdicts as they come
        code=("runner.questions.facts", "runner.retrieval.hybrid", "runner.retrieval.embeddings", "runner.questions.judge"),
        fingerprint=lambda cfg, root: importlib.import_module("runner.questions.judge").judge_fingerprint(cfg, root, _memo_dir(cfg, root)),
    ),
    StageSpec(
        "answer",
        "runner.stages.answer",
        ("answer", "retriever", *_ANSWER_PROMPTS, *_LLM_OUTPUT, "generate.topic", "index.embedding_model"),
        ("curate", "generate", "index", "chunk"),
        resumable=True,
        code=("runner.questions.facts", "runner.retrieval.hybrid", "runner.retrieval.embeddings", "runner.questions.answer_checks", *_LLM_CODE),
        fingerprint=_local_llm_fingerprint,
    ),
    StageSpec(
        "dataset",
        "runner.stages.dataset",
        ("dataset", "generate.topic"),
        ("answer", "generate", "chunk", "ingest"),
        code=("runner.questions.phrasings", "runner.questions.fact_selection", "runner.questions.facts"),
    ),
    StageSpec(
        "prepare_model",
        "runner.stages.prepare_model",
        ("train.quantize",),
        fingerprint=_model_fingerprint,
    ),
    StageSpec(
        "train",
        "runner.stages.train",
        ("train", "dataset.format", "model.system_prompt"),
        ("dataset", "prepare_model"),
        resumable=True,
        fingerprint=_train_code_fingerprint,
    ),
    StageSpec(
        "eval",
        "runner.stages.evaluate",
        (
            "eval.probes", "eval.max_tokens", "eval.max_questions", "eval.train_sample", "eval.openbook_questions",
            "eval.bootstrap_samples", "eval.seed", "prompts.answer_system", "prompts.answer_user", "generate.topic",
            "model.chat_format", "model.system_prompt", "llm.n_ctx", "index.embedding_model",
        ),
        ("answer", "dataset", "train"),
        fingerprint=lambda cfg, root: [_probes_fingerprint(cfg, root), _gguf_fingerprint(cfg, root)],
        code=("runner.evaluation.metrics", "runner.questions.facts", "runner.evaluation.report", "runner.retrieval.embeddings", *_LLM_CODE),
    ),
)


def stage_names() -> list[str]:
    return [spec.name for spec in STAGES]


def _select(cfg: DictConfig) -> list[StageSpec]:
    if cfg.until is None:
        return list(STAGES)
    names = stage_names()
    if cfg.until not in names:
        raise ConfigError(f"until={cfg.until!r} is invalid: must be one of {', '.join(names)}")
    return list(STAGES[: names.index(cfg.until) + 1])


def _config_slice(cfg: DictConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    selected = {}
    for key in keys:
        node = OmegaConf.select(cfg, key)
        selected[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return selected


def stage_key(spec: StageSpec, cfg: DictConfig, root: Path, input_keys: dict[str, str]) -> str:
    modules = [importlib.import_module(name) for name in (spec.module, *spec.code)]
    payload = {
        "stage": spec.name,
        "code": [hash_source(module.__file__) for module in modules],
        "config": _config_slice(cfg, spec.config_keys),
        "inputs": input_keys,
        "fingerprint": spec.fingerprint(cfg, root) if spec.fingerprint else None,
    }
    return hash_json(payload)


@dataclass
class StageOutcome:
    spec: StageSpec
    key: str
    path: Path
    cache_hit: bool
    duration_s: float
    result: StageResult


def execute_stage(
    spec: StageSpec,
    cfg: DictConfig,
    root: Path,
    cache_dir: Path,
    upstream: dict[str, StageOutcome],
    log_metrics: Callable[[dict[str, float], Optional[int]], None],
) -> StageOutcome:
    """Run one stage, or restore it from the cache when its key already exists."""
    input_keys = {name: upstream[name].key for name in spec.inputs}
    key = stage_key(spec, cfg, root, input_keys)
    entry = CacheEntry(cache_dir / spec.name, key)
    started = time.perf_counter()
    with entry.lock():
        if entry.is_complete():
            manifest = entry.read_manifest()
            log.info("stage %-8s cached (key %s): skipping", spec.name, key)
            result = StageResult(
                manifest["metrics"], manifest["artifacts"], manifest.get("summary", {}), manifest.get("datasets", {}), manifest.get("tables", {})
            )
            return StageOutcome(spec, key, entry.final_dir, True, time.perf_counter() - started, result)
        work_dir = entry.prepare_partial(resume=spec.resumable)
        log.info("stage %-8s running (key %s)", spec.name, key)
        ctx = StageContext(
            name=spec.name,
            cfg=cfg,
            root=root,
            work_dir=work_dir,
            inputs={name: upstream[name].path for name in spec.inputs},
            log_metrics=log_metrics,
        )
        result = importlib.import_module(spec.module).run(cfg, ctx)
        duration = time.perf_counter() - started
        entry.commit(
            {
                "stage": spec.name,
                "key": key,
                "inputs": input_keys,
                "config": tracking.mask_secrets(_config_slice(cfg, spec.config_keys)),
                "metrics": result.metrics,
                "artifacts": result.artifacts,
                "summary": result.summary,
                "datasets": result.datasets,
                "tables": result.tables,
                "duration_s": duration,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        log.info("stage %-8s done in %.1f s", spec.name, duration)
        return StageOutcome(spec, key, entry.final_dir, False, duration, result)


@dataclass
class RunInfo:
    """What the Hydra job knows about itself, recorded with the run."""

    overrides: list[str] = field(default_factory=list)
    output_dir: Optional[Path] = None
    run_name: Optional[str] = None
    parent_run_id: Optional[str] = None
    extra_tags: dict[str, str] = field(default_factory=dict)


def open_tracker(cfg: DictConfig, root: Path) -> Optional[tracking.Tracker]:
    uri = tracking.resolve_tracking_uri(cfg)
    return tracking.Tracker(uri, cfg.tracking.experiment, artifact_root=tracking.mlruns_dir(cfg) / "artifacts")


def run_pipeline(cfg: DictConfig, info: Optional[RunInfo] = None) -> dict[str, Any]:
    """Run the selected stages; return a summary holding the metrics and the MLflow run id."""
    info = info or RunInfo()
    root = Path(cfg.paths.root).resolve()
    cache_dir = root / cfg.paths.cache_dir
    stages = _select(cfg)
    preflight(cfg, root)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    config_hash = hash_json(resolved)

    tracker = open_tracker(cfg, root)
    tags = {
        "git_commit": tracking.git_commit(root),
        "config_hash": config_hash,
        "overrides": " ".join(tracking.mask_overrides(info.overrides))[: tracking.MAX_PARAM_CHARS],
        **info.extra_tags,
    }
    run_id = tracker.start(info.run_name or "run", tags, parent_run_id=info.parent_run_id)
    tracker.log_params(tracking.params_from_config(resolved))
    log.info("MLflow run %s (tracking %s)", run_id, tracker.uri)

    all_metrics: dict[str, float] = {}
    outcomes: dict[str, StageOutcome] = {}

    def log_step_metrics(metrics: dict[str, float], step: Optional[int] = None) -> None:
        tracker.log_metrics(metrics, step=step)

    status = "FAILED"
    try:
        check_native(cfg, {spec.name for spec in stages}, root)
        for spec in stages:
            outcome = execute_stage(spec, cfg, root, cache_dir, outcomes, log_step_metrics)
            outcomes[spec.name] = outcome
            stage_metrics = {f"{spec.name}/{k}": v for k, v in outcome.result.metrics.items()}
            stage_metrics[f"pipeline/{spec.name}/duration_s"] = outcome.duration_s
            stage_metrics[f"pipeline/{spec.name}/cache_hit"] = float(outcome.cache_hit)
            tracker.log_metrics(stage_metrics)
            all_metrics.update(stage_metrics)
            tracker.set_tags({f"stage_key/{spec.name}": outcome.key})
            if cfg.tracking.log_artifacts:
                for name in outcome.result.artifacts:
                    tracker.log_artifact(outcome.path / name, artifact_path=spec.name)
            for artifact_file, name in outcome.result.tables.items():
                tracker.log_table(outcome.path / name, artifact_file)
            for context, name in outcome.result.datasets.items():
                tracker.log_dataset(outcome.path / name, context=context, name=f"{spec.name}-{context}-{outcome.key}")
        hits = sum(o.cache_hit for o in outcomes.values())
        tracker.log_metrics({"pipeline/cache_hits": hits, "pipeline/stages_run": len(outcomes) - hits})
        all_metrics["pipeline/cache_hits"] = float(hits)
        _log_run_files(tracker, info)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except RunnerError as exc:
        exc.run_id = run_id  # this failure has its run (FAILED, with the error as a tag): runner.cli.app
        _tag_error(tracker, exc)
        raise
    finally:
        tracker.end(status)

    return {
        "run_id": run_id,
        "metrics": all_metrics,
        "stages": {name: {"key": o.key, "path": str(o.path), "cache_hit": o.cache_hit} for name, o in outcomes.items()},
        "config_hash": config_hash,
    }


def _tag_error(tracker: tracking.Tracker, exc: RunnerError) -> None:
    try:
        tracker.set_tags({"error": str(exc)[: tracking.MAX_PARAM_CHARS]})
    except Exception as tag_error:  # noqa: BLE001 - never hide the stage's own error
        log.warning("could not tag the MLflow run with the error: %s", tag_error)


def _log_run_files(tracker: tracking.Tracker, info: RunInfo) -> None:
    """Hydra's record of the job, with secret values masked (a password given on the command line)."""
    if info.output_dir is None:
        return
    hydra_dir = info.output_dir / ".hydra"
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
            source = hydra_dir / name
            if not source.exists():
                continue
            content = OmegaConf.to_container(OmegaConf.load(source), resolve=False)
            masked = tracking.mask_overrides(content) if isinstance(content, list) else tracking.mask_secrets(content)
            if name == "hydra.yaml":
                masked = _mask_hydra_overrides(masked)
            target = Path(tmp) / name
            target.write_text(OmegaConf.to_yaml(OmegaConf.create(masked)))
            tracker.log_artifact(target, artifact_path="config")


def _mask_hydra_overrides(hydra_record: dict[str, Any]) -> dict[str, Any]:
    hydra = hydra_record.get("hydra", {})
    overrides = hydra.get("overrides", {})
    for key in ("task", "hydra"):
        if isinstance(overrides.get(key), list):
            overrides[key] = tracking.mask_overrides(overrides[key])
    job = hydra.get("job", {})
    if isinstance(job.get("override_dirname"), str):  # the task overrides joined with commas
        job["override_dirname"] = ",".join(tracking.mask_overrides(overrides.get("task") or []))
    return hydra_record
