"""The curate stage's judge pass (runner/questions/judge.py): SmolLM2 judges a handful of questions in-process and
behind a real ``python -m llama_cpp.server``; verdicts, thresholds, resuming, failed requests, bad replies,
the judge's config and its part in the curate stage's cache key. The tiny model is a poor judge: these
tests check the mechanism, not its verdicts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO_ROOT
from omegaconf import DictConfig
from scripted_server import free_port

from runner.core.errors import ConfigError, LLMError
from runner.core.jsonl import read_jsonl
from runner.questions.judge import (
    JUDGE_SCHEMA,
    apply_verdicts,
    judge_fingerprint,
    judge_messages,
    judge_model_configs,
    judge_questions,
    parse_verdict,
)
from runner.llm.base import ChatResponse
from runner.core.models import resolve_gguf
from runner.engine.pipeline import STAGES, stage_key
from runner.core.schema import validate

FACT = "The harbour daemon listens on port 7311 and rotates its quasar journal every night."
CHUNK = {"chunk_id": "c1", "doc_id": "d1", "text": "Harbour settings. " + FACT, "heading": "Harbour settings", "heading_path": ["Manual", "Harbour settings"]}
QUESTIONS = [
    {"qid": "q-port", "question": "Which port does the harbour daemon listen on?", "chunk_id": "c1", "fact": FACT},
    {"qid": "q-journal", "question": "How often does the harbour daemon rotate its quasar journal?", "chunk_id": "c1", "fact": FACT},
    {"qid": "q-vague", "question": "What does it do every night?", "chunk_id": "c1", "fact": FACT},
]
CHUNKS = {"c1": CHUNK}
# one thread, a short context; replies of a reason (at most 160 characters) and a score fit in 96 tokens
SMALL = ["curate.judge.enabled=true", "llm.n_threads=1", "llm.n_ctx=1024", "curate.judge.max_tokens=96", "generate.topic=Harbour"]


@pytest.fixture
def judge_cfg(composed_cfg: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    def _make(*overrides: str) -> DictConfig:
        cfg = composed_cfg([*SMALL, *overrides])
        validate(cfg)
        return cfg

    return _make


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _check_verdicts(questions: list[dict[str, Any]], kept: list[dict[str, Any]], dropped: list[dict[str, Any]], items: Path, min_score: int) -> dict[str, int]:
    """Every question judged once with a score in 1-5, kept or dropped by that score; {qid: score}."""
    records = {r["item_id"]: r for r in read_jsonl(items)}
    assert set(records) == {q["qid"] for q in questions}
    assert all(r["status"] == "ok" and r["score"] in (1, 2, 3, 4, 5) and r["raw"].lstrip().startswith("{") for r in records.values())
    scores = {qid: r["score"] for qid, r in records.items()}
    assert {q["qid"]: q["judge_score"] for q in kept} == {qid: s for qid, s in scores.items() if s >= min_score}
    assert {d["qid"] for d in dropped} == {qid for qid, s in scores.items() if s < min_score}
    for d in dropped:
        assert d["reason"] == "judge_rejected" and d["judge_score"] == scores[d["qid"]] and d["judge_reason"] == records[d["qid"]]["reason"]
    return scores


# ---------------------------------------------------------------- in-process llama.cpp (a second GGUF)


def test_an_in_process_gguf_judges_every_question_and_min_score_decides(judge_cfg, tmp_path: Path) -> None:
    items = tmp_path / "judge_items.jsonl"
    cfg = judge_cfg("curate.judge.backend=llama_cpp", "curate.judge.gguf_path=embedded:smollm2", "curate.judge.min_score=1")
    kept, dropped, metrics = judge_questions(QUESTIONS, CHUNKS, cfg, REPO_ROOT, items)
    scores = _check_verdicts(QUESTIONS, kept, dropped, items, min_score=1)
    assert dropped == [] and [q["qid"] for q in kept] == [q["qid"] for q in QUESTIONS]  # a score is at least 1
    assert metrics == {"judge/judged": 3, "judge/rejected": 0, "judge/errors": 0, "judge/mean_score": pytest.approx(sum(scores.values()) / 3)}

    # the verdicts stay in the items file: a stricter threshold sends no request and drops by score
    strict = judge_cfg("curate.judge.backend=llama_cpp", "curate.judge.gguf_path=embedded:smollm2", "curate.judge.min_score=5")
    before = _lines(items)
    kept, dropped, metrics = judge_questions(QUESTIONS, CHUNKS, strict, REPO_ROOT, items)
    assert _lines(items) == before
    _check_verdicts(QUESTIONS, kept, dropped, items, min_score=5)
    assert metrics["judge/rejected"] == sum(s < 5 for s in scores.values())


def test_a_partial_items_file_is_resumed(judge_cfg, tmp_path: Path) -> None:
    """A stage killed after two verdicts: the rerun asks only for the third and keeps the first two."""
    items = tmp_path / "judge_items.jsonl"
    cfg = judge_cfg("curate.judge.min_score=1")  # the pipeline's own model, in-process
    judge_questions(QUESTIONS[:2], CHUNKS, cfg, REPO_ROOT, items)
    first = _lines(items)
    assert len(first) == 2
    kept, dropped, metrics = judge_questions(QUESTIONS, CHUNKS, cfg, REPO_ROOT, items)
    after = _lines(items)
    assert after[:2] == first and len(after) == 3 and '"item_id": "q-vague"' in after[2]
    _check_verdicts(QUESTIONS, kept, dropped, items, min_score=1)
    assert metrics["judge/judged"] == 3


# ---------------------------------------------------------------- a real llama.cpp server (llm=openai style)

_SERVER_MODULES = ("sse_starlette", "starlette_context", "pydantic_settings", "uvicorn", "fastapi")


@pytest.fixture(scope="module")
def judge_server() -> Iterator[str]:
    """``python -m llama_cpp.server`` on the embedded SmolLM2 at 127.0.0.1, stopped whatever happens."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama_cpp.server needs the [server] extra: missing {', '.join(missing)} (pip install 'llama-cpp-python[server]')")
    port = free_port()
    model = resolve_gguf("embedded:smollm2", REPO_ROOT)
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"the server exited with status {proc.returncode}"
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server not ready after 90 s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_judge_behind_a_real_llama_cpp_server(judge_server: str, judge_cfg, tmp_path: Path) -> None:
    items = tmp_path / "judge_items.jsonl"
    # the pipeline's own llm stays in-process; only the judge goes to the server
    cfg = judge_cfg("curate.judge.backend=openai", f"curate.judge.base_url={judge_server}", "curate.judge.min_score=3", "llm.parallel=2")
    assert cfg.llm.backend == "llama_cpp"
    kept, dropped, metrics = judge_questions(QUESTIONS, CHUNKS, cfg, REPO_ROOT, items)
    scores = _check_verdicts(QUESTIONS, kept, dropped, items, min_score=3)
    assert metrics["judge/judged"] == 3 and metrics["judge/rejected"] == sum(s < 3 for s in scores.values())


def test_failed_requests_stop_the_judge_and_a_rerun_retries_only_them(judge_server: str, judge_cfg, tmp_path: Path) -> None:
    items = tmp_path / "judge_items.jsonl"
    nothing_there = f"http://127.0.0.1:{free_port()}/v1"
    # the Python server answers one request at a time: one in flight, so none waits into a timeout
    fast = ["curate.judge.backend=openai", "llm.max_retries=0", "llm.parallel=1", "llm.timeout_s=60", "curate.judge.min_score=1"]
    with pytest.raises(LLMError, match=r"3 of 3 curate judge requests failed .*connection failed"):
        judge_questions(QUESTIONS, CHUNKS, judge_cfg(*fast, f"curate.judge.base_url={nothing_there}"), REPO_ROOT, items)
    assert [r["status"] for r in read_jsonl(items)] == ["error"] * 3
    kept, dropped, metrics = judge_questions(QUESTIONS, CHUNKS, judge_cfg(*fast, f"curate.judge.base_url={judge_server}"), REPO_ROOT, items)
    assert len(_lines(items)) == 6 and metrics["judge/judged"] == 3 and metrics["judge/errors"] == 0
    assert len(kept) == 3 and dropped == []


# ---------------------------------------------------------------- replies, thresholds and prompts, without a model


def test_parse_verdict_reads_a_score_and_refuses_what_is_not_one() -> None:
    assert parse_verdict('{"reason": "exact answer", "score": 5}') == (5, "exact answer")
    assert parse_verdict('```json\n{"score": "4", "reason": " vague "}\n```') == (4, "vague")  # a server that ignores the schema
    assert parse_verdict('Verdict: {"score": 2.0}') == (2, "")
    assert parse_verdict('{"reason": "' + "x" * 400 + '", "score": 1}')[1] == "x" * 160
    for bad, problem in [
        ("The question is fine.", "not a JSON object"),
        ('{"reason": "cut off', "not a JSON object"),  # max_tokens ran out
        ("[5]", "not a JSON object"),
        ('{"reason": "no score"}', "no numeric score"),
        ('{"score": "high"}', "no numeric score"),
        ('{"score": true}', "no numeric score"),
        ('{"score": 0}', "not one of 1-5"),
        ('{"score": 6}', "not one of 1-5"),
        ('{"score": 3.5}', "not one of 1-5"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_verdict(bad)


def test_an_unreadable_reply_or_a_failed_request_is_an_error_record() -> None:
    from runner.questions.judge import _verdict_record

    assert {"status": "ok", "score": 4, "reason": "ok", "error": None}.items() <= _verdict_record(ChatResponse('{"reason": "ok", "score": 4}')).items()
    unreadable = _verdict_record(ChatResponse("I would give it a four."))
    assert unreadable["status"] == "error" and unreadable["error"].startswith("unreadable judge reply (not a JSON object")
    failed = _verdict_record(ChatResponse("", finish_reason="error", error="timeout after 5 s"))
    assert failed["status"] == "error" and failed["error"] == "timeout after 5 s"


def test_apply_verdicts_keeps_drops_and_counts() -> None:
    questions = [{"qid": f"q{i}", "question": f"Question {i}?"} for i in range(4)]
    records = [
        {"status": "ok", "score": 5, "reason": "exact"},
        {"status": "ok", "score": 2, "reason": "the fact does not say"},
        {"status": "error", "error": "unreadable judge reply (not a JSON object: 'x')"},
        {"status": "ok", "score": 4, "reason": "fine"},
    ]
    kept, dropped, metrics = apply_verdicts(questions, records, min_score=4)
    assert kept == [{**questions[0], "judge_score": 5}, {**questions[3], "judge_score": 4}]
    assert dropped == [
        {**questions[1], "reason": "judge_rejected", "judge_score": 2, "judge_reason": "the fact does not say"},
        {**questions[2], "reason": "judge_error", "judge_error": "unreadable judge reply (not a JSON object: 'x')"},
    ]
    assert metrics == {"judge/judged": 3, "judge/rejected": 1, "judge/errors": 1, "judge/mean_score": pytest.approx(11 / 3)}
    assert [q["qid"] for q in apply_verdicts(questions, records, min_score=1)[0]] == ["q0", "q1", "q3"]
    assert apply_verdicts([], [], 4)[2]["judge/judged"] == 0


def test_judge_messages_fill_the_prompt_from_the_question_its_fact_and_section(judge_cfg) -> None:
    cfg = judge_cfg("curate.judge.prompt.user='{heading} | {fact} | {question}'")
    system, user = judge_messages(QUESTIONS[0], CHUNK, cfg.curate.judge.prompt, cfg.generate.topic)
    assert system["role"] == "system" and "Harbour documentation" in system["content"]
    assert user == {"role": "user", "content": f"Manual > Harbour settings | {FACT} | Which port does the harbour daemon listen on?"}
    # a question without a fact (generate.strategy=free) is judged against its chunk
    free = {**QUESTIONS[0], "fact": None}
    assert judge_messages(free, CHUNK, cfg.curate.judge.prompt, "x")[1]["content"].split(" | ")[1] == CHUNK["text"]
    assert JUDGE_SCHEMA["required"] == ["reason", "score"]


# ---------------------------------------------------------------- config and cache key


def test_the_judge_takes_the_pipelines_llm_with_its_own_values_laid_over(judge_cfg) -> None:
    llm, model = judge_model_configs(judge_cfg("llm.parallel=3"))
    assert (llm.backend, llm.parallel, llm.max_tokens, llm.temperature, model.gguf_path) == ("llama_cpp", 3, 96, 0.0, "embedded:smollm2")
    cfg = judge_cfg(
        "curate.judge.backend=openai", "curate.judge.base_url=[http://a:8000/v1,http://b:8000/v1]", "curate.judge.api_model=big",
        "curate.judge.api_key_env=JUDGE_KEY", "curate.judge.response_format=json_schema", "model.chat_format=chatml",
    )
    llm, model = judge_model_configs(cfg)
    assert (llm.backend, list(llm.base_url), llm.api_model, llm.api_key_env, llm.response_format) == ("openai", ["http://a:8000/v1", "http://b:8000/v1"], "big", "JUDGE_KEY", "json_schema")
    assert (cfg.llm.backend, cfg.llm.api_model) == ("llama_cpp", "default")  # the pipeline's own llm is untouched
    assert model.chat_format == "chatml"  # the pipeline's model judges: its chat format
    _, second = judge_model_configs(judge_cfg("curate.judge.gguf_path=/models/judge.gguf", "model.chat_format=chatml"))
    assert (second.gguf_path, second.chat_format) == ("/models/judge.gguf", None)  # another GGUF: its own template


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("curate.judge.backend=vllm", r"curate\.judge\.backend='vllm' is invalid"),
        ("curate.judge.min_score=6", r"curate\.judge\.min_score=6 is invalid: must be in \[1, 5\]"),
        ("curate.judge.max_tokens=2048", r"curate\.judge\.max_tokens=2048 is invalid"),
        ("curate.judge.base_url=gpu-box:8000", r"curate\.judge\.base_url='gpu-box:8000' is invalid"),
        ("curate.judge.response_format=xml", r"curate\.judge\.response_format='xml' is invalid"),
        ("curate.judge.prompt.user='{question} {answer}'", r"curate\.judge\.prompt\.user uses unknown placeholder \{answer\}"),
        ("curate.judge.prompt.system='{question'", r"curate\.judge\.prompt\.system is not a valid template"),
    ],
)
def test_validate_names_a_bad_judge_value(composed_cfg: Callable[..., DictConfig], override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(composed_cfg([override]))


def test_the_judge_enters_the_curate_cache_key(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    (curate_spec,) = [s for s in STAGES if s.name == "curate"]
    memo = tmp_path / "memo"

    def key(*overrides: str) -> str:
        return stage_key(curate_spec, composed_cfg(list(overrides)), REPO_ROOT, {"generate": "g", "index": "i", "chunk": "c"})

    gguf = tmp_path / "judge.gguf"
    gguf.write_bytes(b"one judge")
    second = [f"curate.judge.gguf_path={gguf}", "curate.judge.enabled=true"]
    assert judge_fingerprint(composed_cfg(), REPO_ROOT, memo) is None  # off: nothing beyond the curate block
    first_key = key(*second)
    gguf.write_bytes(b"another judge")  # the same path, another model
    assert key(*second) != first_key
    assert key("curate.judge.enabled=true") not in {first_key, key()}
    # served: the server and model name count, the local GGUF does not
    served = ["curate.judge.enabled=true", "curate.judge.backend=openai"]
    fingerprint = judge_fingerprint(composed_cfg(served), REPO_ROOT, memo)
    assert fingerprint["model"] is None and fingerprint["settings"]["base_url"] == "http://127.0.0.1:8080/v1"
    assert key(*served, "curate.judge.api_model=big") != key(*served)
    assert key(*served, "llm.api_model=big") != key(*served)  # a value the judge takes from llm.* counts too
    assert key(*served, "llm.parallel=2") == key(*served)  # speed settings do not change a verdict
    with pytest.raises(ConfigError, match=r"curate\.judge\.gguf_path='/nowhere/judge\.gguf' does not exist"):
        key("curate.judge.enabled=true", "curate.judge.gguf_path=/nowhere/judge.gguf")
