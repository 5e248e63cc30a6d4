"""The curate stage's optional judge pass (``curate.judge``): a model scores each question against its fact.

The judge sees the question, the fact that will answer it (its chunk when it has none) and its section,
and answers constrained JSON: a short reason, then a score from 1 to 5 (the reason comes first so the
score follows from it). A question below ``curate.judge.min_score`` is dropped as ``judge_rejected``
with the judge's score and reason. Requests go through ``run_resumable``: a killed stage resumes from
its items file. A request that fails, or a reply that is not a verdict, drops its question as
``judge_error`` (an unjudged question is not vetted); more than ``llm.max_error_share`` of them stops
the stage, and a rerun retries only those.

The judge is built with ``create_llm`` from the pipeline's ``llm``/``model`` blocks with the
``curate.judge`` values laid over them, so either backend works: a second local GGUF or any
OpenAI-compatible server.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.llm import ChatRequest, ChatResponse, create_llm
from runner.llm.resumable import (
    latest_results,
    raise_if_too_many_failed,
    response_fields,
    run_resumable,
)

log = logging.getLogger(__name__)

REASON_CHARS = 160
SCORES = (1, 2, 3, 4, 5)
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": REASON_CHARS},
        "score": {"type": "integer", "enum": list(SCORES)},
    },
    "required": ["reason", "score"],
}

# curate.judge values that, when set, replace the pipeline's llm.* ones
_LLM_OVERRIDES = ("backend", "base_url", "api_model", "api_key_env", "response_format")
# what shapes the judge's replies (speed and retry settings do not)
_OUTPUT_SETTINGS = ("backend", "n_ctx", "top_p", "seed", "base_url", "api_model", "response_format")
# the judge's code: a change reruns curate only where the judge is on
_JUDGE_CODE = ("runner.questions.judge", "runner.llm.base", "runner.llm.llama_cpp", "runner.llm.openai_compat", "runner.llm.resumable")


def judge_model_configs(cfg: Any) -> tuple[DictConfig, DictConfig]:
    """The ``llm`` and ``model`` configs ``create_llm`` takes, for the judge: the pipeline's own with
    the ``curate.judge`` values that are set laid over them, replies of ``max_tokens`` at temperature 0."""
    judge = cfg.curate.judge
    llm = OmegaConf.to_container(cfg.llm, resolve=True)
    llm.update({key: _plain(judge[key]) for key in _LLM_OVERRIDES if judge[key] is not None})
    llm.update({"max_tokens": judge.max_tokens, "temperature": 0.0})
    if judge.gguf_path is None:  # the pipeline's own model judges, in its own chat format unless one is given
        model = {"name": cfg.model.name, "gguf_path": cfg.model.gguf_path, "chat_format": judge.chat_format or cfg.model.chat_format}
    else:
        model = {"name": "judge", "gguf_path": judge.gguf_path, "chat_format": judge.chat_format}
    return OmegaConf.create(llm), OmegaConf.create({**model, "hf_path": None})


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def judge_fingerprint(cfg: Any, root: Path, memo_dir: Path) -> Any:
    """What the judge's verdicts depend on beyond ``curate.*`` (for the curate stage's cache key): the
    effective server settings, the judge GGUF's identity and the judge's code; None when it is off."""
    if not cfg.curate.judge.enabled:
        return None
    from runner.core.cache import hash_source
    from runner.core.models import model_identity, resolve_gguf

    llm, model = judge_model_configs(cfg)
    identity = None
    if llm.backend == "llama_cpp":
        key = "curate.judge.gguf_path" if cfg.curate.judge.gguf_path is not None else "model.gguf_path"
        resolve_gguf(model.gguf_path, root, key=key)  # a missing file is named by its own key
        identity = model_identity(model.gguf_path, root, memo_dir)
    return {
        "settings": {key: _plain(llm[key]) for key in _OUTPUT_SETTINGS},
        "chat_format": model.chat_format,
        "model": identity,
        "code": [hash_source(importlib.import_module(name).__file__) for name in _JUDGE_CODE],
    }


def heading_of(question: dict[str, Any], chunk: dict[str, Any]) -> str:
    path = question.get("heading_path") or chunk.get("heading_path") or []
    return " > ".join(path) or question.get("heading") or chunk.get("heading") or "(none)"


def judge_messages(question: dict[str, Any], chunk: dict[str, Any], prompt: Any, topic: str) -> list[dict[str, str]]:
    """System and user message for one question; the evidence is its fact, else its whole chunk."""
    values = {"topic": topic, "question": question["question"], "fact": question.get("fact") or chunk["text"], "heading": heading_of(question, chunk)}
    messages = [{"role": "system", "content": prompt.system.format(**values)}] if prompt.system else []
    return messages + [{"role": "user", "content": prompt.user.format(**values)}]


def parse_verdict(raw: str) -> tuple[int, str]:
    """(score, reason) from a judge reply; ValueError saying what is wrong with it.

    Lenient where a server ignores the schema: JSON inside a code fence or prose, a score written
    as "4" or 4.0. A score outside 1-5 or no score at all is no verdict."""
    reply = _json_object(raw)
    if reply is None:
        raise ValueError(f"not a JSON object: {raw[:120]!r}")
    value = reply.get("score")
    try:
        if isinstance(value, bool):
            raise TypeError
        score = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"no numeric score: {raw[:120]!r}") from None
    if score not in SCORES:
        raise ValueError(f"score {value!r} is not one of 1-5")
    return int(score), str(reply.get("reason") or "").strip()[:REASON_CHARS]


def _json_object(raw: str) -> dict[str, Any] | None:
    """The reply as a JSON object, or the first {...} inside it; None when there is none."""
    for text in (raw, *re.findall(r"\{.*\}", raw, re.DOTALL)):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _verdict_record(response: ChatResponse) -> dict[str, Any]:
    """What ``run_resumable`` appends for one judge request: a verdict, or an error retried on a rerun."""
    record: dict[str, Any] = {"status": "error", **response_fields(response)}
    if response.ok:
        try:
            score, reason = parse_verdict(response.text)
        except ValueError as exc:
            record["error"] = f"unreadable judge reply ({exc})"
        else:
            record.update({"status": "ok", "score": score, "reason": reason})
    return record


def judge_questions(
    questions: list[dict[str, Any]], chunks_by_id: dict[str, dict[str, Any]], cfg: Any, root: Path, items_path: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """Score each question; (kept with their ``judge_score``, dropped with the reason, metrics ``judge/*``)."""
    judge = cfg.curate.judge
    if not questions:
        return apply_verdicts([], [], judge.min_score)
    ids = [q["qid"] for q in questions]
    requests = [
        ChatRequest(
            judge_messages(q, chunks_by_id[q["chunk_id"]], judge.prompt, cfg.generate.topic),
            max_tokens=judge.max_tokens, temperature=0.0, json_schema=JUDGE_SCHEMA, seed=cfg.llm.seed,
        )
        for q in questions
    ]
    llm_cfg, model_cfg = judge_model_configs(cfg)
    llm = create_llm(llm_cfg, model_cfg, root)
    try:
        run_resumable(llm, ids, requests, items_path, lambda index, response: _verdict_record(response), desc="curate judge")
    finally:
        llm.close()
    latest = latest_results(items_path)
    raise_if_too_many_failed([latest[i]["error"] for i in ids if latest[i]["status"] == "error"], len(ids), cfg.llm.max_error_share, "curate judge")
    kept, dropped, metrics = apply_verdicts(questions, [latest[i] for i in ids], judge.min_score)
    log.info("judge (%s) kept %d of %d questions (min_score %d)", llm_cfg.backend, len(kept), len(questions), judge.min_score)
    return kept, dropped, metrics


def apply_verdicts(
    questions: list[dict[str, Any]], records: list[dict[str, Any]], min_score: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """Keep each question whose verdict (its items record) reaches ``min_score``; drop the others
    as judge_rejected (with score and reason) or judge_error (no verdict)."""
    kept, dropped, scores = [], [], []
    for q, record in zip(questions, records, strict=True):
        if record["status"] == "error":
            dropped.append({**q, "reason": "judge_error", "judge_error": record["error"]})
            continue
        scores.append(record["score"])
        if record["score"] < min_score:
            dropped.append({**q, "reason": "judge_rejected", "judge_score": record["score"], "judge_reason": record["reason"]})
        else:
            kept.append({**q, "judge_score": record["score"]})
    metrics = {
        "judge/judged": len(scores),
        "judge/rejected": len(scores) - len(kept),
        "judge/errors": len(questions) - len(scores),
        "judge/mean_score": sum(scores) / len(scores) if scores else float("nan"),
    }
    return kept, dropped, metrics
