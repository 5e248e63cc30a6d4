"""Dataset: every fact of the documents in training, in several phrasings, split by phrasing.

A model learns a fact when it trains on it several times in several wordings, with the text it comes
from (Allen-Zhu & Li 2023; Jiang et al. 2024), and a held-out question measures learning only when its
fact was trained. So, per fact of the generate stage (``facts.jsonl``):

- question/answer pairs: the kept questions about it (answer stage: model-written and template ones),
  each with its rewrites (runner/questions/phrasings.py); a fact no kept question asks about gets a question
  anchored on an identifier only it holds; at most ``dataset.phrasings_per_fact`` pairs per fact;
- the fact as plain text (``dataset.mix.fact_text`` copies), and each chunk a trained fact comes from,
  with its heading (``dataset.mix.chunk_text`` copies).

Split (``dataset.split_by``):
- ``phrasing`` (default): a fact with two or more independent phrasings keeps one (with its rewrites)
  out for validation, and the fact still trains; more trained facts are asked with their most checkable
  term blanked (never trained) until ``dataset.heldout_questions`` are held out; ``dataset.unseen_fraction``
  of the facts is held out whole (their sentences are cut from the chunk texts too), as a control, asked
  with a question and with a blank;
- ``question`` / ``chunk``: ``dataset.valid_fraction`` of the pairs, grouped by question text or chunk.

No kind of record is above ``dataset.max_kind_share`` of the training records (the largest are cut).
An eval question's reference is what it asks for: a default's value, a blanked term, else the answer.

Outputs: train.jsonl (question/answer records in ``dataset.format``, text records as {"text"}),
valid.jsonl (the held-out phrasings), provenance.jsonl, eval_sets.jsonl (heldout, unseen and the
trained pairs, for the eval stage) and coverage.png.
"""

from __future__ import annotations

import logging
import math
import random
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

from runner.core.artifacts import Answer, Dataset, Generate, Ingest, load_chunks
from runner.core.errors import InputError
from runner.questions.facts import CHARS_PER_TOKEN
from runner.questions.fact_selection import fact_id as make_fact_id
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.questions.phrasings import anchor_question, cloze_questions, precise_answer, rewrites, unique_anchors
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)

# a kept question's own wording is preferred as the held-out one: it is how a person would ask
_MODEL_WRITTEN = ("fact_anchored", "free")


@dataclass
class Phrasing:
    """One independent question about a fact, with its answer and its rewrites."""

    question: str
    answer: str
    strategy: str  # fact_anchored | free | template | anchor
    qid: str
    context_chunk_ids: list[str] = field(default_factory=list)  # what a RAG answer read
    rewrites: list[str] = field(default_factory=list)
    template: str = ""  # a template question's kind (default_value, option_purpose, ...)
    reference: str = ""  # what the question asks for, where that is less than the answer (a default's value, a blanked term)

    @property
    def kind(self) -> str:
        """The record kind the dataset balances: model_written, template:<kind>, anchor or cloze."""
        if self.strategy in _MODEL_WRITTEN:
            return "model_written"
        return f"template:{self.template or 'other'}" if self.strategy == "template" else self.strategy


@dataclass
class FactPlan:
    fact: dict[str, Any]
    phrasings: list[Phrasing] = field(default_factory=list)
    heldout: Optional[Phrasing] = None
    unseen: bool = False
    anchor: Optional[Phrasing] = None  # the question anchored on an identifier only this fact names
    cloze: list[Phrasing] = field(default_factory=list)  # trained fill-in-the-blank questions, answered by the blanked term
    # the fill-in-the-blank question this fact is asked with when it is held out or unseen (its most checkable term
    # blanked, never trained), when it has one
    cloze_heldout: Optional[Phrasing] = None


def format_record(question: str, answer: str, fmt: str) -> dict[str, Any]:
    if fmt == "chat":
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    if fmt == "text":
        return {"text": f"<s>[INST] {question} [/INST] {answer}</s>"}
    return {"prompt": question, "completion": answer}


def _normalize(question: str) -> str:
    return " ".join(question.lower().split())


def split_records(records: list[dict[str, Any]], valid_fraction: float, split_by: str, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split into (train, valid): whole groups go to one side; valid gets ~valid_fraction of records."""
    key = "chunk_id" if split_by == "chunk" else "question"
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        group = record[key] if key == "chunk_id" else _normalize(record["question"])
        groups[group].append(record)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target = math.ceil(valid_fraction * len(records)) if len(records) > 1 else 0
    valid_groups: set[str] = set()
    size = 0
    for group in order:
        if size >= target:
            break
        if size + len(groups[group]) > target:
            continue  # a group that overshoots could take most records (or all of them) into valid
        valid_groups.add(group)
        size += len(groups[group])
    if target and not valid_groups and len(order) > 1:
        # every group is larger than the target: the smallest one still gives a validation set
        smallest = min(order, key=lambda g: len(groups[g]))
        if len(groups[smallest]) <= len(records) - len(groups[smallest]):
            valid_groups.add(smallest)
    train = [r for g in order if g not in valid_groups for r in groups[g]]
    train_questions = {_normalize(r["question"]) for r in train}
    valid = [r for g in order if g in valid_groups for r in groups[g] if _normalize(r["question"]) not in train_questions]
    return train, valid


# ---------------------------------------------------------------- facts and their phrasings


def plan_facts(
    facts: list[dict[str, Any]], answered: list[dict[str, Any]], chunks: dict[str, dict[str, Any]], topic: str, cloze_per_fact: int = 0
) -> list[FactPlan]:
    """Every fact with its independent phrasings: kept pairs (a pair without a fact is a fact of its own),
    for a fact with none a question anchored on its own identifier, and its fill-in-the-blank questions."""
    plans: dict[str, FactPlan] = {f["fact_id"]: FactPlan(f) for f in facts}
    by_text = {f["text"]: f["fact_id"] for f in facts}
    for record in answered:
        key = record.get("fact_id") or by_text.get(record.get("fact") or "")
        if key is None:
            key = make_fact_id(record["question"] + "\n" + record["answer"])
            chunk = chunks.get(record["chunk_id"], {})
            plans[key] = FactPlan({"fact_id": key, "text": record["answer"], "kind": "pair", "chunk_id": record["chunk_id"],
                                   "doc_id": record.get("doc_id"), "source": record.get("source"), "page": record.get("page"),
                                   "heading": record.get("heading") or chunk.get("heading") or ""})
        plan = plans.get(key)
        if plan is None:  # a pair about a fact the generate stage did not list: its own fact
            plan = plans[key] = FactPlan({**{k: record.get(k) for k in ("chunk_id", "doc_id", "source", "page")},
                                          "fact_id": key, "text": record.get("fact") or record["answer"], "kind": "sentence",
                                          "heading": record.get("heading") or ""})
        if _normalize(record["question"]) not in {_normalize(p.question) for p in plan.phrasings}:
            template = record.get("template") or ""
            precise = precise_answer(template, record["answer"], record.get("answer_hint") or "") if template else None
            plan.phrasings.append(Phrasing(record["question"], record["answer"], record.get("strategy") or "", record["qid"],
                                           list(record.get("context_chunk_ids") or []), template=template, reference=precise or ""))
    anchors = unique_anchors(p.fact["text"] for p in plans.values() if p.fact.get("kind") != "excerpt")
    for plan in plans.values():
        heading = plan.fact.get("heading") or ""
        anchor = anchors.get(plan.fact["text"])
        if anchor and plan.fact.get("kind") != "excerpt":
            question = anchor_question(anchor, topic)
            plan.anchor = Phrasing(question, plan.fact["text"], "anchor", f"{plan.fact['fact_id']}-anchor", rewrites=rewrites(question, topic, heading))
            if not plan.phrasings:
                plan.phrasings.append(plan.anchor)
        for phrasing in plan.phrasings:
            phrasing.rewrites = rewrites(phrasing.question, topic, heading)
        if plan.fact.get("kind") in ("sentence", "record"):
            blanks = [
                Phrasing(question, term, "cloze", f"{plan.fact['fact_id']}-cloze{i}", reference=term)
                for i, (question, term) in enumerate(cloze_questions(plan.fact["text"], topic, cloze_per_fact + 1))
            ]
            # the first blank (the fact's most checkable term) is kept for asking the fact when it is held out, so it
            # is trained only when the fact is not; a blank whose term the question still shows is no question
            if blanks and blanks[0].answer.lower() not in blanks[0].question.lower():
                plan.cloze_heldout = blanks[0]
            plan.cloze = blanks[:cloze_per_fact]
    return list(plans.values())


def hold_out(plans: list[FactPlan], unseen_fraction: float, seed: int, valid_fraction: float = 0.2, heldout_questions: int = 0) -> None:
    """Mark ``unseen_fraction`` of the askable facts unseen; from every other fact with two or more phrasings hold
    one out (a model-written one when there is one, else a template one); then, until ``heldout_questions``
    are held out, trained facts in a seeded order hold out their fill-in-the-blank question. Seeded."""
    rng = random.Random(seed)
    askable = [p for p in plans if p.phrasings or p.cloze_heldout]
    for plan in rng.sample(askable, round(unseen_fraction * len(askable))) if unseen_fraction else []:
        plan.unseen = True
    for plan in plans:
        # what is held out is a question someone would ask (model-written, else a template); the anchored and
        # fill-in-the-blank questions count as phrasings the fact trains with
        choices = [p for p in plan.phrasings if p.strategy in _MODEL_WRITTEN] or [p for p in plan.phrasings if p.strategy == "template"]
        if plan.unseen or not choices or len(plan.phrasings) + len(plan.cloze) < 2:
            continue
        plan.heldout = rng.choice(choices)
    # a fact the model left one phrasing of is still asked in a wording it did not train: its sentence with its
    # most checkable term blanked (the term is the answer), so a real manual gets a held-out set that can decide
    singles = [p for p in plans if not p.unseen and p.heldout is None and p.cloze_heldout is not None]
    for plan in rng.sample(singles, min(len(singles), max(0, heldout_questions - sum(p.heldout is not None for p in plans)))):
        plan.heldout = plan.cloze_heldout
        plan.cloze = [c for c in plan.cloze if c.answer != plan.cloze_heldout.answer]
    if not any(p.heldout for p in plans):
        # a small corpus where no fact has a second phrasing: valid_fraction of the facts with a question hold
        # it out, and the fact trains as text (and through its anchored question, when it has one), so
        # learning is still measured
        single = [p for p in plans if not p.unseen and any(q.strategy in _MODEL_WRITTEN + ("template",) for q in p.phrasings)]
        for plan in rng.sample(single, math.ceil(valid_fraction * len(single))):
            plan.heldout = next(q for q in plan.phrasings if q.strategy in _MODEL_WRITTEN + ("template",))
            if plan.anchor is not None and plan.anchor not in plan.phrasings:
                plan.phrasings.append(plan.anchor)


def trained_pairs(plan: FactPlan, limit: int) -> list[tuple[str, Phrasing, str]]:
    """(question, its phrasing, "base" | "rewrite") trained for a fact: the phrasings first, then their
    rewrites in turn, at most ``limit``."""
    kept = [p for p in plan.phrasings if p is not plan.heldout]
    pairs = [(p.question, p, "base") for p in kept]
    for depth in range(max((len(p.rewrites) for p in kept), default=0)):
        pairs += [(p.rewrites[depth], p, "rewrite") for p in kept if depth < len(p.rewrites)]
    return pairs[:limit]


# ---------------------------------------------------------------- records


def _chunk_text(chunk: dict[str, Any], cut: list[str]) -> str:
    """A chunk as training text: its heading first (unless it opens with it), unseen facts cut out."""
    text = chunk["text"]
    for sentence in cut:
        text = text.replace(sentence, "")
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    heading = chunk.get("heading") or ""
    return text if not heading or text.startswith(heading) else f"{heading}\n\n{text}"


def _origin(kind: str, fact: dict[str, Any], phrasing: Optional[Phrasing] = None, form: str = "") -> dict[str, Any]:
    """Where a record comes from (its provenance line, without split and line number)."""
    return {
        "kind": kind, "record_kind": phrasing.kind if phrasing else kind, "fact_id": fact["fact_id"], "qid": phrasing.qid if phrasing else None,
        "context_chunk_ids": phrasing.context_chunk_ids if phrasing else None,
        "strategy": phrasing.strategy if phrasing else None, "phrasing": form or None,
        **{k: fact.get(k) for k in ("chunk_id", "doc_id", "source", "page", "heading")},
    }


def _eval_row(set_name: str, question: str, phrasing: Phrasing, plan: FactPlan, chunks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An eval question; its reference is what the question asks for (a default's value, a blanked term) where
    that is less than the trained answer, so an answer is not scored on the rest of the sentence."""
    chunk = chunks.get(plan.fact.get("chunk_id"), {})
    context = _chunk_text(chunk, []) if chunk else plan.fact["text"]
    return {"set": set_name, "id": f"{set_name}:{phrasing.qid}", "question": question, "reference": phrasing.reference or phrasing.answer,
            "answer": phrasing.answer, "kind": phrasing.kind, "fact_id": plan.fact["fact_id"], "chunk_id": plan.fact.get("chunk_id"), "context": context}


@dataclass
class Built:
    train: list[dict[str, Any]] = field(default_factory=list)
    valid: list[dict[str, Any]] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, split: str, record: dict[str, Any], origin: dict[str, Any]) -> None:
        rows = self.train if split == "train" else self.valid
        self.provenance.append({**origin, "split": split, "line": len(rows)})
        rows.append(record)


def build_records(plans: list[FactPlan], chunks: dict[str, dict[str, Any]], ds: Any, valid_qids: set[str]) -> Built:
    """Train/valid records, provenance and eval rows. With ``split_by=phrasing`` the plans carry the
    held-out choices; otherwise the phrasings whose qid is in ``valid_qids`` are validation."""
    built = Built()
    for plan in plans:
        if plan.unseen:  # asked as a person would ask it, and with its term blanked
            for phrasing in plan.phrasings[:1] + ([plan.cloze_heldout] if plan.cloze_heldout else []):
                built.eval_rows.append(_eval_row("unseen", phrasing.question, phrasing, plan, chunks))
            continue
        held = [plan.heldout] if plan.heldout else [p for p in plan.phrasings if p.qid in valid_qids]
        for phrasing in held:
            built.add("valid", format_record(phrasing.question, phrasing.answer, ds.format), _origin("qa", plan.fact, phrasing, "base"))
            built.eval_rows.append(_eval_row("heldout", phrasing.question, phrasing, plan, chunks))
        trained_plan = FactPlan(plan.fact, [p for p in plan.phrasings if p not in held and p is not plan.cloze_heldout])
        for question, phrasing, form in trained_pairs(trained_plan, ds.phrasings_per_fact):
            for _ in range(ds.mix.qa):
                built.add("train", format_record(question, phrasing.answer, ds.format), _origin("qa", plan.fact, phrasing, form))
            if form == "base":
                built.eval_rows.append(_eval_row("train", question, phrasing, plan, chunks))
        for cloze in plan.cloze:
            for _ in range(ds.mix.qa):
                built.add("train", format_record(cloze.question, cloze.answer, ds.format), _origin("qa", plan.fact, cloze, "cloze"))
        # a fact's own sentence (not a pair's answer, nor a raw excerpt: its chunk's text trains)
        for _ in range(ds.mix.fact_text if plan.fact.get("kind") in ("sentence", "record") else 0):
            built.add("train", {"text": plan.fact["text"]}, _origin("fact_text", plan.fact))
    unseen_sentences = [p.fact["text"] for p in plans if p.unseen]
    trained_chunks = dict.fromkeys(p.fact["chunk_id"] for p in plans if not p.unseen and p.fact.get("chunk_id") in chunks)
    for chunk_id in trained_chunks:
        text = _chunk_text(chunks[chunk_id], unseen_sentences)
        origin = {**_origin("chunk_text", {"fact_id": None, **chunks[chunk_id]}), "chunk_id": chunk_id}
        for _ in range(ds.mix.chunk_text if text else 0):
            built.add("train", {"text": text}, origin)
    return built


def kind_limits(counts: Counter[str], max_share: float) -> dict[str, int]:
    """Records each kind may keep so that none is above ``max_share`` of the total. With too few kinds for
    that share (three kinds cannot each be under 30 %) the share is 1 / kinds. The largest kind is cut first,
    to ``max_share`` of what the others then hold; cutting it can lift another kind over, so repeat."""
    share = max(max_share, 1.0 / max(1, len(counts)))
    limits = dict(counts)
    while True:
        total = sum(limits.values())
        kind = max(limits, key=lambda k: (limits[k], k))
        if limits[kind] <= share * total + 1e-9 or share >= 1.0:
            return limits
        others = total - limits[kind]
        limits[kind] = max(1, math.floor(share * others / (1 - share) + 1e-9))


def cap_kinds(built: Built, max_share: float, seed: int) -> dict[str, int]:
    """Drop training records of the kinds above ``max_share`` (rewrites first; never a fact's last record), so
    that no one kind of record teaches the model one answer form; return the records dropped per kind. Train
    eval rows whose question no longer trains go too."""
    train_rows = [p for p in built.provenance if p["split"] == "train"]
    counts = Counter(p["record_kind"] for p in train_rows)
    limits = kind_limits(counts, max_share)
    rng = random.Random(seed)
    per_fact = Counter(p["fact_id"] for p in train_rows)
    dropped: set[int] = set()
    for kind, limit in limits.items():
        excess = counts[kind] - limit
        if excess <= 0:
            continue
        lines = [p["line"] for p in train_rows if p["record_kind"] == kind]
        order = sorted(lines, key=lambda line: (train_rows[line]["phrasing"] != "rewrite", rng.random()))
        for line in order:  # a fact's last training record stays, over the cap if need be: every fact trains
            if excess and per_fact[train_rows[line]["fact_id"]] > 1:
                dropped.add(line)
                per_fact[train_rows[line]["fact_id"]] -= 1
                excess -= 1
    if dropped:
        kept = [line for line in range(len(built.train)) if line not in dropped]
        built.train = [built.train[line] for line in kept]
        renumbered = [{**train_rows[old], "line": new} for new, old in enumerate(kept)]
        built.provenance = renumbered + [p for p in built.provenance if p["split"] == "valid"]
        still_trained = {_normalize(_record_question(r)) for r in built.train}
        built.eval_rows = [r for r in built.eval_rows if r["set"] != "train" or _normalize(r["question"]) in still_trained]
    return dict(Counter(train_rows[line]["record_kind"] for line in dropped))


def _record_question(record: dict[str, Any]) -> str:
    if "messages" in record:
        return next((m["content"] for m in record["messages"] if m["role"] == "user"), "")
    return record.get("prompt") or record.get("text") or ""


def _legacy_valid_qids(plans: list[FactPlan], ds: Any) -> set[str]:
    """``split_by=question|chunk``: the validation pairs, ``valid_fraction`` of the kept pairs by group."""
    pairs = [{"qid": p.qid, "question": p.question, "chunk_id": plan.fact.get("chunk_id")} for plan in plans for p in plan.phrasings if p.strategy != "anchor"]
    _, valid = split_records(pairs, ds.valid_fraction, ds.split_by, ds.seed)
    return {r["qid"] for r in valid}


# ---------------------------------------------------------------- the stage


def draw_coverage(pages: list[dict[str, Any]], examples: list[dict[str, Any]], path: Any) -> float:
    """Bar chart of trained facts per document page (gaps show uncovered pages); return the covered share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter((e["source"], e["page"]) for e in examples)
    keys = [(p["source"], p["page"]) for p in pages]
    values = [counts.get(key, 0) for key in keys]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(keys)), 3))
    ax.bar(range(len(keys)), values, color=["tab:blue" if v else "tab:red" for v in values])
    ax.set_xlabel("page (documents in order; red = no example)")
    ax.set_ylabel("training examples")
    ax.set_title(f"Coverage: {sum(v > 0 for v in values)} of {len(keys)} pages have examples")
    step = max(1, len(keys) // 20)
    ax.set_xticks(range(0, len(keys), step), [str(keys[i][1]) for i in range(0, len(keys), step)], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return sum(v > 0 for v in values) / max(1, len(keys))


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Write train/valid JSONL in ``dataset.format``, provenance.jsonl and eval_sets.jsonl."""
    answered = read_jsonl(ctx.inputs["answer"] / Answer.ANSWERS)
    facts = read_jsonl(ctx.inputs["generate"] / Generate.FACTS)
    chunks = {c["chunk_id"]: c for c in load_chunks(ctx.inputs["chunk"])}
    ds = cfg.dataset
    plans = plan_facts(facts, answered, chunks, cfg.generate.topic, ds.cloze_per_fact if ds.split_by == "phrasing" else 0)
    if not any(p.phrasings for p in plans):
        raise InputError(
            "no question survived curation and answering, so there is nothing to train on: "
            "see curate/dropped.jsonl and answer/answers_dropped.jsonl in MLflow, then generate more "
            "(generate.max_chunks, generate.candidates_per_fact) or use a stronger model"
        )
    valid_qids: set[str] = set()
    if ds.split_by == "phrasing":
        hold_out(plans, ds.unseen_fraction, ds.seed, ds.valid_fraction, ds.heldout_questions)
    else:
        valid_qids = _legacy_valid_qids(plans, ds)
    built = build_records(plans, chunks, ds, valid_qids)
    capped = cap_kinds(built, ds.max_kind_share, ds.seed) if ds.max_kind_share < 1 else {}
    order = list(range(len(built.train)))
    random.Random(ds.seed).shuffle(order)  # kinds and facts interleaved; the trainer batches by length
    train = [built.train[i] for i in order]
    train_origin = {i: row for i, row in enumerate(p for p in built.provenance if p["split"] == "train")}
    provenance = [{**train_origin[old], "line": new} for new, old in enumerate(order)] + [p for p in built.provenance if p["split"] == "valid"]

    write_jsonl(ctx.work_dir / Dataset.TRAIN, train)
    if built.valid:  # mlx-lm's loader fails on an empty file (IndexError); a missing one means "no validation"
        write_jsonl(ctx.work_dir / Dataset.VALID, built.valid)
    write_jsonl(ctx.work_dir / Dataset.PROVENANCE, provenance)
    write_jsonl(ctx.work_dir / Dataset.EVAL_SETS, built.eval_rows)
    metrics = dataset_metrics(plans, built, provenance)
    metrics.update({f"dropped_by_kind_cap/{kind}": float(n) for kind, n in capped.items()})
    pages = read_jsonl(ctx.inputs["ingest"] / Ingest.PAGES)
    trained_facts = [p.fact for p in plans if not p.unseen and p.fact.get("source") is not None]
    metrics["pages_covered_share"] = draw_coverage(pages, trained_facts, ctx.work_dir / Dataset.COVERAGE)
    log.info(
        "dataset: %d facts (%d unseen, %d with a held-out phrasing); %d train records (%d question/answer), %d valid (%s format)",
        metrics["facts"], metrics["facts_unseen"], metrics["facts_heldout"], len(train), metrics["qa_records"], len(built.valid), ds.format,
    )
    return StageResult(
        metrics=metrics,
        artifacts=[Dataset.TRAIN, Dataset.PROVENANCE, Dataset.EVAL_SETS, Dataset.COVERAGE] + ([Dataset.VALID] if built.valid else []),
        datasets={"training": Dataset.TRAIN, **({"validation": Dataset.VALID} if built.valid else {})},
    )


def dataset_metrics(plans: list[FactPlan], built: Built, provenance: list[dict[str, Any]]) -> dict[str, float]:
    kinds = Counter(p["kind"] for p in provenance if p["split"] == "train")
    record_kinds = Counter(p["record_kind"] for p in provenance if p["split"] == "train")
    per_fact = Counter(p["fact_id"] for p in provenance if p["split"] == "train" and p["kind"] == "qa")
    trained = [p for p in plans if not p.unseen]
    chars = [len(_record_text(r)) for r in built.train] or [0]
    sets = Counter(row["set"] for row in built.eval_rows)
    return {
        "facts": len(plans),
        "facts_trained": len(trained),
        "facts_unseen": sum(p.unseen for p in plans),
        "facts_heldout": sum(1 for p in provenance if p["split"] == "valid"),
        "facts_without_question": sum(not per_fact[p.fact["fact_id"]] for p in trained),
        "phrasings_per_fact_mean": statistics.mean(per_fact[p.fact["fact_id"]] for p in trained) if trained else 0.0,
        "train_size": len(built.train),
        "valid_size": len(built.valid),
        "qa_records": kinds["qa"],
        "fact_text_records": kinds["fact_text"],
        "chunk_text_records": kinds["chunk_text"],
        "train_approx_tokens": sum(chars) / CHARS_PER_TOKEN,
        "train_record_chars_mean": statistics.mean(chars),
        **{f"eval_{name}_size": float(sets[name]) for name in ("heldout", "unseen", "train")},
        # the mix the model trains on: each kind's share of the training records
        **{f"kind_share/{kind}": n / max(1, len(built.train)) for kind, n in sorted(record_kinds.items())},
    }


def _record_text(record: dict[str, Any]) -> str:
    if "messages" in record:
        return " ".join(m["content"] for m in record["messages"])
    return record.get("text") or f"{record.get('prompt', '')} {record.get('completion', '')}"
