"""Shared fixtures: the real Hydra configs, composed and shrunk for tests.

Every test composes ``conf/config.yaml`` (never a hand-written dict), points all
writable paths at ``tmp_path`` and tracks to a real SQLite MLflow store there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from runner.core.schema import register_configs


def pytest_configure(config: pytest.Config) -> None:
    # MLflow's SQLAlchemy store triggers this on import; it is not ours to fix
    config.addinivalue_line("filterwarnings", "ignore:The ``noload`` loader strategy is deprecated")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"

# A small document with distinctive words, reused by pipeline, chunk and index tests.
TINY_DOC = """# Tiny manual

## Harbour settings

The zorblax harbour daemon listens on port 7311 and rotates its quasar journal every night.

## Lantern cache

The lantern cache keeps at most 64 fennel entries before evicting the oldest one.

## Upgrade notes

Before upgrading, drain every turnip queue and pause the marmalade scheduler.
"""


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose the real root config (paths.root = this checkout) with Hydra overrides.

    ``paths.root`` defaults to ``${hydra:runtime.cwd}``, which only resolves inside
    ``@hydra.main``; under ``compose`` it is set explicitly.
    """
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"paths.root={REPO_ROOT}", *overrides])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite MLflow store per session: creating its schema costs seconds; runs stay separate."""
    return tmp_path_factory.mktemp("mlruns")


@pytest.fixture(scope="session")
def make_cfg(mlflow_dir: Path) -> Callable[..., DictConfig]:
    """``make_cfg(overrides, out_dir)``: the real config with outputs under ``out_dir``.

    For module- or session-scoped fixtures; tests normally use ``composed_cfg``.
    Later overrides win, so a caller can still set ``tracking.uri`` or ``paths.*``.
    """

    def _make(overrides: Sequence[str], out_dir: Path) -> DictConfig:
        base = [
            f"paths.output_dir={out_dir / 'outputs'}",
            f"paths.mlruns_dir={mlflow_dir}",
            f"tracking.uri=sqlite:///{mlflow_dir / 'mlflow.db'}",
        ]
        return compose_config(base + list(overrides))

    return _make


@pytest.fixture(scope="session")
def mlflow_client(mlflow_dir: Path):
    """A client on the session's SQLite store, to read back what a run logged."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}")


@pytest.fixture
def composed_cfg(tmp_path: Path, make_cfg: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    """``composed_cfg(overrides)`` -> the real config, outputs under tmp_path, tracked to SQLite."""

    def _compose(overrides: Sequence[str] = ()) -> DictConfig:
        return make_cfg(overrides, tmp_path)

    return _compose


@pytest.fixture
def tiny_doc(tmp_path: Path) -> Path:
    """A small Markdown document with unique words, written to tmp_path."""
    path = tmp_path / "docs" / "tiny.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY_DOC, encoding="utf-8")
    return path



# Six paragraphs, each a chunk of its own at chunk.size=160, each with words no other one has.
RETRIEVAL_PARAGRAPHS = [
    "The zorblax harbour daemon listens on port 7311 and writes its quasar journal to disk every night at two.",
    "Lantern cache eviction: at most 64 fennel entries are kept, and the oldest fennel entry goes when a new one arrives.",
    "Before an upgrade, drain every turnip queue, pause the marmalade scheduler and snapshot the ledger first.",
    "Cohort tokens expire after 90 minutes; renew a cohort token with rotate-token before the badger gateway rejects it.",
    "The walrus exporter sends metrics to the observatory endpoint every 15 seconds over a compressed protobuf stream.",
    "Backups of the pelican vault are encrypted with a per-vault key stored in the hardware security module.",
]


@dataclass
class BuiltIndex:
    cfg: DictConfig
    summary: dict[str, Any]
    doc: Path

    def stage_dir(self, name: str) -> Path:
        return Path(self.summary["stages"][name]["path"])


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, make_cfg: Callable[..., DictConfig]) -> BuiltIndex:
    """The real ingest -> chunk -> index stages over RETRIEVAL_PARAGRAPHS, built once per session."""
    from runner.engine.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("tiny_index")
    doc = tmp / "paragraphs.md"
    doc.write_text("\n\n".join(RETRIEVAL_PARAGRAPHS) + "\n", encoding="utf-8")
    cfg = make_cfg(["until=index", f"ingest.documents=[{doc}]", "chunk.size=160", "chunk.overlap=0"], tmp)
    return BuiltIndex(cfg=cfg, summary=run_pipeline(cfg), doc=doc)


@pytest.fixture
def run_ingest(composed_cfg: Callable[..., DictConfig], repo_root: Path, tmp_path: Path):
    """``run_ingest(documents, *overrides)``: the real ingest stage -> (records, report, metrics)."""
    import json

    from runner.core.artifacts import Ingest
    from runner.core.stage import StageContext
    from runner.stages import ingest

    def _run(documents: Sequence[Path], *overrides: str):
        cfg = composed_cfg([f"ingest.documents=[{','.join(str(d) for d in documents)}]", *overrides])
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        ctx = StageContext(name="ingest", cfg=cfg, root=repo_root, work_dir=work, inputs={})
        result = ingest.run(cfg, ctx)
        records = [json.loads(line) for line in (work / Ingest.PAGES).read_text(encoding="utf-8").splitlines()]
        report = json.loads((work / Ingest.REPORT).read_text())
        return records, report, result.metrics

    return _run


@pytest.fixture(scope="session")
def scripted_server():
    """A scripted OpenAI-compatible server on 127.0.0.1 (tests/scripted_server.py), one per session."""
    from scripted_server import ScriptedServer

    with ScriptedServer() as running:
        yield running


@pytest.fixture
def openai_backend(scripted_server, composed_cfg: Callable[..., DictConfig]):
    """``openai_backend(behaviour, *overrides)`` -> (the ``llm=openai`` backend on that behaviour of the
    scripted server, with fast retries; its key in the server's counts)."""
    from runner.llm import create_llm
    from runner.llm.openai_compat import OpenAICompatLLM
    from scripted_server import FAST_RETRIES

    made: list[OpenAICompatLLM] = []

    def _make(behaviour: str, *overrides: str) -> tuple[OpenAICompatLLM, str]:
        url, key = scripted_server.url(behaviour)
        cfg = composed_cfg([*FAST_RETRIES, f"llm.base_url={url}", *overrides])
        llm = create_llm(cfg.llm, cfg.model, REPO_ROOT)
        assert isinstance(llm, OpenAICompatLLM)
        made.append(llm)
        return llm, key

    yield _make
    for llm in made:
        llm.close()
