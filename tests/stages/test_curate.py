"""Curate: the real stage on SmolLM2's questions plus planted bad ones; the specificity gate; leaked examples."""

from __future__ import annotations

import itertools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from omegaconf import DictConfig
from rank_bm25 import BM25Okapi

from conftest import REPO_ROOT
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.engine.pipeline import run_pipeline
from runner.retrieval.hybrid import tokenize
from runner.core.stage import StageContext
from runner.stages import curate, generate
from runner.core.artifacts import Curate, Generate, load_chunks
from runner.retrieval.embeddings import embed_texts
from runner.stages.curate import example_terms, first_per_fact, near_duplicates, rule_reason, words_not_in_fact

# Eight manual sections, one chunk each. Every one says "section", so a generic question about
# "this section" shares a word with any of them and only retrieval can tell it is not specific.
SECTIONS = [
    "This section covers the lantern cache: it keeps at most 64 fennel entries and evicts the oldest entry first.",
    "This section covers the harbour daemon, which listens on port 7311 and rotates its quasar journal every night.",
    "This section covers deliveries: the relay retries a failed delivery 5 times before parking the message.",
    "This section covers upgrades: drain every turnip queue and pause the marmalade scheduler before upgrading.",
    "This section covers cohort tokens, which expire after 90 minutes unless renewed with rotate-token.",
    "This section covers the walrus exporter, which sends metrics to the observatory endpoint every 15 seconds.",
    "This section covers backups of the pelican vault, encrypted with a per-vault key in the hardware module.",
    "This section covers licensing: a community cluster has at most 3 nodes and needs no license file.",
]
SMALL = [
    "chunk.size=200", "chunk.overlap=0", "llm.n_ctx=1024", "llm.max_tokens=40", "llm.n_threads=1",
    "generate.questions_per_chunk=1", "generate.max_facts_per_chunk=1", "generate.candidates_per_fact=1",
]


@dataclass
class SectionIndex:
    cfg: DictConfig
    chunk_dir: Path
    index_dir: Path
    chunks: list[dict[str, Any]]

    def chunk_about(self, word: str) -> dict[str, Any]:
        (chunk,) = [c for c in self.chunks if word in c["text"]]
        return chunk


@pytest.fixture(scope="module")
def sections(tmp_path_factory: pytest.TempPathFactory, make_cfg: Callable[..., DictConfig]) -> SectionIndex:
    tmp = tmp_path_factory.mktemp("curate_sections")
    doc = tmp / "sections.md"
    doc.write_text("\n\n".join(SECTIONS) + "\n", encoding="utf-8")
    cfg = make_cfg([f"ingest.documents=[{doc}]", *SMALL, "generate.max_chunks=3"], tmp)
    summary = run_pipeline(make_cfg([f"ingest.documents=[{doc}]", *SMALL, "until=index"], tmp))
    chunk_dir = Path(summary["stages"]["chunk"]["path"])
    chunks = load_chunks(chunk_dir)
    assert [c["text"] for c in chunks] == SECTIONS
    return SectionIndex(cfg, chunk_dir, Path(summary["stages"]["index"]["path"]), chunks)


def _question(qid: str, text: str, chunk: dict[str, Any], fact: str | None = None) -> dict[str, Any]:
    return {
        "qid": qid, "question": text, "chunk_id": chunk["chunk_id"], "doc_id": chunk["doc_id"],
        "source": chunk["source"], "page": chunk["page"], "fact": fact, "strategy": "fact_anchored",
    }


def _embed(cfg: DictConfig, texts: list[str]) -> np.ndarray:
    return embed_texts(texts, cfg.index, REPO_ROOT, show_progress=False)


# ---------------------------------------------------------------- the real stage


@pytest.fixture(scope="module")
def curated_run(sections: SectionIndex, tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2 writes questions for 3 sections; planted bad questions go first; the real stage curates them all."""
    tmp = tmp_path_factory.mktemp("curate_run")
    generated = tmp / "generate"
    generated.mkdir()
    generate.run(sections.cfg, StageContext("generate", sections.cfg, REPO_ROOT, generated, {"chunk": sections.chunk_dir}))
    model_questions = read_jsonl(generated / Generate.INSTRUCTIONS)
    assert model_questions, "SmolLM2 wrote no question at all"

    lantern, harbour, delivery = (sections.chunk_about(w) for w in ("lantern", "harbour", "deliver"))
    planted = {
        "p-where": (_question("p-where", "Where can I find the lantern cache settings?", lantern), "pattern"),
        "p-purpose": (_question("p-purpose", "What is the purpose of this section?", lantern), "pattern"),
        "p-short": (_question("p-short", "Port 7311?", harbour), "too_short"),
        "p-statement": (_question("p-statement", "The harbour daemon listens on port 7311.", harbour), "not_a_question"),
        "p-unrelated": (_question("p-unrelated", "How tall is the Eiffel tower in Paris?", harbour), "no_shared_term"),
        "p-leak": (_question("p-leak", "How many times does the purge command retry a failed delivery?", delivery), "leaked_example"),
        "p-first": (_question("p-first", "How many fennel entries does the lantern cache keep at most?", lantern), None),
        "p-again": (_question("p-again", "How many fennel entries can the lantern cache keep at most?", lantern), "near_duplicate"),
        "p-port": (_question("p-port", "Which port does the zorblax harbour daemon listen on?", harbour), None),
        # the same words from the model would be off its fact ("return", "error", "QSR-4090" are not in it);
        # a template question's fixed words are not held against it
        "p-model": (_question("p-model", "When does the lantern cache return error QSR-4090?", lantern, lantern["text"]), "off_fact"),
        "p-template": ({**_question("p-template", "When does the lantern cache return error QSR-4090?", lantern, lantern["text"]), "strategy": "template"}, None),
    }
    inputs = tmp / "generate_with_planted"
    shutil.copytree(generated, inputs)
    write_jsonl(inputs / Generate.INSTRUCTIONS, [q for q, _ in planted.values()] + model_questions)

    work = tmp / "curate"
    work.mkdir()
    ctx = StageContext("curate", sections.cfg, REPO_ROOT, work, {"generate": inputs, "index": sections.index_dir, "chunk": sections.chunk_dir})
    result = curate.run(sections.cfg, ctx)
    return result, read_jsonl(inputs / Generate.INSTRUCTIONS), read_jsonl(work / Curate.CURATED), read_jsonl(work / Curate.DROPPED), planted


def test_every_question_is_kept_or_dropped_with_a_reason(curated_run) -> None:
    result, generated, kept, dropped, _ = curated_run
    assert sorted(q["qid"] for q in kept + dropped) == sorted(q["qid"] for q in generated)
    assert all(d["reason"] in {"pattern", "too_short", "too_long", "not_a_question", "no_shared_term", "leaked_example", "answer_in_question", "off_fact", "near_duplicate", "not_specific"} for d in dropped)
    originals = {q["qid"]: q for q in generated}
    for d in dropped:  # the dropped record is the question as generated, plus its reason
        assert {k: v for k, v in d.items() if k != "reason"} == originals[d["qid"]]
    assert result.metrics["generated"] == len(generated)
    assert result.metrics["kept"] == len(kept)
    for reason in {d["reason"] for d in dropped}:
        assert result.metrics[f"dropped/{reason}"] == sum(d["reason"] == reason for d in dropped)
    assert 0.0 <= result.metrics["self_hit@5_before_gate"] <= 1.0
    assert set(result.artifacts) == {Curate.CURATED, Curate.DROPPED}


def test_planted_questions_get_their_reasons(curated_run) -> None:
    _, _, kept, dropped, planted = curated_run
    reasons = {d["qid"]: d["reason"] for d in dropped}
    kept_ids = {q["qid"] for q in kept}
    for qid, (_, expected) in planted.items():
        if expected is None:
            assert qid in kept_ids, (qid, reasons.get(qid))
        else:
            assert reasons.get(qid) == expected, qid


def test_curated_questions_match_no_drop_pattern(curated_run, sections: SectionIndex) -> None:
    _, _, kept, _, _ = curated_run
    patterns = [re.compile(p, re.IGNORECASE) for p in sections.cfg.curate.drop_patterns]
    assert kept
    for q in kept:
        assert not any(p.search(q["question"]) for p in patterns), q["question"]
        assert q["question"].rstrip().endswith("?")


def test_no_two_curated_questions_are_near_duplicates(curated_run, sections: SectionIndex) -> None:
    _, _, kept, dropped, _ = curated_run
    vectors = _embed(sections.cfg, [q["question"] for q in kept])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # cosine, whatever index.normalize says
    for (i, a), (j, b) in itertools.combinations(enumerate(kept), 2):
        cosine = float(vectors[i] @ vectors[j])
        assert cosine < sections.cfg.curate.dedup_threshold, (a["question"], b["question"], cosine)
    # and the planted pair really was above it
    pair = _embed(sections.cfg, ["How many fennel entries does the lantern cache keep at most?", "How many fennel entries can the lantern cache keep at most?"])
    assert float(pair[0] @ pair[1]) >= sections.cfg.curate.dedup_threshold


# ---------------------------------------------------------------- the specificity gate


def _independent_rankings(sections: SectionIndex, question: str, k: int) -> tuple[list[int], list[int]]:
    """BM25 and cosine top-k positions, computed here rather than through the retriever under test."""
    bm25 = BM25Okapi([tokenize(c["text"]) for c in sections.chunks])
    sparse = list(np.argsort(-bm25.get_scores(tokenize(question)), kind="stable")[:k])
    vectors = _embed(sections.cfg, [question] + [c["text"] for c in sections.chunks])
    dense = list(np.argsort(-(vectors[1:] @ vectors[0]), kind="stable")[:k])
    return [int(i) for i in sparse], [int(i) for i in dense]


@pytest.mark.parametrize("gate", [True, False])
def test_specificity_gate_drops_a_generic_question_and_keeps_a_specific_one(
    sections: SectionIndex, composed_cfg: Callable[..., DictConfig], gate: bool
) -> None:
    k = 2
    cfg = composed_cfg(["curate.drop_patterns=[]", f"curate.specificity_k={k}", f"curate.specificity_gate={str(gate).lower()}"])
    generic = "What is the purpose of this section?"
    sparse, dense = _independent_rankings(sections, generic, k)
    # attribute the generic question to a section it does not single out (neither top-k list has it)
    elsewhere = [c for i, c in enumerate(sections.chunks) if i not in sparse and i not in dense]
    assert elsewhere, (sparse, dense)
    lantern = sections.chunk_about("lantern")
    specific = "How many fennel entries does the lantern cache keep before it evicts the oldest entry?"  # the section's own words
    assert sections.chunks.index(lantern) in _independent_rankings(sections, specific, k)[0]

    questions = [_question("generic", generic, elsewhere[0]), _question("specific", specific, lantern)]
    kept, dropped, metrics = curate.curate(questions, {c["chunk_id"]: c for c in sections.chunks}, cfg, sections.index_dir, REPO_ROOT)

    assert metrics[f"self_hit@{k}_before_gate"] == 0.5
    if gate:
        assert [q["qid"] for q in kept] == ["specific"]
        assert [(d["qid"], d["reason"]) for d in dropped] == [("generic", "not_specific")]
    else:
        assert [q["qid"] for q in kept] == ["generic", "specific"] and dropped == []


def test_the_gate_leaves_template_questions_alone(sections: SectionIndex, composed_cfg: Callable[..., DictConfig]) -> None:
    """A template question names its record's identifier and its answer is built from that record: specific by
    construction, even where the identifier appears in other chunks too (the Debian Reference's "What is the
    package sed?", whose table chunk the retrievers rank below the prose that uses sed)."""
    k = 1
    cfg = composed_cfg(["curate.drop_patterns=[]", f"curate.specificity_k={k}", "curate.specificity_gate=true"])
    question, model_question = "What does the fennel setting do?", "Which entries does the lantern cache's fennel setting keep?"
    ranked = {i for q in (question, model_question) for ranking in _independent_rankings(sections, q, k) for i in ranking}
    elsewhere = [c for i, c in enumerate(sections.chunks) if i not in ranked]
    fact = "The fennel setting is described as \"entries the lantern cache keeps\"."
    template = {**_question("template", question, elsewhere[0], fact), "strategy": "template", "template": "option_purpose"}
    by_model = _question("model", model_question, elsewhere[0], fact)
    kept, dropped, metrics = curate.curate([template, by_model], {c["chunk_id"]: c for c in sections.chunks}, cfg, sections.index_dir, REPO_ROOT)

    assert metrics[f"self_hit@{k}_before_gate"] == 0.0  # neither is found, the gate judges only the model's
    assert [q["qid"] for q in kept] == ["template"]
    assert [(d["qid"], d["reason"]) for d in dropped] == [("model", "not_specific")]


# ---------------------------------------------------------------- rules without a model


def test_example_terms_are_the_examples_words_the_documents_never_use(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg()
    corpus = ["The web console listens on port 8080 by default; run relayctl to manage archived runs."]
    leaked = example_terms(cfg.prompts, cfg.generate.topic, corpus)
    assert {"scheduler", "purge", "9120"} <= leaked
    # words the documents use (or inflect: "listen" / "listens") are ordinary question words
    assert not {"web", "console", "listen", "port", "default", "archived", "runs"} & leaked
    assert "many" not in leaked  # a quantifier, never a leak


def test_rule_reason_order_and_leaked_example(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg()
    patterns = [re.compile(p, re.IGNORECASE) for p in cfg.curate.drop_patterns]
    source = "The relay retries a failed delivery 5 times before parking the message."
    leak = example_terms(cfg.prompts, cfg.generate.topic, [source])

    def reason(question: str) -> str | None:
        return rule_reason(question, source, patterns, cfg.curate, leak)

    assert reason("How many times does the scheduler retry a failed delivery?") == "leaked_example"
    assert rule_reason("Which port is 7461?", "The admin API listens on port 7461.", patterns, cfg.curate, leak, "7461") == "answer_in_question"
    # 2 of the question's 7 content words come from its fact (< min_fact_overlap 0.5): it wandered off
    wandering = "How many delivery lanes does the cluster of relay nodes keep in memory?"
    assert rule_reason(wandering, source, patterns, cfg.curate, leak, None, fact=source) == "off_fact"
    assert rule_reason("How many times does the relay retry a failed delivery?", source, patterns, cfg.curate, leak, "5 times", fact=source) is None
    assert reason("How many times does the relay retry a failed delivery?") is None
    assert reason("Where can I find the failed delivery?") == "pattern"  # patterns come first
    assert reason("How does the relay retry a failed delivery 5 times?") == "pattern"  # restates its fact
    assert reason("Retry?") == "too_short"
    assert reason("Failed deliveries are retried " + "x" * 300 + "?") == "too_long"
    assert reason("The relay retries a failed delivery 5 times.") == "not_a_question"
    assert reason("What colour is the sky over Paris?") == "no_shared_term"


def test_near_duplicates_keep_the_first_of_each_group() -> None:
    # unit vectors: a, a' (cosine 0.99 with a), b (orthogonal), b' (cosine 0.95 with b)
    a, a2 = np.array([1.0, 0.0, 0.0]), np.array([0.99, np.sqrt(1 - 0.99**2), 0.0])
    b, b2 = np.array([0.0, 0.0, 1.0]), np.array([0.0, np.sqrt(1 - 0.95**2), 0.95])
    vectors = np.stack([a, a2, b, b2])
    assert near_duplicates(vectors, 0.92) == [False, True, False, True]
    assert near_duplicates(vectors, 0.96) == [False, True, False, False]
    assert near_duplicates(vectors[:0], 0.92) == []
    # template questions: only the same text is a duplicate; a model question near a template one is
    texts = ["default of a.x?", "default of a.y?", "default of a.x?", "model question"]
    assert near_duplicates(np.stack([a, a2, a, a2]), 0.92, texts, [True, True, True, False]) == [False, False, True, True]


def test_off_fact_needs_every_question_word_in_the_fact(composed_cfg: Callable[..., DictConfig]) -> None:
    """Questions a small model wrote for real facts of the sample manual (curate.min_fact_overlap=1.0)."""
    cfg = composed_cfg()
    patterns = [re.compile(p, re.IGNORECASE) for p in cfg.curate.drop_patterns]
    topic = cfg.generate.topic

    def reason(question: str, fact: str, hint: str | None = None) -> str | None:
        return rule_reason(question, fact, patterns, cfg.curate, set(), hint, fact, topic)

    voters = "Only some nodes vote in the ledger: their number is set by cluster.ledger_voters, which defaults to 3 and may be 1, 3, 5 or 7."
    assert reason("How many nodes vote in the ledger?", voters) is None
    assert reason("What is the maximum number of nodes that can vote in the ledger?", voters) == "off_fact"  # no "at most" in the fact
    community = "The Community Edition is free of charge and is limited to clusters of at most 3 nodes."
    assert reason("What is the minimum number of nodes in a Community Edition cluster?", community) == "off_fact"  # "at most" is no minimum
    assert reason("What is the maximum number of nodes in a Community Edition cluster?", community) is None
    metrics = "Every node exports metrics in the Prometheus text format at /metrics on port 7462."
    assert reason("On which port does the web console export Prometheus metrics?", metrics) == "off_fact"  # "web console": a leaked example
    assert reason("Which port do the Prometheus text metrics use?", metrics) is None
    # "default" must come from the fact: "What is the cluster's default seed address?" for example seeds
    assert reason("What is the default port for Prometheus text metrics exports?", metrics) == "off_fact"
    insync = "The minimum number of in-sync replicas, including the leader, is set by cluster.min_insync and defaults to 2."
    assert reason("How many in-sync replicas, including the leader, are set by the cluster to 10?", insync) == "off_fact"  # a number not in the fact
    audit = "The _qs.audit channel keeps events for 2,160 hours (90 days)."
    # naming the span is fine while asking about something else; restating it is not
    assert reason("What is the name of the channel that keeps events for 2,160 hours?", audit, "2,160 hours") is None
    sink = "A file sink appends messages as JSON Lines to a local file and rotates the file when it reaches 512 MiB."
    assert reason("How many MiB is 512 MiB?", sink, "512 MiB") == "answer_in_question"


def test_words_not_in_fact_stems_and_allows_generic_question_words() -> None:
    fact = "The lane count of a channel can be increased with qsctl channel alter orders --lanes 16."
    assert words_not_in_fact("How do you increase the lane count of a channel?", fact, {"number"}) == set()
    assert words_not_in_fact("How do you decrease the lane count?", fact, set()) == {"decrease"}
    assert words_not_in_fact("What is the maximum lane count?", fact, set()) == {"maximum"}
    assert words_not_in_fact("What is the maximum lane count?", fact + " It is limited to at most 256 lanes.", set()) == set()


def test_first_per_fact_keeps_the_first_passing_candidate_of_each_fact() -> None:
    rows = [
        {"qid": "a-k1", "chunk_id": "c1", "fact": "F1"},
        {"qid": "a-k2", "chunk_id": "c1", "fact": "F1"},
        {"qid": "b-k0", "chunk_id": "c1", "fact": "F2"},
        {"qid": "free-0", "chunk_id": "c1", "fact": None},
        {"qid": "free-1", "chunk_id": "c1", "fact": None},
        {"qid": "c-k0", "chunk_id": "c2", "fact": "F1"},  # the same sentence in another chunk is another fact
    ]
    rows.insert(0, {"qid": "t0", "chunk_id": "c1", "fact": "F2", "strategy": "template"})
    rows.insert(1, {"qid": "t1", "chunk_id": "c1", "fact": "F2", "strategy": "template"})
    kept, extra = first_per_fact(rows, 1)
    # every template question stays; the model's candidate for a fact with one is dropped
    assert [q["qid"] for q in kept] == ["t0", "t1", "a-k1", "free-0", "free-1", "c-k0"]
    assert [q["qid"] for q in extra] == ["a-k2", "b-k0"]
    assert [q["qid"] for q in first_per_fact(rows, 2)[0]] == [q["qid"] for q in rows if q["qid"] != "b-k0"]  # F2 has two already


# ---------------------------------------------------------------- the judge pass (curate.judge; more in tests/test_judge.py)


def test_the_stage_judges_what_passed_the_rules_before_the_per_fact_limit(
    sections: SectionIndex, composed_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """SmolLM2 in-process judges two candidates of one fact and one of another; a question the rules drop is
    never judged. The tiny model's scores are whatever they are: the checks follow them."""
    lantern, harbour = sections.chunk_about("lantern"), sections.chunk_about("harbour")
    questions = [
        _question("j-fennel", "How many fennel entries does the lantern cache keep at most?", lantern, lantern["text"]),
        _question("j-evict", "Which entry does the lantern cache evict first?", lantern, lantern["text"]),
        _question("j-port", "Which port does the harbour daemon listen on?", harbour, harbour["text"]),
        _question("j-where", "Where can I find the harbour daemon settings?", harbour),  # a pattern: dropped first
    ]
    inputs = tmp_path / "generate"
    inputs.mkdir()
    write_jsonl(inputs / Generate.INSTRUCTIONS, questions)
    write_jsonl(inputs / Generate.ITEMS, [{"chunk_id": c["chunk_id"]} for c in (lantern, harbour)])
    work = tmp_path / "curate"
    work.mkdir()
    judge = ["curate.judge.enabled=true", "curate.max_per_fact=1", "llm.n_threads=1", "llm.n_ctx=1024", "curate.judge.max_tokens=96", "generate.topic=manual"]

    def run_stage(min_score: int) -> tuple[Any, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        cfg = composed_cfg([*judge, f"curate.judge.min_score={min_score}"])
        ctx = StageContext("curate", cfg, REPO_ROOT, work, {"generate": inputs, "index": sections.index_dir, "chunk": sections.chunk_dir})
        result = curate.run(cfg, ctx)
        return result, {q["qid"]: q for q in read_jsonl(work / Curate.CURATED)}, {d["qid"]: d for d in read_jsonl(work / Curate.DROPPED)}

    result, kept, dropped = run_stage(min_score=1)
    verdicts = {r["item_id"]: r for r in read_jsonl(work / Curate.JUDGE_ITEMS)}
    assert set(verdicts) == {"j-fennel", "j-evict", "j-port"}  # both lantern candidates, not the pattern one
    assert dropped["j-where"]["reason"] == "pattern"
    # every verdict passes min_score 1; the fact's second candidate then meets the per-fact limit
    assert {qid: q["judge_score"] for qid, q in kept.items()} == {qid: verdicts[qid]["score"] for qid in ("j-fennel", "j-port")}
    assert dropped["j-evict"]["reason"] == "fact_has_question"
    assert result.metrics["judge/judged"] == 3 and result.metrics["judge/rejected"] == 0
    assert result.metrics["judge/mean_score"] == pytest.approx(sum(v["score"] for v in verdicts.values()) / 3)
    assert Curate.JUDGE_ITEMS in result.artifacts

    # a stricter judge over the same verdicts (the items file holds them: nothing is asked again)
    lines = (work / Curate.JUDGE_ITEMS).read_text().splitlines()
    result, kept, dropped = run_stage(min_score=5)
    assert (work / Curate.JUDGE_ITEMS).read_text().splitlines() == lines
    rejected = {qid for qid, v in verdicts.items() if v["score"] < 5}
    assert {qid for qid, d in dropped.items() if d["reason"] == "judge_rejected"} == rejected
    assert all(dropped[qid]["judge_reason"] == verdicts[qid]["reason"] and dropped[qid]["judge_score"] == verdicts[qid]["score"] for qid in rejected)
    # the lantern fact keeps its first candidate the judge passed, if any
    passing_lantern = [qid for qid in ("j-fennel", "j-evict") if qid not in rejected]
    assert [qid for qid in kept if qid.startswith("j-") and qid != "j-port"] == passing_lantern[:1]
    assert result.metrics["judge/rejected"] == len(rejected) == result.metrics.get("dropped/judge_rejected", 0)


# the small model's garbled questions on the sample, read by hand (bench/review_sample.md), and well-formed ones
GARBLED = [
    ("How many lanes are in a lane?", "A lane is one ordered, append-only partition of a channel; every channel has between 1 and 256 lanes.", "repeated_word"),
    ("How many seconds is the leader leader set?", "A leader is replaced after 10 seconds without a heartbeat, as set by cluster.leader_timeout_s.", "repeated_word"),
    ("What is revoked token? What is revoked token used for?", "A revoked token is rejected with error QSR-4012 from the next request on.", "not_one_question"),
    (
        "Which is the default on the core profile, the relay calls fsync at least every 50 milliseconds, as set by storage.fsync_interval_ms?",
        "By default on the core profile, the relay calls fsync at least every 50 milliseconds, as set by storage.fsync_interval_ms.",
        "restates_fact",
    ),
    # a real manual's (the Debian Reference): the question holds every word of its fact, so asks nothing
    ("How to move the hard disk to a PC with CD bootable UEFI/BIOS?", "Move the hard disk to a PC with CD bootable UEFI/BIOS.", "restates_fact"),
]
WELL_FORMED = [
    ("Which profile is selected with node.profile?", "The default profile is core, and the profile is selected with node.profile."),
    ("How many channels does a node support at most?", "A node supports at most 5,000 channels by default."),
]


@pytest.mark.parametrize("question,fact,reason", GARBLED)
def test_garbled_questions_are_dropped_with_their_reason(question: str, fact: str, reason: str, composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg(["curate.min_fact_overlap=0"])  # these rules come after the off-fact one
    assert rule_reason(question, fact, [], cfg.curate, set(), None, fact, "Quillstream Relay") == reason


@pytest.mark.parametrize("question,fact", WELL_FORMED)
def test_well_formed_questions_pass_those_rules(question: str, fact: str, composed_cfg: Callable[..., DictConfig]) -> None:
    assert rule_reason(question, fact, [], composed_cfg().curate, set(), None, fact, "Quillstream Relay") is None
