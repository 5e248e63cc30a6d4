"""Item 2, bad configuration: every schema violation, impossible combination and missing file fails at
start-up with one line naming the key, the bad value and what is allowed, before any model is loaded."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, open_dict

from conftest import compose_config
from runner.core.errors import ConfigError
from runner.engine.pipeline import run_pipeline
from runner.core.schema import validate

ITEM = "bad configuration"

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
def test_bad_values_raise_config_error_naming_the_key(overrides: list[str], key: str, reliability_report) -> None:
    cfg = compose_config(overrides)  # composes: the schema checks types, validate checks values
    with pytest.raises(ConfigError) as excinfo:
        validate(cfg)
    message = str(excinfo.value)
    # "<key>=<bad value> is invalid: <what is allowed>", on one line
    assert re.match(rf"{re.escape(key)}=\S.* is invalid: .*(must|one of)", message), message
    assert all(o.split("=", 1)[1] in message.split(" is invalid")[0] for o in overrides if o.startswith(key)), message
    assert "\n" not in message
    reliability_report.record(item=ITEM, case=" ".join(overrides), outcome=f"ConfigError: {message}")


def test_unknown_backend_is_accepted_by_the_schema_but_not_by_validate() -> None:
    cfg = compose_config(["llm.backend=foo"])
    assert cfg.llm.backend == "foo"  # a str field takes any string while composing
    with pytest.raises(ConfigError, match=r"llm\.backend='foo' is invalid: must be one of llama_cpp, openai"):
        validate(cfg)


def test_prompt_with_unknown_placeholder_is_rejected(reliability_report) -> None:
    cfg = compose_config()
    with open_dict(cfg):
        cfg.prompts.question_user = "Excerpt: {chunk}\nWrite {n} questions about {product}."
    with pytest.raises(ConfigError, match=r"prompts\.question_user uses unknown placeholder \{product\}") as excinfo:
        validate(cfg)
    reliability_report.record(item=ITEM, case="prompts.question_user with an unknown {product} placeholder", outcome=f"ConfigError: {excinfo.value}")


def test_prompt_with_broken_template_is_rejected(reliability_report) -> None:
    cfg = compose_config()
    cfg.prompts.answer_user = "Context: {context"
    with pytest.raises(ConfigError, match=r"prompts\.answer_user is not a valid template") as excinfo:
        validate(cfg)
    reliability_report.record(item=ITEM, case="prompts.answer_user with an unclosed brace", outcome=f"ConfigError: {excinfo.value}")


def test_prompt_override_from_the_command_line_is_checked() -> None:
    cfg = compose_config(["prompts.fact_user='Fact: {fact} about {topik}'"])
    with pytest.raises(ConfigError, match=r"prompts\.fact_user .*\{topik\}"):
        validate(cfg)


@pytest.mark.parametrize("override", ["chunk.sise=5", "chunk.size=big", "retriever.weights.sparse=0.5"])
def test_misspelled_key_or_wrong_type_fails_while_composing(override: str, reliability_report) -> None:
    with pytest.raises(ConfigCompositionException) as excinfo:
        compose_config([override])
    chain = f"{excinfo.value} {excinfo.value.__cause__}"
    assert override.split("=")[0].split(".")[-1] in chain
    reliability_report.record(item=ITEM, case=override, outcome=f"rejected while composing: {str(excinfo.value).splitlines()[0]}")


# ---------------------------------------------------------------- files the config names, checked before any work


def _missing_files(tmp_path: Path) -> list[tuple[str, str]]:
    (tmp_path / "not_a_model").mkdir(exist_ok=True)
    return [
        (f"model.gguf_path={tmp_path / 'nowhere' / 'model.gguf'}", r"model\.gguf_path='.*model\.gguf' does not exist"),
        ("model.gguf_path=embedded:nosuch", r"model\.gguf_path='embedded:nosuch' is invalid: embedded models are"),
        (f"model.hf_path={tmp_path / 'not_a_model'}", r"model\.hf_path='.*not_a_model' is not a Hugging Face model folder"),
        (f"index.embedding_model={tmp_path / 'nowhere' / 'minilm'}", r"index\.embedding_model='.*minilm' is not a local folder"),
        (f"eval.probes={tmp_path / 'nowhere' / 'probes.jsonl'}", r"eval\.probes='.*probes\.jsonl' does not exist"),
    ]


@pytest.mark.parametrize("case", range(5), ids=["gguf", "embedded-name", "hf-folder", "embedding-model", "probes"])
def test_a_missing_file_fails_at_start_up_before_any_stage(
    case: int, composed_cfg: Callable[..., DictConfig], tiny_doc: Path, tmp_path: Path, reliability_report
) -> None:
    override, expected = _missing_files(tmp_path)[case]
    cfg = composed_cfg([f"ingest.documents=[{tiny_doc}]", override])
    validate(cfg)  # a valid value; only the file system says otherwise
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=expected) as excinfo:
        run_pipeline(cfg)
    assert time.perf_counter() - started < 10  # no model was loaded
    assert not (tmp_path / "outputs" / "cache").exists()  # no stage started
    reliability_report.record(item=ITEM, case=override.replace(str(tmp_path), "<tmp>"), outcome=f"ConfigError at start-up: {str(excinfo.value).replace(str(tmp_path), '<tmp>')}")


# ---------------------------------------------------------------- the real CLI


def test_cli_reports_a_bad_value_in_one_line_before_any_work(runner_cli, reliability_report) -> None:
    proc = runner_cli.run("chunk.size=-5")
    assert proc.returncode == 2
    mentions = [line for line in proc.stderr.splitlines() if "chunk.size" in line]
    assert len(mentions) == 1, proc.stderr
    assert mentions[0].startswith("error: chunk.size=-5 is invalid")
    assert "Traceback" not in proc.stderr
    assert not runner_cli.cache.exists()  # no stage started
    assert not (runner_cli.workdir / "mlruns" / "mlflow.db").exists()  # nor an MLflow run
    reliability_report.record(item=ITEM, case="CLI: python -m runner chunk.size=-5", outcome=f"exit 2, one line: {mentions[0]}")


def test_cli_rejects_a_misspelled_key(runner_cli) -> None:
    proc = runner_cli.run("chunk.sise=5")
    assert proc.returncode != 0
    assert "chunk.sise" in proc.stderr
    assert not runner_cli.cache.exists()


def test_a_sweep_checks_its_shared_paths_on_the_submitting_machine_before_any_job(runner_cli, tmp_path: Path, reliability_report) -> None:
    """A path every job would miss fails once, before the sweep starts, naming the machine; each job
    checks its own again where it runs (a cluster node may not see what the submitting machine sees)."""
    missing = tmp_path / "nowhere" / "model.gguf"
    proc = runner_cli.run("-m", "debug=tiny", f"model.gguf_path={missing}", "train.iters=2,3")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.gguf_path=" in errors[0] and "does not exist" in errors[0] and "(checked on " in errors[0]
    assert "Traceback" not in proc.stderr
    assert not runner_cli.cache.exists()  # no job started
    reliability_report.record(item=ITEM, case="CLI sweep whose shared model path is missing", outcome=f"exit 2 before any job, one line: {errors[0].replace(str(tmp_path), '<tmp>')}")
