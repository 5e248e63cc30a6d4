"""Answer: each curated question is answered with RAG over the same documents.

Retrieval uses the configured retriever (BM25, dense with MMR, or their weighted RRF).
Because every question knows the chunk it came from, retrieval quality (hit@1, hit@k,
MRR) is measured for the chosen retriever and for BM25-only and dense-only.
Answers that are empty, refuse, run past ``answer.max_tokens`` or (for fact-anchored
questions) contain none of the fact's key terms are dropped or regenerated, with reasons.
With ``answer.mode=extractive`` (the default for the small embedded model) a question anchored
on a clean fact sentence takes that sentence as its answer, and only the others go to the model.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from typing import Any

import numpy as np

from runner.questions.answer_checks import debris, drop_reason, expected_answer
from runner.core.artifacts import Answer, Curate, Generate, load_chunks
from runner.core.cache import MANIFEST
from runner.retrieval.embeddings import embed_texts
from runner.questions.facts import CHARS_PER_TOKEN, comparable_terms, numbers_in, words
from runner.core.jsonl import iter_jsonl, read_jsonl, write_jsonl
from runner.llm import ChatRequest, create_llm
from runner.llm.resumable import latest_results, raise_if_too_many_failed, response_fields, run_resumable
from runner.retrieval.hybrid import HybridRetriever, retrieval_quality
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)



def build_context(ranked_chunks: list[dict[str, Any]], max_tokens: int) -> tuple[str, list[str]]:
    """Concatenate retrieved chunks, best first, within the token budget (at least one chunk)."""
    budget = max_tokens * CHARS_PER_TOKEN
    separator = "\n\n"
    parts, ids, used = [], [], 0
    for chunk in ranked_chunks:
        text = chunk["text"]
        if parts and used + len(separator) + len(text) > budget:
            break
        text = text[:budget] if not parts else text
        used += len(text) + (len(separator) if parts else 0)
        parts.append(text)
        ids.append(chunk["chunk_id"])
    return separator.join(parts), ids


def with_fact(context: tuple[str, list[str]], question: dict[str, Any], ans_cfg: Any) -> tuple[str, list[str]]:
    """Put a fact-anchored question's own evidence sentence first: small models copy what comes first."""
    if not (ans_cfg.include_fact and question.get("fact")):
        return context
    return f"Key fact: {question['fact']}\n\n{context[0]}", context[1]


_SENTENCE = re.compile(r".+?[.!?](?=\s|$)", re.DOTALL)


def complete_sentences(text: str, max_sentences: int) -> str:
    """The first complete sentences of a reply cut off by max_tokens ("" when there is none)."""
    return " ".join(s.strip() for s in _SENTENCE.findall(text.strip())[:max_sentences])


def answer_reason(
    answer: str, finish_reason: str, fact: str | None, context: str, refusals: list[re.Pattern[str]], ans_cfg: Any, hint: str | None = None
) -> str | None:
    """Why an answer is unusable, or None. ``hint`` is the span the question asks for, when known."""
    text = answer.strip()
    if len(text) < ans_cfg.min_chars:
        return "empty"
    if finish_reason == "length":
        return "truncated"
    if any(p.search(text) for p in refusals):
        return "refusal"
    if ans_cfg.grounding != "off" and set(numbers_in(text)) - set(numbers_in(context + " " + (fact or ""))):
        return "unsupported_value"  # a number the model made up
    if ans_cfg.grounding != "off" and fact and not is_grounded(text, hint or fact):
        return "ungrounded"
    return None


def is_grounded(answer: str, fact: str) -> bool:
    """An answer is grounded when it holds at least one key term (number, identifier) of its fact."""
    terms = comparable_terms(fact)
    if not terms:
        return True  # nothing checkable in the fact
    return bool(terms & comparable_terms(answer))  # sets, not substrings: "3" is not in "7311"


def messages_for(question: str, context: str, prompts: Any, topic: str) -> list[dict[str, str]]:
    messages = []
    if prompts.answer_system:
        messages.append({"role": "system", "content": prompts.answer_system.format(topic=topic)})
    messages.append({"role": "user", "content": prompts.answer_user.format(topic=topic, question=question, context=context)})
    return messages


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Write ``answers.jsonl`` (question, answer, context chunk ids, provenance) and the dropped ones."""
    started = time.perf_counter()
    questions = read_jsonl(ctx.inputs["curate"] / Curate.CURATED)
    chunks = load_chunks(ctx.inputs["chunk"])
    by_position = chunks  # the index stores chunks in this order

    retriever = HybridRetriever(ctx.inputs["index"], cfg.retriever, lambda texts: embed_texts(texts, cfg.index, ctx.root, show_progress=False))
    k = cfg.retriever.k
    metrics: dict[str, float] = {"questions": len(questions)}
    contexts: list[tuple[str, list[str]]] = []
    if questions:
        depth = max(k, cfg.retriever.fetch_k)
        rankings = retriever.rankings([q["question"] for q in questions], depth)
        position = {cid: i for i, cid in enumerate(retriever.chunk_ids)}
        targets = [position[q["chunk_id"]] for q in questions]
        for kind, ranked in rankings.items():
            for name, value in retrieval_quality([r[:k] for r in ranked], targets, k).items():
                metrics[f"retrieval/{kind}/{name}"] = value
        chosen = rankings[cfg.retriever.kind]
        contexts = [
            with_fact(build_context([by_position[i] for i in ranked[:k]], cfg.retriever.context_max_tokens), q, cfg.answer)
            for q, ranked in zip(questions, chosen)
        ]

    extractive = [i for i, q in enumerate(questions) if answers_from_fact(q, cfg.answer)]
    unanswered = [i for i, q in enumerate(questions) if excerpt_dropped(q, cfg.answer)]
    rag = sorted(set(range(len(questions))) - set(extractive) - set(unanswered))
    results = generate_answers(cfg, ctx, [questions[i] for i in rag], [contexts[i] for i in rag])
    for i in unanswered:
        results[questions[i]["qid"]] = {"answer": questions[i]["fact"], "reason": "excerpt_fact", "attempts": 0, "source": "fact"}
    # a template question asks about the identifier its sentence explains: nothing to check
    to_check = [questions[i] for i in extractive if questions[i].get("strategy") != "template"]
    checks = check_extractive(cfg, ctx, to_check) if cfg.answer.check else {}
    for i in extractive:
        qid = questions[i]["qid"]
        span, outcome = checks.get(qid, (None, None))
        reason = {"in_question": "answer_in_question", "error": "error"}.get(outcome)
        results[qid] = {"answer": questions[i]["fact"], "reason": reason, "attempts": 0, "source": "fact", "span": span}
    kept, dropped = [], []
    typed = matched = 0
    for q, (context_text, context_ids) in zip(questions, contexts):
        result = results[q["qid"]]
        record = {
            **q, "answer": result["answer"].strip(), "answer_source": result.get("source", "rag"),
            "context_chunk_ids": context_ids, "attempts": result["attempts"],
        }
        if result.get("span") is not None:
            record["checked_span"] = result["span"]  # what the model found in the fact for this question
        reason = result["reason"]
        if not reason:
            asked_for = expected_answer(record["question"])
            reason = drop_reason(record["question"], record["answer"])
            typed += asked_for is not None
            matched += asked_for is not None and not (reason or "").startswith("answer_type:")
        if reason:
            dropped.append({**record, "reason": reason})
        else:
            kept.append(record)
    write_jsonl(ctx.work_dir / Answer.ANSWERS, kept)
    write_jsonl(ctx.work_dir / Answer.DROPPED, dropped)
    reasons = Counter(d["reason"] for d in dropped)
    # grounding measures the model's answers; an extractive answer is its fact by construction
    fact_questions = [questions[i] for i in rag if questions[i].get("fact")]
    grounded = sum(is_grounded(results[q["qid"]]["answer"], q.get("answer_hint") or q["fact"]) for q in fact_questions)
    lengths = [len(r["answer"]) for r in kept]
    metrics.update(
        {
            "answered": len(kept),
            "kept_share": len(kept) / max(1, len(questions)),
            "extractive_answers": len(extractive),
            "seconds_per_kept_example": seconds_spent(ctx, time.perf_counter() - started) / max(1, len(kept)),
            **check_metrics(checks),
            "chunk_coverage": len({r["chunk_id"] for r in kept}) / max(1, len(asked_chunks(ctx))),
            "grounding_rate": grounded / len(fact_questions) if fact_questions else float("nan"),
            "mean_answer_chars": float(np.mean(lengths)) if lengths else 0.0,
            # quality proxies: typed questions ("which command", "how many", ...) whose answer holds that type,
            # and kept answers with PDF debris (ligatures, split words; table syntax is dropped above)
            "check/type_match_share": matched / typed if typed else float("nan"),
            "debris_share": sum(debris(r["answer"]) is not None for r in kept) / max(1, len(kept)),
            **{f"dropped/{reason}": count for reason, count in reasons.items()},
        }
    )
    log.info("answers kept %d of %d; dropped %s", len(kept), len(questions), dict(reasons))
    return StageResult(metrics=metrics, artifacts=[Answer.ANSWERS, Answer.DROPPED])


def _status_record(index: int, response: Any) -> dict[str, Any]:
    """What ``run_resumable`` appends for one answer or check request."""
    return {"status": "ok" if response.ok else "error", **response_fields(response)}


def answers_from_fact(question: dict[str, Any], ans_cfg: Any) -> bool:
    """With ``answer.mode=extractive`` a question anchored on a clean fact sentence is answered by that
    sentence: a small model's RAG answer is often wrong, the sentence never is. Other questions
    (free strategy, or a chunk excerpt as the fact) are answered with RAG."""
    return ans_cfg.mode == "extractive" and bool(question.get("fact")) and bool(question.get("fact_is_sentence"))


def excerpt_dropped(question: dict[str, Any], ans_cfg: Any) -> bool:
    """A fact-anchored question on a chunk excerpt, which ``answer.excerpt_facts=drop`` leaves unanswered."""
    return ans_cfg.mode == "extractive" and ans_cfg.excerpt_facts == "drop" and bool(question.get("fact")) and not question.get("fact_is_sentence")


CHECK_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 120}},
    "required": ["answer"],
}


def check_messages(question: str, fact: str, prompts: Any, topic: str) -> list[dict[str, str]]:
    """System prompt, the few-shot examples that carry an answer, then the fact and the question."""
    messages = [{"role": "system", "content": prompts.check_system.format(topic=topic)}] if prompts.check_system else []
    for example in prompts.fact_examples:
        if example.get("answer"):
            messages.append({"role": "user", "content": prompts.check_user.format(topic=topic, fact=example["fact"], question=example["question"])})
            messages.append({"role": "assistant", "content": json.dumps({"answer": example["answer"]})})
    messages.append({"role": "user", "content": prompts.check_user.format(topic=topic, fact=fact, question=question)})
    return messages


def check_outcome(span: str, question: str, fact: str) -> str:
    """What the round trip says of an extractive answer.

    ``in_question``: the model found only words the question already holds ("What is the QSR-W510's
    name?" -> "QSR-W510"): the question restates its fact instead of asking something; dropped.
    ``not_in_fact``: what it wrote is not in the fact. Measured on the sample, SmolLM2-135M often
    garbles a copy even for good questions, so this is counted but does not drop.
    ``found``: the answer is in the fact and adds something to the question."""
    found = words(span)
    if not found or len(found & words(fact)) < 0.8 * len(found):
        return "not_in_fact"
    if not found - words(question):
        return "in_question"
    return "found"


def check_extractive(cfg: Any, ctx: StageContext, questions: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Round trip for extractive answers: the model copies the words of the fact that answer the
    question; {qid: (span, outcome)} with the outcome of ``check_outcome`` or "error"."""
    if not questions:
        return {}
    ids = [f"{q['qid']}-check" for q in questions]
    requests = [
        ChatRequest(check_messages(q["question"], q["fact"], cfg.prompts, cfg.generate.topic), max_tokens=cfg.answer.max_tokens, temperature=0.0, json_schema=CHECK_SCHEMA, seed=cfg.llm.seed)
        for q in questions
    ]
    items_path = ctx.work_dir / Answer.ITEMS
    llm = create_llm(cfg.llm, cfg.model, ctx.root)
    try:
        run_resumable(llm, ids, requests, items_path, _status_record, desc="answer check")
    finally:
        llm.close()
    latest = latest_results(items_path)
    checks = {}
    for q, item_id in zip(questions, ids):
        record = latest[item_id]
        if record["status"] == "error":
            checks[q["qid"]] = (record["raw"], "error")
            continue
        span = parse_check(record["raw"])
        checks[q["qid"]] = (span, check_outcome(span, q["question"], q["fact"]))
    errors = [latest[i].get("error") or "unknown" for i in ids if latest[i]["status"] == "error"]
    raise_if_too_many_failed(errors, len(ids), cfg.llm.max_error_share, "answer check")
    return checks


def parse_check(raw: str) -> str:
    try:
        value = json.loads(raw).get("answer", "")
    except (json.JSONDecodeError, AttributeError):
        return ""
    return str(value).strip()


def check_metrics(checks: dict[str, tuple[str, str]]) -> dict[str, float]:
    outcomes = Counter(outcome for _, outcome in checks.values())
    return {f"check/{outcome}_share": outcomes[outcome] / len(checks) for outcome in ("found", "in_question", "not_in_fact", "error")} if checks else {}


def seconds_spent(ctx: StageContext, answer_s: float) -> float:
    """Wall time of generate + curate (from their manifests, so also when they were cached) + this stage."""
    upstream = [json.loads((ctx.inputs[name] / MANIFEST).read_text()).get("duration_s", 0.0) for name in ("generate", "curate")]
    return sum(upstream) + answer_s


def asked_chunks(ctx: StageContext) -> set[str]:
    """Chunks the generate stage asked about (the denominator of chunk coverage)."""
    return {r["chunk_id"] for r in iter_jsonl(ctx.inputs["generate"] / Generate.ITEMS)}


def judge_answer(record: dict[str, Any], question: dict[str, Any], context: str, refusals: list[re.Pattern[str]], ans: Any) -> tuple[str, str | None]:
    """(answer, drop reason or None) for one reply, cut to its first ``answer.keep_sentences`` complete
    sentences; a reply cut off by max_tokens is kept when those sentences pass on their own."""
    if record["status"] == "error":
        return record["raw"], "error"
    fact, hint = question.get("fact"), question.get("answer_hint")
    answer = complete_sentences(record["raw"], ans.keep_sentences) or record["raw"].strip()
    finish = "stop" if answer != record["raw"].strip() else record["finish_reason"]
    return answer, answer_reason(answer, finish, fact, context, refusals, ans, hint)


def generate_answers(cfg: Any, ctx: StageContext, questions: list[dict[str, Any]], contexts: list[tuple[str, list[str]]]) -> dict[str, dict[str, Any]]:
    """Answer every question; regenerate ungrounded ones up to the configured attempts."""
    ans = cfg.answer
    refusals = [re.compile(p, re.IGNORECASE) for p in ans.refusal_patterns]
    attempts = 1 + (ans.regenerate_attempts if ans.grounding == "regenerate" else 0)
    items_path = ctx.work_dir / Answer.ITEMS
    results: dict[str, dict[str, Any]] = {}
    pending = list(range(len(questions)))
    if not questions:
        return results
    llm = create_llm(cfg.llm, cfg.model, ctx.root)
    try:
        for attempt in range(attempts):
            ids = [f"{questions[i]['qid']}-a{attempt}" for i in pending]
            requests = [
                ChatRequest(
                    messages_for(questions[i]["question"], contexts[i][0], cfg.prompts, cfg.generate.topic),
                    max_tokens=ans.max_tokens,
                    temperature=ans.temperature if attempt == 0 else max(ans.temperature, 0.7),
                    stop=list(ans.stop),
                    seed=cfg.llm.seed + attempt,
                )
                for i in pending
            ]
            run_resumable(
                llm, ids, requests, items_path,
                _status_record,
                desc=f"answer (attempt {attempt + 1})",
            )
            latest = latest_results(items_path)
            retry = []
            for i, item_id in zip(pending, ids):
                record = latest[item_id]
                answer, reason = judge_answer(record, questions[i], contexts[i][0], refusals, ans)
                results[questions[i]["qid"]] = {"answer": answer, "reason": reason, "attempts": attempt + 1}
                if reason in ("ungrounded", "unsupported_value"):
                    retry.append(i)
            pending = retry
            if not pending:
                break
    finally:
        llm.close()
    latest = latest_results(items_path)
    errors = [latest[f"{qid}-a{r['attempts'] - 1}"].get("error") or "unknown" for qid, r in results.items() if r["reason"] == "error"]
    raise_if_too_many_failed(errors, len(results), cfg.llm.max_error_share, "answer")
    return results
