"""Curate: drop bad generated questions automatically, keeping each dropped one with its reason.

Filters, in order: configured patterns ("where can I find ..."), length, question form,
no content term shared with the source chunk, a few-shot example's words that the documents
never use (a small model copying the examples), the answer span inside the question, words or
numbers that the question's own fact does not hold (off_fact), near-duplicates (embedding
cosine, first kept), the specificity gate, and at most ``max_per_fact`` questions per fact
(the first passing candidate). The specificity gate: a model's question whose own chunk is in neither the BM25
nor the dense top-k cannot be told apart from generic questions (template questions name their identifier
and pass). The gate does not use the
fusion weights, so a retriever-weight sweep reuses this stage.

With ``curate.judge.enabled`` a judge model (runner/questions/judge.py) scores the questions that pass every
other rule against their fact, before the per-fact limit: a rejected first candidate gives way to
the fact's next passing one.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from runner.core.artifacts import Curate, Generate, load_chunks
from runner.retrieval.embeddings import embed_texts
from runner.questions.facts import content_terms, numbers_in
from runner.core.jsonl import iter_jsonl, read_jsonl, write_jsonl
from runner.questions.judge import judge_questions
from runner.retrieval.hybrid import HybridRetriever
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)


def _stem(word: str) -> str:
    """Crude suffix stripping, enough to match "listens"/"listen", "retries"/"retry", "increased"/"increase"."""
    if len(word) <= 4:
        return word
    if re.search(r"ie[sd]$", word):
        return word[:-3] + "y"
    return re.sub(r"(?:ing|ed|es|(?<!s)s)$", "", word).rstrip("e")


def stems(text: str) -> set[str]:
    return {_stem(word) for word in content_terms(text)}


# a question word that restates a limit must be backed by the fact: "maximum" needs "at most", "max", ...
_IMPLIED_BY = {
    "maximum": {"most", "max", "maximum", "limit", "up", "highest", "largest", "exceed"},
    "minimum": {"least", "min", "minimum", "lowest", "smallest"},
}


def words_not_in_fact(question: str, fact: str, allowed: set[str]) -> set[str]:
    """The question's content words that neither its fact nor the generic question vocabulary
    (``allowed``, stemmed) holds.

    With an extractive answer (the fact sentence) a question is answered correctly only when it asks
    about what the fact says; a word from elsewhere ("web console", "minimum" for an "at most") is
    where a small model's question drifts away from its fact."""
    fact_stems = stems(fact)
    extra = set()
    for word in content_terms(question):
        stem = _stem(word)
        implied = _IMPLIED_BY.get(stem)
        if implied is not None:
            if not ({_stem(w) for w in implied} & fact_stems):
                extra.add(word)  # "maximum" needs a limit in the fact, even though it is a question word
        elif stem not in fact_stems and stem not in allowed:
            extra.add(word)
    return extra


def example_terms(prompts: Any, topic: str, corpus_texts: Iterable[str] = ()) -> set[str]:
    """Content words of the few-shot examples that the documents never use; small models copy them
    ("Vexo") into unrelated questions. Words the documents use as well ("port", "default") are ordinary."""
    text = " ".join(f"{e['fact']} {e['question']}" for e in prompts.fact_examples)
    corpus = {_stem(word) for corpus_text in corpus_texts for word in content_terms(corpus_text)}
    return {term for term in content_terms(text) - content_terms(topic) if _stem(term) not in corpus}


def rule_reason(
    question: str,
    source_text: str,
    patterns: list[re.Pattern[str]],
    cur: Any,
    leak_terms: set[str] = frozenset(),
    answer_hint: str | None = None,
    fact: str | None = None,
    topic: str = "",
) -> str | None:
    """The first cheap rule a question breaks, or None."""
    for pattern in patterns:
        if pattern.search(question):
            return "pattern"
    if len(question) < cur.min_chars:
        return "too_short"
    if len(question) > cur.max_chars:
        return "too_long"
    if cur.require_question_mark and not question.rstrip().endswith("?"):
        return "not_a_question"
    if question.count("?") > 1:
        return "not_one_question"  # "What is revoked token? What is it used for?"
    question_terms, source_terms = content_terms(question), content_terms(source_text)
    if not question_terms & source_terms:
        return "no_shared_term"
    if (question_terms & leak_terms) - source_terms:
        return "leaked_example"
    if answer_hint and _normalize(answer_hint) in _normalize(question):
        # a question may name the span while asking about something else in the fact ("Which channel
        # keeps events for 2,160 hours?"); with fewer than two other fact words it only restates it
        other = stems(question) - stems(answer_hint) - stems(topic)
        if len(other & stems(fact or source_text)) < 2:
            return "answer_in_question"  # "What port is 7461?" teaches nothing
    if fact:
        allowed = stems(" ".join(cur.question_words)) | stems(topic)
        words = {w for w in content_terms(question) if _stem(w) not in allowed or w in _IMPLIED_BY}
        extra = words_not_in_fact(question, fact, allowed)
        if words and len(words - extra) < cur.min_fact_overlap * len(words):
            return "off_fact"  # the question's words are not its fact's: the model wandered off
        if set(numbers_in(question)) - set(numbers_in(fact)):
            return "off_fact"  # a number the fact does not hold ("... set by the cluster to 10?")
        if repeated_words(question):
            return "repeated_word"  # "How many lanes are in a lane?", "the leader leader": a garbled question
        if restates(question, fact):
            return "restates_fact"  # the fact copied into a question: nothing is asked
    return None


# words a well-formed question may hold twice ("Which command ... this command?" is rare; "what ... what" is not)
_REPEATABLE = frozenset("what which when where does that this have there their with from many much default value".split())


def repeated_words(question: str) -> set[str]:
    """Plain words (not parts of identifiers such as auth.mode or /etc/x.token) a question holds twice, by stem:
    measured on the sample, the small model's garbled questions repeat a word ("the order of order", "a lane in
    a lane") while read-well ones rarely do."""
    plain = [w for w in re.findall(r"(?<![\w./-])[A-Za-z]+(?![\w./-])", question.lower()) if len(w) > 3 and w not in _REPEATABLE]
    counts = Counter(_stem(w[:-1] if w.endswith("s") and len(w) > 4 else w) for w in plain)
    return {stem for stem, n in counts.items() if n > 1}


def restates(question: str, fact: str, min_words: int = 14, share: float = 0.6) -> bool:
    """A question that holds every content word of its fact, or a long one that holds most of them, asks
    nothing the fact adds ("How to move the hard disk to a PC with CD bootable UEFI/BIOS?" for that sentence)."""
    fact_stems = stems(fact)
    if not fact_stems:
        return False
    shared = len(stems(question) & fact_stems)
    return shared == len(fact_stems) or (len(question.split()) >= min_words and shared >= share * len(fact_stems))


def _normalize(text: str) -> str:
    return " ".join(re.findall(r"[\w.-]+", text.lower()))


def near_duplicates(vectors: np.ndarray, threshold: float, texts: list[str] | None = None, fixed: list[bool] | None = None) -> list[bool]:
    """True where a vector is within ``threshold`` cosine of an earlier kept one (first kept).

    A ``fixed`` (template) question is a duplicate only of the same text: "What is the default value
    of node.name?" and "... of node.data_dir?" embed almost alike but ask different things."""
    kept: list[int] = []
    flags = []
    for i, vector in enumerate(vectors):
        if fixed is not None and texts is not None and fixed[i]:
            duplicate = any(texts[j] == texts[i] for j in kept)
        else:
            duplicate = bool(kept) and float((vectors[kept] @ vector).max()) >= threshold
        flags.append(duplicate)
        if not duplicate:
            kept.append(i)
    return flags


def self_retrieval(retriever: HybridRetriever, questions: list[str], target_positions: list[int], k: int) -> list[bool]:
    """Whether each question's own chunk is in the BM25 or dense top-k."""
    if not questions:
        return []
    rankings = retriever.rankings(questions, depth=k)
    return [
        target in sparse[:k] or target in dense[:k]
        for target, sparse, dense in zip(target_positions, rankings["bm25"], rankings["dense"])
    ]


def gate_retriever(index_dir: Any, cur: Any, embed: Any) -> HybridRetriever:
    cfg = OmegaConf.create(
        {"kind": "ensemble", "weights": {"bm25": 0.5, "dense": 0.5}, "rrf_c": 60, "k": cur.specificity_k, "fetch_k": max(20, cur.specificity_k), "use_mmr": False, "lambda_mult": 1.0}
    )
    return HybridRetriever(index_dir, cfg, embed)


def curate(
    questions: list[dict[str, Any]], chunks_by_id: dict[str, dict[str, Any]], cfg: Any, index_dir: Any, root: Any, work_dir: Path | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float]]:
    """(kept, dropped with their reason, metrics); ``work_dir`` holds the judge's items file when the judge is on."""
    cur = cfg.curate
    patterns = [re.compile(p, re.IGNORECASE) for p in cur.drop_patterns]
    leak_terms = example_terms(cfg.prompts, cfg.generate.topic, (c["text"] for c in chunks_by_id.values()))
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    # template questions first: where one and a model's question share a fact, the template one is kept
    for q in sorted(questions, key=lambda q: q.get("strategy") != "template"):
        source = (q.get("fact") or "") + " " + chunks_by_id[q["chunk_id"]]["text"]
        # a template question's words are fixed and name its identifier on purpose: only the model's
        # questions go through the answer-in-question and off-fact rules
        by_model = q.get("strategy") != "template"
        hint, fact = (q.get("answer_hint"), q.get("fact")) if by_model else (None, None)
        reason = rule_reason(q["question"], source, patterns, cur, leak_terms, hint, fact, cfg.generate.topic)
        (dropped if reason else kept).append({**q, "reason": reason} if reason else q)

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cfg.index, root, show_progress=False)

    if kept:
        texts = [q["question"] for q in kept]
        flags = near_duplicates(embed(texts), cur.dedup_threshold, texts, [q.get("strategy") == "template" for q in kept])
        dropped += [{**q, "reason": "near_duplicate"} for q, dup in zip(kept, flags) if dup]
        kept = [q for q, dup in zip(kept, flags) if not dup]

    metrics: dict[str, float] = {}
    if kept:
        retriever = gate_retriever(index_dir, cur, embed)
        position = {cid: i for i, cid in enumerate(retriever.chunk_ids)}
        found = self_retrieval(retriever, [q["question"] for q in kept], [position[q["chunk_id"]] for q in kept], cur.specificity_k)
        metrics[f"self_hit@{cur.specificity_k}_before_gate"] = sum(found) / len(found)
        if cur.specificity_gate:
            # a template question names its record's identifier and is answered from that record: specific by
            # construction even where other chunks use the identifier too (12 of 12 read of the 80 Debian Reference
            # questions the gate dropped were right: "What is the package sed?")
            passes = [ok or q.get("strategy") == "template" for q, ok in zip(kept, found)]
            dropped += [{**q, "reason": "not_specific"} for q, ok in zip(kept, passes) if not ok]
            kept = [q for q, ok in zip(kept, passes) if ok]
    if cur.judge.enabled:
        if work_dir is None:
            raise ValueError("curate.judge needs a work folder for its items file")
        kept, rejected, judge_metrics = judge_questions(kept, chunks_by_id, cfg, Path(root), Path(work_dir) / Curate.JUDGE_ITEMS)
        dropped += rejected
        metrics.update(judge_metrics)
    if cur.max_per_fact is not None:
        kept, extra = first_per_fact(kept, cur.max_per_fact)
        dropped += [{**q, "reason": "fact_has_question"} for q in extra]
    return kept, dropped, metrics


def first_per_fact(questions: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep the first ``limit`` passing candidates of each fact (candidates come greedy-first, and
    greedy ones read best); questions without a fact are all kept, and so are template questions
    (one per identifier), which still count against the model's candidates for the same fact."""
    seen: Counter[tuple[str, str]] = Counter()
    kept, extra = [], []
    for q in questions:
        key = (q["chunk_id"], q.get("fact") or "")
        if q.get("fact") and q.get("strategy") != "template" and seen[key] >= limit:
            extra.append(q)
            continue
        seen[key] += 1
        kept.append(q)
    return kept, extra


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Write ``curated.jsonl`` and ``dropped.jsonl`` (each dropped question with its reason)."""
    generated = read_jsonl(ctx.inputs["generate"] / Generate.INSTRUCTIONS)
    asked_chunks = {r["chunk_id"] for r in iter_jsonl(ctx.inputs["generate"] / Generate.ITEMS)}
    chunks_by_id = {c["chunk_id"]: c for c in load_chunks(ctx.inputs["chunk"])}
    kept, dropped, metrics = curate(generated, chunks_by_id, cfg, ctx.inputs["index"], ctx.root, ctx.work_dir)
    write_jsonl(ctx.work_dir / Curate.CURATED, kept)
    write_jsonl(ctx.work_dir / Curate.DROPPED, dropped)
    reasons = Counter(d["reason"] for d in dropped)
    log.info("curation kept %d of %d questions; dropped %s", len(kept), len(generated), dict(reasons))
    metrics.update(
        {
            "generated": len(generated),
            "kept": len(kept),
            "kept_share": len(kept) / max(1, len(generated)),
            "chunk_coverage": len({q["chunk_id"] for q in kept}) / max(1, len(asked_chunks)),
            **{f"dropped/{reason}": count for reason, count in reasons.items()},
        }
    )
    judged = [Curate.JUDGE_ITEMS] if cfg.curate.judge.enabled else []
    return StageResult(metrics=metrics, artifacts=[Curate.CURATED, Curate.DROPPED, *judged])
