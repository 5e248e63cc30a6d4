"""Answer: the context budget, why answers are dropped, regeneration, and the real stage with retrieval metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import DictConfig

from conftest import REPO_ROOT, BuiltIndex
from fakes import FakeLLM, error_response, last_user_message
from runner.core.cache import MANIFEST
from runner.core.errors import LLMError
from runner.questions.facts import numbers_in
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.core.stage import StageContext
from runner.stages import answer
from runner.core.artifacts import Answer, Curate, Generate, load_chunks
from runner.questions.facts import CHARS_PER_TOKEN
from runner.stages.answer import answer_reason, build_context, check_outcome, is_grounded, with_fact

# ---------------------------------------------------------------- context budget


def _chunks(*lengths: int) -> list[dict[str, Any]]:
    return [{"chunk_id": f"c{i}", "text": chr(ord("a") + i) * n} for i, n in enumerate(lengths)]


def test_build_context_stops_at_the_budget() -> None:
    # 25 tokens * 4 chars = 100 chars: 40 + "\n\n" + 40 = 82 fits, one more (82 + 2 + 40 = 124) does not
    context, ids = build_context(_chunks(40, 40, 40), max_tokens=25)
    assert ids == ["c0", "c1"]
    assert context == "a" * 40 + "\n\n" + "b" * 40


def test_build_context_counts_the_separators() -> None:
    # 49 + 2 + 49 = 100 fits exactly; 50 + 2 + 49 = 101 would not
    assert build_context(_chunks(49, 49), max_tokens=25)[1] == ["c0", "c1"]
    context, ids = build_context(_chunks(50, 49), max_tokens=25)
    assert ids == ["c0"] and len(context) == 50


def test_build_context_cuts_an_oversized_first_chunk_and_keeps_at_least_one() -> None:
    context, ids = build_context(_chunks(500, 10), max_tokens=25)
    assert ids == ["c0"] and context == "a" * 100
    assert build_context([], max_tokens=25) == ("", [])


@pytest.mark.parametrize("lengths", [(10,) * 12, (99, 1, 1), (30, 200, 30), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)])
def test_build_context_never_exceeds_the_budget(lengths: tuple[int, ...]) -> None:
    for max_tokens in (1, 5, 13, 25, 40):
        context, ids = build_context(_chunks(*lengths), max_tokens)
        assert len(context) <= max_tokens * CHARS_PER_TOKEN
        assert ids == [f"c{i}" for i in range(len(ids))] and ids  # best first, a prefix of the ranking


def test_with_fact_puts_the_evidence_first(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg()
    context = ("retrieved text", ["c1"])
    question = {"fact": "The harbour daemon listens on port 7311."}
    assert with_fact(context, question, cfg.answer) == ("Key fact: The harbour daemon listens on port 7311.\n\nretrieved text", ["c1"])
    assert with_fact(context, {"fact": None}, cfg.answer) == context
    assert with_fact(context, question, composed_cfg(["answer.include_fact=false"]).answer) == context


# ---------------------------------------------------------------- why an answer is dropped

CONTEXT = "The zorblax harbour daemon listens on port 7311. A community cluster has at most 3 nodes."


@pytest.fixture
def reason(composed_cfg: Callable[..., DictConfig]) -> Callable[..., str | None]:
    answer_cfgs = {grounding: composed_cfg([f"answer.grounding={grounding}"]).answer for grounding in ("drop", "off")}
    refusals = [re.compile(p, re.IGNORECASE) for p in answer_cfgs["drop"].refusal_patterns]

    def _reason(text: str, fact: str | None = None, finish: str = "stop", grounding: str = "drop") -> str | None:
        return answer_reason(text, finish, fact, CONTEXT, refusals, answer_cfgs[grounding])

    return _reason


def test_answer_reasons(reason) -> None:
    fact = "A community cluster has at most 3 nodes."
    assert reason("   ") == "empty"
    assert reason("Yes.") == "empty"  # shorter than answer.min_chars (8)
    assert reason("The daemon listens on port 7311 and", finish="length") == "truncated"
    assert reason("I don't know, it is not mentioned in the context.") == "refusal"
    assert reason("As an AI, I cannot say.") == "refusal"
    assert reason("The daemon listens on port 9999.") == "unsupported_value"  # a number the context lacks
    assert reason("The cluster has at most 1,000 nodes.") == "unsupported_value"
    assert reason("Clusters are small and simple.", fact=fact) == "ungrounded"
    # "3" of the fact is not found inside "7311": the answer holds none of the fact's key terms
    assert reason("It uses port 7311.", fact=fact) == "ungrounded"
    assert reason("A community cluster has at most 3 nodes.", fact=fact) is None
    assert reason("The daemon listens on port 7311.") is None  # no fact: only the number check applies


def test_grounding_off_keeps_unsupported_and_ungrounded_answers(reason) -> None:
    assert reason("The daemon listens on port 9999.", grounding="off") is None
    assert reason("Clusters are small and simple.", fact="A community cluster has at most 3 nodes.", grounding="off") is None
    assert reason("", grounding="off") == "empty"


def test_is_grounded() -> None:
    assert is_grounded("Up to 3 nodes.", "A community cluster has at most 3 nodes.")
    assert not is_grounded("Port 7311.", "A community cluster has at most 3 nodes.")
    assert is_grounded("Use rotate-token.", "Renew a cohort token with rotate-token.")
    assert is_grounded("anything", "The relay is reliable.")  # nothing checkable in the fact


# ---------------------------------------------------------------- regeneration (fake model: the logic only)


def test_ungrounded_answers_are_regenerated_once(composed_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch) -> None:
    cfg = composed_cfg(["answer.grounding=regenerate", "answer.regenerate_attempts=1"])
    questions = [
        {"qid": "q-a", "question": "How many nodes may a community cluster have?", "fact": "A community cluster has at most 3 nodes."},
        {"qid": "q-b", "question": "Which port does the daemon use?", "fact": "The daemon listens on port 7311."},
    ]
    contexts = [(CONTEXT, ["c0"]), (CONTEXT, ["c0"])]

    def reply(request):
        asks_nodes = "How many nodes" in last_user_message(request)  # the context mentions nodes for both
        if request.seed == cfg.llm.seed:  # first attempt: the node answer is ungrounded
            return "Clusters are small." if asks_nodes else "It listens on port 7311."
        return "At most 3 nodes." if asks_nodes else "unexpected retry"

    fake = FakeLLM(reply)
    monkeypatch.setattr(answer, "create_llm", lambda *args, **kwargs: fake)
    ctx = StageContext("answer", cfg, REPO_ROOT, tmp_path, {})
    results = answer.generate_answers(cfg, ctx, questions, contexts)

    assert results == {
        "q-a": {"answer": "At most 3 nodes.", "reason": None, "attempts": 2},
        "q-b": {"answer": "It listens on port 7311.", "reason": None, "attempts": 1},
    }
    retry = fake.requests[-1]
    assert len(fake.requests) == 3 and retry.seed == cfg.llm.seed + 1 and retry.temperature >= 0.7
    assert sorted(r["item_id"] for r in read_jsonl(tmp_path / Answer.ITEMS)) == ["q-a-a0", "q-a-a1", "q-b-a0"]
    assert fake.closed


def test_all_answers_failing_raises_so_the_stage_is_not_cached(composed_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch) -> None:
    cfg = composed_cfg()
    monkeypatch.setattr(answer, "create_llm", lambda *args, **kwargs: FakeLLM(lambda request: error_response("HTTP 503")))
    ctx = StageContext("answer", cfg, REPO_ROOT, tmp_path, {})
    with pytest.raises(LLMError, match="1 of 1 answer requests failed .*HTTP 503"):
        answer.generate_answers(cfg, ctx, [{"qid": "q", "question": "Which port?", "fact": None}], [("ctx", ["c0"])])


# ---------------------------------------------------------------- the real stage (SmolLM2 via llama.cpp)


def write_curated(tiny_index: BuiltIndex, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Three questions on chunk excerpts (the last one without a fact) and one on a clean fact sentence, as
    curate and generate would leave them; the answer stage's inputs."""
    chunks = {c["chunk_id"]: c for c in load_chunks(tiny_index.stage_dir("chunk"))}
    curated_dir = tmp / "curate"
    curated_dir.mkdir()
    picks = [
        ("c00000", "Which port does the zorblax harbour daemon listen on?", "The zorblax harbour daemon listens on port 7311 and writes its quasar journal to disk every night at two."),
        ("c00001", "How many fennel entries does the lantern cache keep?", "Lantern cache eviction: at most 64 fennel entries are kept, and the oldest fennel entry goes when a new one arrives."),
        ("c00003", "When do cohort tokens expire?", None),
    ]
    curated = [
        {"qid": f"{cid}-q0", "question": text, "chunk_id": cid, "doc_id": chunks[cid]["doc_id"], "source": chunks[cid]["source"],
         "page": chunks[cid]["page"], "fact": fact, "strategy": "fact_anchored"}
        for cid, text, fact in picks
    ]
    # a question anchored on a clean fact sentence: answer.mode=extractive answers it with that sentence
    fact = "The zorblax harbour daemon listens on port 7311 and writes its quasar journal to disk every night at two."
    curated.append({**curated[0], "qid": "c00000-q1", "question": "When does the zorblax daemon write its quasar journal?", "fact": fact, "fact_is_sentence": True})
    write_jsonl(curated_dir / Curate.CURATED, curated)
    generate_dir = tmp / "generate"
    generate_dir.mkdir()
    write_jsonl(generate_dir / Generate.ITEMS, [{"item_id": cid, "chunk_id": cid} for cid in chunks])
    for stage_dir, seconds in ((generate_dir, 30.0), (curated_dir, 2.0)):
        (stage_dir / MANIFEST).write_text(json.dumps({"duration_s": seconds}))
    return curated, {"curate": curated_dir, "generate": generate_dir, "index": tiny_index.stage_dir("index"), "chunk": tiny_index.stage_dir("chunk")}


ANSWER_OVERRIDES = ["chunk.size=160", "chunk.overlap=0", "llm.n_ctx=1024", "answer.max_tokens=40", "llm.n_threads=1"]


@pytest.fixture(scope="module")
def answered(tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("answer_run")
    curated, inputs = write_curated(tiny_index, tmp)
    # the excerpt questions are answered with RAG here, to test that path on the real model
    cfg = make_cfg([f"ingest.documents=[{tiny_index.doc}]", *ANSWER_OVERRIDES, "answer.excerpt_facts=rag"], tmp)
    work = tmp / "answer"
    work.mkdir()
    ctx = StageContext("answer", cfg, REPO_ROOT, work, inputs)
    result = answer.run(cfg, ctx)
    return cfg, curated, result, read_jsonl(work / Answer.ANSWERS), read_jsonl(work / Answer.DROPPED), work


def test_questions_on_chunk_excerpts_are_dropped_unanswered_by_default(tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch) -> None:
    curated, inputs = write_curated(tiny_index, tmp_path)
    fake = FakeLLM(lambda request: "Cohort tokens expire after a day.")
    monkeypatch.setattr(answer, "create_llm", lambda *args, **kwargs: fake)
    cfg = make_cfg([f"ingest.documents=[{tiny_index.doc}]", *ANSWER_OVERRIDES, "answer.check=false"], tmp_path)
    assert cfg.answer.excerpt_facts == "drop"
    work = tmp_path / "answer"
    work.mkdir()
    answer.run(cfg, StageContext("answer", cfg, REPO_ROOT, work, inputs))

    reasons = {r["qid"]: r["reason"] for r in read_jsonl(work / Answer.DROPPED)}
    assert reasons.get("c00000-q0") == reasons.get("c00001-q0") == "excerpt_fact"
    kept = {r["qid"]: r for r in read_jsonl(work / Answer.ANSWERS)}
    assert kept["c00000-q1"]["answer_source"] == "fact"  # the fact sentence answers its question
    # only the question without any fact (a free-strategy one) reached the model
    assert [last_user_message(r).count("When do cohort tokens expire?") for r in fake.requests] == [1]


def test_every_question_is_answered_or_dropped_with_its_context(answered, tiny_index: BuiltIndex) -> None:
    cfg, curated, result, kept, dropped, work = answered
    chunks = {c["chunk_id"]: c for c in load_chunks(tiny_index.stage_dir("chunk"))}
    chunk_ids = set(chunks)
    assert sorted(r["qid"] for r in kept + dropped) == sorted(q["qid"] for q in curated)
    originals = {q["qid"]: q for q in curated}
    for record in kept + dropped:
        assert {k: record[k] for k in originals[record["qid"]]} == originals[record["qid"]]  # provenance carried over
        assert 1 <= len(record["context_chunk_ids"]) <= cfg.retriever.k
        assert set(record["context_chunk_ids"]) <= chunk_ids
        assert record["answer"] == record["answer"].strip()
    by_source = {source: [r for r in kept + dropped if r["answer_source"] == source] for source in ("fact", "rag")}
    assert [r["qid"] for r in by_source["fact"]] == ["c00000-q1"]  # only the clean fact sentence is extractive
    extractive = by_source["fact"][0]
    assert extractive["answer"] == extractive["fact"]
    # the round trip ran on the real model: its span is recorded, and the record is kept unless the
    # model found the answer only inside the question
    assert isinstance(extractive["checked_span"], str)
    assert (extractive in kept) == (check_outcome(extractive["checked_span"], extractive["question"], extractive["fact"]) != "in_question")
    assert all(1 <= r["attempts"] <= 1 + cfg.answer.regenerate_attempts for r in by_source["rag"])
    assert len(kept) >= 2, "SmolLM2 answered none of three questions whose answer is in the context"
    for record in kept:  # what the grounding checks promise about every kept answer
        assert len(record["answer"]) >= cfg.answer.min_chars
        assert set(numbers_in(record["answer"])) <= set(numbers_in(" ".join(chunks[c]["text"] for c in record["context_chunk_ids"]) + " " + (record["fact"] or "")))
        assert record["fact"] is None or is_grounded(record["answer"], record["fact"])
    for record in dropped:
        assert record["reason"] in {"empty", "truncated", "refusal", "unsupported_value", "ungrounded", "error"}
    items = read_jsonl(work / Answer.ITEMS)
    rag_items = {i["item_id"].rsplit("-a", 1)[0] for i in items if not i["item_id"].endswith("-check")}
    assert rag_items == {r["qid"] for r in by_source["rag"]}  # the extractive one is not answered by the model...
    assert {i["item_id"] for i in items if i["item_id"].endswith("-check")} == {"c00000-q1-check"}  # ...only checked
    assert all(i["status"] == "ok" and i["completion_tokens"] > 0 for i in items)
    assert result.metrics["questions"] == 4
    assert result.metrics["extractive_answers"] == 1
    # generate's and curate's 32 s plus this stage's own time, per kept pair
    assert 32.0 / len(kept) < result.metrics["seconds_per_kept_example"] < (32.0 + 600) / len(kept)
    assert sum(result.metrics[f"check/{o}_share"] for o in ("found", "in_question", "not_in_fact", "error")) == pytest.approx(1.0)
    assert result.metrics["answered"] == len(kept)
    assert result.metrics["kept_share"] == pytest.approx(len(kept) / 4)
    assert result.metrics["chunk_coverage"] == pytest.approx(len({r["chunk_id"] for r in kept}) / len(chunks))


def test_retrieval_metrics_for_every_retriever(answered) -> None:
    cfg, curated, result, kept, dropped, _ = answered
    k = cfg.retriever.k
    for kind in ("bm25", "dense", "ensemble"):
        hit1, hitk, mrr = (result.metrics[f"retrieval/{kind}/{name}"] for name in ("hit@1", f"hit@{k}", "mrr"))
        assert 0.0 <= hit1 <= mrr <= hitk <= 1.0, kind
    # the questions use their chunk's own rare words: BM25 ranks that chunk first
    assert result.metrics["retrieval/bm25/hit@1"] == 1.0
    # the context is the configured (ensemble) top-k, all of which fit the budget here
    found = sum(r["chunk_id"] in r["context_chunk_ids"] for r in kept + dropped) / len(curated)
    assert result.metrics[f"retrieval/ensemble/hit@{k}"] == pytest.approx(found)
    first = sum(r["context_chunk_ids"][0] == r["chunk_id"] for r in kept + dropped) / len(curated)
    assert result.metrics["retrieval/ensemble/hit@1"] == pytest.approx(first)


def test_check_outcome_of_the_round_trip() -> None:
    """Spans SmolLM2-135M returned for questions about facts of the sample manual."""
    watermark = "When usage exceeds the hard watermark of 95 percent, the node rejects all publishes with error QSR-5071."
    assert check_outcome("QSR-5071", "What error does the node return when usage exceeds the hard watermark?", watermark) == "found"
    assert check_outcome("95 percent", "What is the hard watermark of 95 percent?", watermark) == "in_question"
    voters = "A cluster with 3 voters tolerates the loss of 1 voter."
    assert check_outcome("1", "How many voters can a cluster with 3 voters lose?", voters) == "found"
    tokens = "The command qsctl token list --principal svc-billing lists the active tokens of a principal."
    assert check_outcome("psql --principal-vendor-name", "Which command lists the tokens of a principal?", tokens) == "not_in_fact"
    assert check_outcome("", "Which command lists the tokens of a principal?", tokens) == "not_in_fact"
    channels = "A node supports at most 5,000 channels by default."
    assert check_outcome("5000", "How many channels does a node support?", channels) == "found"  # thousands separators ignored
