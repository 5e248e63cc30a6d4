"""Every config option composes into the typed schema and passes ``validate``; bad values fail by name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import CONF_DIR, compose_config
from runner.errors import ConfigError
from runner.schema import validate

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


_BAD_VALUES = [
    (["chunk.size=-5"], "chunk.size"),
    (["chunk.size=100", "chunk.overlap=100"], "chunk.overlap"),
    (["chunk.size=100", "chunk.overlap=250"], "chunk.overlap"),
    (["chunk.unit=words"], "chunk.unit"),
    (["retriever.weights.bm25=1.5"], "retriever.weights.bm25"),
    (["retriever.weights.bm25=0", "retriever.weights.dense=0"], "retriever.weights"),
    (["retriever.k=10", "retriever.fetch_k=5"], "retriever.fetch_k"),
    (["retriever.kind=hybrid"], "retriever.kind"),
    (["llm.backend=foo"], "llm.backend"),
    (["llm.max_tokens=4096"], "llm.max_tokens"),
    (["dataset.valid_fraction=1.5"], "dataset.valid_fraction"),
    (["index.batch_size=0"], "index.batch_size"),
    (["ingest.documents=[]"], "ingest.documents"),
    (["train.quantize.bits=3"], "train.quantize.bits"),
]


@pytest.mark.parametrize(("overrides", "key"), _BAD_VALUES, ids=[" ".join(o) for o, _ in _BAD_VALUES])
def test_bad_values_raise_config_error_naming_the_key(overrides: list[str], key: str) -> None:
    cfg = compose_config(overrides)  # composes: the schema checks types, validate checks values
    with pytest.raises(ConfigError) as excinfo:
        validate(cfg)
    message = str(excinfo.value)
    assert message.startswith(f"{key}=") or message.startswith(f"{key} "), message
    assert "\n" not in message


def test_unknown_backend_is_accepted_by_the_schema_but_not_by_validate() -> None:
    cfg = compose_config(["llm.backend=foo"])
    assert cfg.llm.backend == "foo"  # a str field takes any string while composing
    with pytest.raises(ConfigError, match=r"llm\.backend='foo' is invalid: must be one of llama_cpp, openai"):
        validate(cfg)


def test_prompt_with_unknown_placeholder_is_rejected() -> None:
    cfg = compose_config()
    with open_dict(cfg):
        cfg.prompts.question_user = "Excerpt: {chunk}\nWrite {n} questions about {product}."
    with pytest.raises(ConfigError, match=r"prompts\.question_user uses unknown placeholder \{product\}"):
        validate(cfg)


def test_prompt_with_broken_template_is_rejected() -> None:
    cfg = compose_config()
    cfg.prompts.answer_user = "Context: {context"
    with pytest.raises(ConfigError, match=r"prompts\.answer_user is not a valid template"):
        validate(cfg)


def test_prompt_override_from_the_command_line_is_checked() -> None:
    cfg = compose_config(["prompts.fact_user='Fact: {fact} about {topik}'"])
    with pytest.raises(ConfigError, match=r"prompts\.fact_user .*\{topik\}"):
        validate(cfg)


@pytest.mark.parametrize("override", ["chunk.sise=5", "chunk.size=big", "retriever.weights.sparse=0.5"])
def test_misspelled_key_or_wrong_type_fails_while_composing(override: str) -> None:
    with pytest.raises(ConfigCompositionException) as excinfo:
        compose_config([override])
    chain = f"{excinfo.value} {excinfo.value.__cause__}"
    assert override.split("=")[0].split(".")[-1] in chain


def _run_cli(repo_root: Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "runner", *overrides, f"paths.output_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_reports_a_bad_value_in_one_line_before_any_work(repo_root: Path, tmp_path: Path) -> None:
    proc = _run_cli(repo_root, tmp_path, "chunk.size=-5")
    assert proc.returncode != 0
    mentions = [line for line in proc.stderr.splitlines() if "chunk.size" in line]
    assert len(mentions) == 1, proc.stderr
    assert mentions[0].startswith("error: chunk.size=-5 is invalid")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()  # no stage started


def test_cli_rejects_a_misspelled_key(repo_root: Path, tmp_path: Path) -> None:
    proc = _run_cli(repo_root, tmp_path, "chunk.sise=5")
    assert proc.returncode != 0
    assert "chunk.sise" in proc.stderr
