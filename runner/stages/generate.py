"""Generate: a local LLM writes questions for every chunk (or a seeded sample of chunks).

Strategies (``generate.strategy``):
- ``free``: the original per-chunk prompt, asking for N questions as constrained JSON.
- ``fact_anchored``: salient fact sentences are picked from each chunk deterministically and
  the model writes one question per fact (few-shot, constrained JSON); the fact is kept as
  the question's evidence. Small models do far better with this narrow task. Identifiers that
  one sentence explains (a key's default, an error code, an environment variable) also get a
  fixed question (``generate.templates``, runner/questions/templates.py).

Each finished request is appended to ``items.jsonl`` at once, so a crash or Ctrl-C loses
only requests in flight and a rerun continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from runner.core.artifacts import Generate, load_chunks
from runner.questions.fact_selection import select_facts
from runner.questions.facts import answer_span
from runner.core.jsonl import write_jsonl
from runner.llm import ChatRequest, ChatResponse, create_llm
from runner.llm.base import LLM, questions_schema
from runner.llm.resumable import latest_results, raise_if_too_many_failed, response_fields, run_resumable
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)

SAMPLE_SIZE = 20
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 10, "maxLength": 200}},
    "required": ["question"],
}


@dataclass
class WorkItem:
    """One request: a chunk (free) or one candidate for one fact (fact_anchored)."""

    item_id: str
    chunk: dict[str, Any]
    request: ChatRequest
    fact: Optional[str] = None  # fact_anchored: the fact's text
    fact_record: Optional[dict[str, Any]] = None  # and its record (runner/questions/fact_selection.py)


def select_chunks(chunks: list[dict[str, Any]], max_chunks: Optional[int], seed: int) -> list[dict[str, Any]]:
    """All chunks by default; a seeded sample (kept in reading order) when max_chunks is set."""
    if max_chunks is None or max_chunks >= len(chunks):
        return chunks
    picked = sorted(random.Random(seed).sample(range(len(chunks)), max_chunks))
    return [chunks[i] for i in picked]


def questions_for(chunk_text: str, gen_cfg: Any) -> int:
    if gen_cfg.chars_per_question:
        return max(1, math.ceil(len(chunk_text) / gen_cfg.chars_per_question))
    return gen_cfg.questions_per_chunk


def _format(template: str, **values: Any) -> str:
    return template.format(**values)


def build_free_items(chunks: list[dict[str, Any]], cfg: Any) -> list[WorkItem]:
    prompts, topic = cfg.prompts, cfg.generate.topic
    items = []
    for chunk in chunks:
        n = questions_for(chunk["text"], cfg.generate)
        messages = []
        if prompts.question_system:
            messages.append({"role": "system", "content": _format(prompts.question_system, topic=topic)})
        messages.append({"role": "user", "content": _format(prompts.question_user, topic=topic, chunk=chunk["text"], n=n)})
        request = ChatRequest(messages, max_tokens=cfg.llm.max_tokens * n, json_schema=questions_schema(n))
        items.append(WorkItem(chunk["chunk_id"], chunk, request))
    return items


def fact_messages(fact: str, answer: str, prompts: Any, topic: str) -> list[dict[str, str]]:
    """System prompt, few-shot turns from config, then the fact and the span to ask about."""
    messages = []
    if prompts.fact_system:
        messages.append({"role": "system", "content": _format(prompts.fact_system, topic=topic)})
    for example in prompts.fact_examples:
        example_answer = example.get("answer") or answer_span(example["fact"]) or example["fact"]
        messages.append({"role": "user", "content": _format(prompts.fact_user, topic=topic, fact=example["fact"], answer=example_answer, context="")})
        messages.append({"role": "assistant", "content": json.dumps({"question": example["question"]})})
    messages.append({"role": "user", "content": _format(prompts.fact_user, topic=topic, fact=fact, answer=answer, context="")})
    return messages


def build_fact_items(facts: list[dict[str, Any]], chunks_by_id: dict[str, dict[str, Any]], cfg: Any) -> list[WorkItem]:
    """``generate.candidates_per_fact`` question requests for every prose fact (records have fixed questions)."""
    gen = cfg.generate
    items = []
    per_chunk: dict[str, int] = {}
    for fact in facts:
        if fact["kind"] == "record":
            continue
        index = per_chunk.get(fact["chunk_id"], 0)
        per_chunk[fact["chunk_id"]] = index + 1
        for candidate in range(gen.candidates_per_fact):
            # the first candidate uses the configured temperature; extra ones explore
            temperature = None if candidate == 0 else max(cfg.llm.temperature, 0.7)
            request = ChatRequest(
                fact_messages(fact["text"], fact["answer_hint"] or fact["text"], cfg.prompts, gen.topic),
                max_tokens=cfg.llm.max_tokens,
                temperature=temperature,
                json_schema=QUESTION_SCHEMA,
                seed=gen.seed + candidate,
            )
            items.append(WorkItem(f"{fact['chunk_id']}-f{index}-k{candidate}", chunks_by_id[fact["chunk_id"]], request, fact["text"], fact))
    return items


_NUMBERING = re.compile(r"^\s*(?:[-*\u2022]|\(?\d+[.):]|q\d+[.:)]|question\s*\d*[.:)])\s*", re.IGNORECASE)


def clean_question(text: str) -> str:
    text = _NUMBERING.sub("", text.strip())
    text = text.strip().strip('"').strip("'").strip("*").strip()
    return re.sub(r"\s+", " ", text)


def parse_questions(raw: str) -> list[str]:
    """Questions from a model reply: JSON first (object or list), then a line-based fallback."""
    raw = raw.strip()
    candidates: list[str] = []
    for blob in (raw, _first_json_block(raw)):
        if not blob:
            continue
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            value = data.get("questions", data.get("question"))
            data = value if isinstance(value, list) else [value]
        if isinstance(data, list):
            candidates = [str(q) for q in data if isinstance(q, (str, int, float)) and str(q).strip()]
            break
    if not candidates:
        # a line may close with quotes or bold markers after its "?" ('"What ...?"', '**What ...?**')
        candidates = [line for line in raw.splitlines() if line.strip().rstrip("\"'*").endswith("?")]
    cleaned = [clean_question(q) for q in candidates]
    return [q for q in dict.fromkeys(cleaned) if q]


def _first_json_block(text: str) -> Optional[str]:
    match = re.search(r"[\[{].*[\]}]", text, re.DOTALL)
    return match.group(0) if match else None


def _item_record(item: WorkItem, response: ChatResponse, strategy: str) -> dict[str, Any]:
    questions = parse_questions(response.text) if response.ok else []
    status = "error" if not response.ok else ("ok" if questions else "no_question")
    return {
        "chunk_id": item.chunk["chunk_id"],
        "strategy": strategy,
        "fact": item.fact,
        "questions": questions,
        "status": status,
        **response_fields(response),
    }


def run_items(llm: LLM, items: list[WorkItem], items_path: Path, strategy: str) -> dict[str, float]:
    return run_resumable(
        llm,
        [item.item_id for item in items],
        [item.request for item in items],
        items_path,
        lambda index, response: _item_record(items[index], response, strategy),
        desc=f"generate ({strategy})",
    )


def collect_instructions(items: list[WorkItem], items_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Flatten item results (in item order, one result per item) into question records."""
    by_id = latest_results(items_path)
    records, questions = [], []
    for item in items:
        record = by_id[item.item_id]
        records.append(record)
        fact = item.fact_record or {}
        for j, question in enumerate(record["questions"]):
            questions.append(
                {
                    "qid": f"{item.item_id}-q{j}",
                    "question": question,
                    "chunk_id": item.chunk["chunk_id"],
                    "doc_id": item.chunk["doc_id"],
                    "source": item.chunk["source"],
                    "page": item.chunk["page"],
                    "heading": fact.get("heading") or item.chunk.get("heading") or "",
                    "fact": fact.get("text"),
                    "fact_id": fact.get("fact_id"),
                    "answer_hint": fact.get("answer_hint"),
                    "fact_is_sentence": fact.get("kind") == "sentence",
                    "strategy": record["strategy"],
                }
            )
    return records, questions


def build_items(chunks: list[dict[str, Any]], cfg: Any, facts: Optional[list[dict[str, Any]]] = None) -> list[WorkItem]:
    """The model requests: per chunk (free) or per prose fact and candidate (fact_anchored; the facts
    of ``chunks`` unless given)."""
    if cfg.generate.strategy == "free":
        return build_free_items(chunks, cfg)
    if facts is None:
        facts, _ = select_facts(chunks, chunks, cfg)
    return build_fact_items(facts, {c["chunk_id"]: c for c in chunks}, cfg)


def template_records(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixed questions with ids: the chunk's, then t0, t1, ... in order."""
    counts: dict[str, int] = {}
    records = []
    for question in templates:
        n = counts.get(question["chunk_id"], 0)
        counts[question["chunk_id"]] = n + 1
        records.append({"qid": f"{question['chunk_id']}-t{n}", **question})
    return records


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Write ``instructions.jsonl``: questions with their chunk, document, page and fact."""
    corpus = load_chunks(ctx.inputs["chunk"])
    chunks = select_chunks(corpus, cfg.generate.max_chunks, cfg.generate.seed)
    facts, templates = select_facts(chunks, corpus, cfg) if cfg.generate.strategy == "fact_anchored" else ([], [])
    write_jsonl(ctx.work_dir / Generate.FACTS, facts)
    items = build_items(chunks, cfg, facts)
    items_path = ctx.work_dir / Generate.ITEMS
    llm = create_llm(cfg.llm, cfg.model, ctx.root)
    try:
        throughput = run_items(llm, items, items_path, cfg.generate.strategy)
    finally:
        llm.close()
    records, questions = collect_instructions(items, items_path)
    errors = [r["error"] or "unknown" for r in records if r["status"] == "error"]
    raise_if_too_many_failed(errors, len(records), cfg.llm.max_error_share, "question")
    templated = template_records(templates)
    questions += templated
    write_jsonl(ctx.work_dir / Generate.INSTRUCTIONS, questions)
    for q in random.Random(0).sample(questions, min(SAMPLE_SIZE, len(questions))):
        log.info("  sample question [%s p%s]: %s", q["chunk_id"], q["page"], q["question"])
    metrics = {
        **generation_metrics(records, questions, chunks, throughput),
        "template_questions": len(templated),
        "facts": len(facts),
        **{f"facts/{kind}": sum(f["kind"] == kind for f in facts) for kind in ("sentence", "record", "excerpt")},
    }
    return StageResult(metrics=metrics, artifacts=[Generate.INSTRUCTIONS, Generate.ITEMS, Generate.FACTS])


def generation_metrics(records: list[dict[str, Any]], questions: list[dict[str, Any]], chunks: list[dict[str, Any]], throughput: dict[str, float]) -> dict[str, float]:
    covered = {q["chunk_id"] for q in questions}
    n = max(1, len(records))
    wall = throughput["wall_s"]
    metrics = {
        "chunks": len(chunks),
        "requests": len(records),
        "questions": len(questions),
        "chunk_coverage": len(covered) / max(1, len(chunks)),
        "responses_without_question": sum(r["status"] == "no_question" for r in records),
        "errors": sum(r["status"] == "error" for r in records),
        "truncated": sum(r["finish_reason"] == "length" for r in records),
        "mean_completion_tokens": sum(r["completion_tokens"] for r in records) / n,
        "mean_prompt_tokens": sum(r["prompt_tokens"] for r in records) / n,
    }
    if throughput["requests"]:
        metrics["tokens_per_s"] = throughput["completion_tokens"] / max(wall, 1e-9)
        metrics["questions_per_min"] = 60.0 * len(questions) * throughput["requests"] / len(records) / max(wall, 1e-9)
    return metrics
