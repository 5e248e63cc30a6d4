"""Which facts of the documents are asked about and trained (the generate stage's first step).

Per chunk, in this order:
- records of reference layouts (option tables, keyword lists: runner/documents/structure.py) become facts whose
  answer sentence is built from the record, each with its fixed questions; their lines are not read as
  prose;
- the most checkable prose sentences (runner/questions/facts.py: complete on their own, or joined with the
  sentence they lean on) become facts the model writes questions about;
- a sentence that a template question explains (a key's default, an error code: runner/questions/templates.py)
  is a fact too, selected or not, with its fixed question.
A fact keeps its chunk, page and the section heading in force where it stands (a heading that starts
mid-chunk is its own); the same sentence reached through two overlapping chunks is one fact.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Iterable

from runner.documents.headings import heading_at
from runner.questions.facts import answer_span, clean_sentences, extract_facts, fallback_facts, is_readable_text
from runner.documents.structure import KINDS as STRUCTURE_KINDS
from runner.documents.structure import consumed_lines, structured_facts, unambiguous
from runner.questions.templates import template_questions

EXCERPT_CHARS = 320


def fact_id(text: str) -> str:
    return "f" + hashlib.sha256(text.encode()).hexdigest()[:12]


def facts_per_chunk(text: str, gen_cfg: Any) -> int:
    """ceil(chars / generate.chars_per_question), at most generate.max_facts_per_chunk."""
    wanted = math.ceil(len(text) / gen_cfg.chars_per_question) if gen_cfg.chars_per_question else gen_cfg.questions_per_chunk
    return max(1, min(gen_cfg.max_facts_per_chunk, wanted))


def position_in(text: str, chunk_text: str) -> int:
    """Where ``text`` (whitespace normalized, as facts are) starts in ``chunk_text``; -1 when it is not there."""
    found = chunk_text.find(text)
    if found >= 0:
        return found
    words = text[:80].split()[:8]
    match = re.search(r"\s+".join(re.escape(w) for w in words), chunk_text) if words else None
    return match.start() if match else -1


def _fact(text: str, kind: str, chunk: dict[str, Any], position: int | None = None, **extra: Any) -> dict[str, Any]:
    """A fact with its chunk, page and the section heading in force where it stands in the chunk."""
    where = position_in(text, chunk["text"]) if position is None else position
    return {
        "fact_id": fact_id(text),
        "text": text,
        "kind": kind,  # sentence | record | excerpt
        "chunk_id": chunk["chunk_id"],
        "doc_id": chunk["doc_id"],
        "source": chunk["source"],
        "page": chunk["page"],
        "heading": heading_at(chunk, where) if where >= 0 else chunk.get("heading") or "",
        **extra,
    }


def template_question(fact: dict[str, Any], question: str, kind: str, identifier: str) -> dict[str, Any]:
    """A fixed question in the generate stage's question format (answered by its fact)."""
    return {
        "question": question,
        "chunk_id": fact["chunk_id"],
        "doc_id": fact["doc_id"],
        "source": fact["source"],
        "page": fact["page"],
        "heading": fact["heading"],
        "fact": fact["text"],
        "fact_id": fact["fact_id"],
        "answer_hint": identifier,
        "fact_is_sentence": True,
        "strategy": "template",
        "template": kind,
    }


def _prose(chunk: dict[str, Any], topic: str, read_records: bool) -> str:
    """The chunk's text without the lines read as reference records."""
    if not read_records:
        return chunk["text"]
    skipped = consumed_lines(chunk["text"], chunk.get("heading") or "", topic)
    return "\n".join(line for i, line in enumerate(chunk["text"].splitlines()) if i not in skipped)


def _record_facts(chunks: Iterable[dict[str, Any]], topic: str, kinds: set[str]) -> list[tuple[dict[str, Any], Any]]:
    """(chunk, structured fact) for the questions no other record answers differently, each record once
    (overlapping chunks read the same record twice: the first chunk keeps it)."""
    found = [(chunk, fact) for chunk in chunks for fact in structured_facts(chunk["text"], chunk.get("heading") or "", topic, kinds)]
    safe = {(fact.sentence, fact.source_text): fact for fact in unambiguous(fact for _, fact in found)}
    kept = []
    for chunk, fact in found:
        key = (fact.sentence, fact.source_text)
        if key in safe:
            kept.append((chunk, safe.pop(key)))
    return kept


def select_facts(chunks: list[dict[str, Any]], corpus: list[dict[str, Any]], cfg: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(facts, template questions) for the selected ``chunks``; ambiguity is judged over the whole ``corpus``."""
    gen = cfg.generate
    topic = gen.topic
    kinds = set(gen.templates)
    record_kinds = kinds & set(STRUCTURE_KINDS)
    facts: dict[str, dict[str, Any]] = {}
    questions: list[dict[str, Any]] = []

    def add(fact: dict[str, Any]) -> dict[str, Any]:
        return facts.setdefault(fact["text"], fact)

    selected_ids = {c["chunk_id"] for c in chunks}
    for chunk, record in _record_facts(corpus, topic, record_kinds) if record_kinds else []:
        if chunk["chunk_id"] not in selected_ids:
            continue
        line_start = sum(len(line) + 1 for line in chunk["text"].splitlines()[: record.first_line])
        fact = add(_fact(record.sentence, "record", chunk, line_start, answer_hint=record.name, source_text=record.source_text))
        questions += [template_question(fact, question, kind, record.name) for kind, question in record.questions]

    for chunk in chunks:
        prose = _prose(chunk, topic, bool(record_kinds))
        n = facts_per_chunk(prose, gen)
        chosen = extract_facts(prose, n)
        has_records = any(f["chunk_id"] == chunk["chunk_id"] for f in facts.values())
        if not chosen and not has_records:
            chosen = fallback_facts(prose, n)
            if not chosen and prose.strip() and is_readable_text(prose.strip()):
                # a chunk with no clean sentence at all still gets asked about, with an excerpt as its "fact"
                add(_fact(prose.strip()[:EXCERPT_CHARS], "excerpt", chunk, answer_hint=None))
        for found in chosen:
            add(_fact(found.text, "sentence", chunk, answer_hint=answer_span(found.text)))

    sentence_kinds = kinds - set(STRUCTURE_KINDS) | (kinds & {"env_var"})
    if sentence_kinds:
        corpus_sentences = [(chunk, sentence) for chunk in corpus for _, sentence in clean_sentences(_prose(chunk, topic, bool(record_kinds)))]
        headings = {sentence: heading_at(chunk, max(0, position_in(sentence, chunk["text"]))) for chunk, sentence in corpus_sentences}
        by_sentence = template_questions((s for _, s in corpus_sentences), topic, sentence_kinds, headings)
        for chunk, sentence in corpus_sentences:
            if chunk["chunk_id"] not in selected_ids or sentence not in by_sentence:
                continue
            fact = add(_fact(sentence, "sentence", chunk, answer_hint=answer_span(sentence)))
            questions += [template_question(fact, t.question, t.kind, t.identifier) for t in by_sentence.pop(sentence)]
    return list(facts.values()), questions
