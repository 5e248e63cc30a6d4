"""Every config option composes into the typed schema and passes ``validate``; options with required values
fail until they are filled. (Bad values, impossible combinations and missing files: tests/reliability/test_bad_config.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from conftest import CONF_DIR, compose_config
from runner.core.errors import ConfigError
from runner.core.schema import validate

# conf/local/ holds git-ignored machine-specific files; when one exists it is part of every compose.
_SKIP_GROUPS = {"local"}
# options that select a preset with required values through their defaults list
_INHERITED_REQUIRED = {("experiment", "original"): ["model.gguf_path", "model.hf_path"]}


def _group_options() -> list[tuple[str, str, list[str]]]:
    """(group, option, keys the user must fill in) for every YAML file in every config group folder."""
    found = []
    for group_dir in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in _SKIP_GROUPS):
        for yaml_file in sorted(group_dir.glob("*.yaml")):
            node = OmegaConf.load(yaml_file)
            required = sorted(f"{group_dir.name}.{key}" for key in _missing(node))
            required += _INHERITED_REQUIRED.get((group_dir.name, yaml_file.stem), [])
            found.append((group_dir.name, yaml_file.stem, required))
    return found


def _missing(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys marked ``???`` (without resolving interpolations such as ``${hydra:...}``)."""
    keys = []
    for key in node:
        if OmegaConf.is_missing(node, key):
            keys.append(f"{prefix}{key}")
        elif isinstance(node._get_node(key), DictConfig):
            keys.extend(_missing(node._get_node(key), f"{prefix}{key}."))
    return keys


_OPTIONS = _group_options()
_COMPLETE = [(g, o) for g, o, required in _OPTIONS if not required]
_NEED_VALUES = [(g, o, required) for g, o, required in _OPTIONS if required]
_NEED_IDS = [f"{g}={o}" for g, o, _ in _NEED_VALUES]


def test_group_options_were_found() -> None:
    groups = {g for g, _ in _COMPLETE}
    assert {"chunk", "retriever", "llm", "model", "dataset", "train", "debug"} <= groups
    assert {(g, o) for g, o, _ in _NEED_VALUES} >= {("model", "custom"), ("model", "mistral7b")}


def test_default_config_composes_and_validates() -> None:
    cfg = compose_config()
    assert OmegaConf.missing_keys(cfg) == set()
    validate(cfg)
    assert cfg.chunk.size == 1000 and cfg.retriever.kind == "ensemble"


@pytest.mark.parametrize(("group", "option"), _COMPLETE, ids=[f"{g}={o}" for g, o in _COMPLETE])
def test_every_group_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}"])
    assert OmegaConf.missing_keys(cfg) == set()
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_debug_tiny_shrinks_the_run() -> None:
    cfg = compose_config(["debug=tiny"])
    validate(cfg)
    assert cfg.chunk.size < 1000
    assert cfg.train.iters <= 10
    assert cfg.generate.max_chunks is not None


@pytest.mark.parametrize(("group", "option", "required"), _NEED_VALUES, ids=_NEED_IDS)
def test_options_with_required_values_fail_clearly_until_filled(group: str, option: str, required: list[str]) -> None:
    cfg = compose_config([f"{group}={option}"])
    assert set(required) <= OmegaConf.missing_keys(cfg)
    with pytest.raises(ConfigError, match=re.escape(required[0])):
        validate(cfg)


@pytest.mark.parametrize(("group", "option", "required"), _NEED_VALUES, ids=_NEED_IDS)
def test_options_with_required_values_validate_once_filled(
    group: str, option: str, required: list[str], tmp_path: Path
) -> None:
    cfg = compose_config([f"{group}={option}", *(f"{key}={tmp_path / 'given'}" for key in required)])
    assert OmegaConf.missing_keys(cfg) == set()
    validate(cfg)
    for key in required:
        assert OmegaConf.select(cfg, key) == str(tmp_path / "given")
