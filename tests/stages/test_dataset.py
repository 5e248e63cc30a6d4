"""Dataset: split arithmetic and grouping, the three formats, provenance, and mlx-lm's own loader reading the files."""

from __future__ import annotations

import types
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import DictConfig

from conftest import REPO_ROOT
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.core.models import resolve_gguf
from runner.core.stage import StageContext
from runner.core.artifacts import Answer, Chunk, Dataset, Generate, Ingest
from runner.stages import dataset
from runner.stages.dataset import format_record, split_records


def _records(n: int, chunks: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "qid": f"q{i:03d}", "question": f"Which value does setting number {i} take?", "answer": f"Setting {i} takes the value {i * 7}.",
            "chunk_id": f"c{i % chunks:05d}", "context_chunk_ids": [f"c{i % chunks:05d}"], "doc_id": "d001",
            "source": "manual.md", "page": 1 + i % 3, "fact": None, "strategy": "fact_anchored",
        }
        for i in range(n)
    ]


def _norm(question: str) -> str:
    return " ".join(question.lower().split())


# ---------------------------------------------------------------- split arithmetic


@pytest.mark.parametrize(
    ("n", "fraction", "valid_size"),
    [
        (100, 0.2, 20),  # the original script put 80 % in valid: valid is the small side
        (100, 0.1, 10),
        (10, 0.25, 3),  # ceil(2.5)
        (7, 0.2, 2),  # ceil(1.4)
        (2, 0.2, 1),  # ceil(0.4): even two records give a validation example
        (1, 0.2, 0),  # one record: it trains
    ],
)
def test_valid_gets_valid_fraction_of_the_records(n: int, fraction: float, valid_size: int) -> None:
    train, valid = split_records(_records(n), fraction, "question", seed=0)
    assert (len(train), len(valid)) == (n - valid_size, valid_size)
    assert sorted(r["qid"] for r in train + valid) == [f"q{i:03d}" for i in range(n)]


def test_split_is_seeded() -> None:
    records = _records(50)
    first = split_records(records, 0.2, "question", seed=3)
    assert first == split_records(records, 0.2, "question", seed=3)
    assert {r["qid"] for r in first[1]} != {r["qid"] for r in split_records(records, 0.2, "question", seed=4)[1]}


def test_no_question_text_lands_in_both_splits() -> None:
    records = _records(40)
    # the same question (up to case and spaces) asked about two different chunks
    records[5]["question"] = "What port does the relay use?"
    records[17]["question"] = "  what PORT does the relay use? "
    records[17]["chunk_id"] = "c00009"
    for split_by in ("question", "chunk"):
        for seed in range(8):
            train, valid = split_records(records, 0.3, split_by, seed)
            assert not {_norm(r["question"]) for r in train} & {_norm(r["question"]) for r in valid}, (split_by, seed)
            assert len(train) + len(valid) >= len(records) - 1  # at most the one duplicate is dropped from valid


def test_split_by_chunk_keeps_each_chunks_questions_together() -> None:
    records = _records(100, chunks=10)  # ten chunks of ten questions
    train, valid = split_records(records, 0.2, "chunk", seed=0)
    train_chunks, valid_chunks = {r["chunk_id"] for r in train}, {r["chunk_id"] for r in valid}
    assert not train_chunks & valid_chunks
    assert (len(train), len(valid)) == (80, 20) and len(valid_chunks) == 2


def test_split_by_chunk_never_puts_an_oversized_chunk_in_valid() -> None:
    # chunk A has 9 questions, chunk B one; the target is ceil(0.2 * 10) = 2 records
    records = _records(10, chunks=1)
    records[9]["chunk_id"] = "c-b"
    for seed in range(6):
        train, valid = split_records(records, 0.2, "chunk", seed)
        assert [r["chunk_id"] for r in valid] == ["c-b"] and len(train) == 9, seed
    # two chunks of 5: none fits the target of 2, so the smaller (equal) one is taken, never more than train
    records = _records(10, chunks=2)
    train, valid = split_records(records, 0.2, "chunk", seed=0)
    assert (len(train), len(valid)) == (5, 5)
    # one chunk: everything trains (putting it in valid would leave nothing to train on)
    train, valid = split_records(_records(10, chunks=1), 0.2, "chunk", seed=0)
    assert (len(train), len(valid)) == (10, 0)


def test_format_record() -> None:
    assert format_record("Q?", "A.", "chat") == {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}
    assert format_record("Q?", "A.", "text") == {"text": "<s>[INST] Q? [/INST] A.</s>"}
    assert format_record("Q?", "A.", "completions") == {"prompt": "Q?", "completion": "A."}


# ---------------------------------------------------------------- the stage, every format, read by mlx-lm


# the splits of the earlier dataset stage: question/answer pairs only, valid_fraction of them by question
LEGACY = ["dataset.split_by=question", "dataset.phrasings_per_fact=1", "dataset.mix.fact_text=0", "dataset.mix.chunk_text=0"]


def _run_stage(cfg: DictConfig, records: list[dict[str, Any]], tmp_path: Path, facts: list[dict[str, Any]] = ()) -> tuple[Any, Path]:
    answers = tmp_path / "answer"
    answers.mkdir(parents=True, exist_ok=True)
    write_jsonl(answers / Answer.ANSWERS, records)
    generate = tmp_path / "generate"
    generate.mkdir(parents=True, exist_ok=True)
    write_jsonl(generate / Generate.FACTS, list(facts))
    chunk_dir = tmp_path / "chunk"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    chunk_ids = dict.fromkeys([r["chunk_id"] for r in records] + [f["chunk_id"] for f in facts])
    write_jsonl(chunk_dir / Chunk.CHUNKS, [{"chunk_id": c, "doc_id": "d001", "source": "manual.md", "page": 1, "text": f"Text of chunk {c}.", "heading": "1.1 Settings"} for c in chunk_ids])
    ingest = tmp_path / "ingest"
    ingest.mkdir(parents=True, exist_ok=True)
    pages = sorted({(r["source"], r["page"]) for r in records} | {("manual.md", 9)})  # page 9: no example
    write_jsonl(ingest / Ingest.PAGES, [{"doc_id": "d001", "source": s, "page": p, "text": "..."} for s, p in pages])
    work = tmp_path / "dataset"
    work.mkdir(parents=True, exist_ok=True)
    inputs = {"answer": answers, "generate": generate, "chunk": chunk_dir, "ingest": ingest}
    result = dataset.run(cfg, StageContext("dataset", cfg, REPO_ROOT, work, inputs))
    assert (work / "coverage.png").is_file()
    assert result.metrics["pages_covered_share"] == pytest.approx((len(pages) - 1) / len(pages))
    return result, work


@pytest.fixture(scope="module")
def tokenizer():
    """SmolLM2's tokenizer (with its chat template) read from the embedded GGUF."""
    from transformers import AutoTokenizer

    gguf = resolve_gguf("embedded:smollm2", REPO_ROOT)
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _mlx_load(folder: Path, tokenizer: Any, mask_prompt: bool) -> tuple[Any, Any]:
    """What ``mlx_lm lora --data folder`` does: load train/valid, then tokenize each record."""
    from mlx_lm.tuner.datasets import CacheDataset, load_dataset

    args = types.SimpleNamespace(data=str(folder), train=True, test=False, mask_prompt=mask_prompt)
    train, valid, test = load_dataset(args, tokenizer)
    assert len(test) == 0
    return CacheDataset(train), (CacheDataset(valid) if len(valid) else valid)


@pytest.mark.parametrize("fmt", ["chat", "text", "completions"])
def test_stage_writes_each_format_and_mlx_lm_loads_it(
    fmt: str, composed_cfg: Callable[..., DictConfig], tmp_path: Path, tokenizer: Any
) -> None:
    cfg = composed_cfg([f"dataset={fmt}", *LEGACY])
    records = _records(20)
    result, work = _run_stage(cfg, records, tmp_path)

    train, valid = read_jsonl(work / Dataset.TRAIN), read_jsonl(work / Dataset.VALID)
    assert (len(train), len(valid)) == (16, 4)  # ceil(0.2 * 20) = 4
    expected_keys = {"chat": {"messages"}, "text": {"text"}, "completions": {"prompt", "completion"}}[fmt]
    assert all(set(r) == expected_keys for r in train + valid)

    # provenance: line i of each split points back to the answered record written there
    by_qid = {r["qid"]: r for r in records}
    provenance = read_jsonl(work / Dataset.PROVENANCE)
    assert Counter(p["split"] for p in provenance) == {"train": 16, "valid": 4}
    for split, rows in (("train", train), ("valid", valid)):
        for p in (p for p in provenance if p["split"] == split):
            source = by_qid[p["qid"]]
            assert rows[p["line"]] == format_record(source["question"], source["answer"], fmt)
            assert (p["chunk_id"], p["page"], p["context_chunk_ids"]) == (source["chunk_id"], source["page"], source["context_chunk_ids"])

    assert result.metrics["train_size"] == 16 and result.metrics["valid_size"] == 4
    assert result.datasets == {"training": Dataset.TRAIN, "validation": Dataset.VALID}

    # mlx-lm's loader picks the dataset class from the keys and tokenizes every record
    mask = fmt != "text"  # mlx-lm refuses prompt masking for plain text
    train_set, valid_set = _mlx_load(work, tokenizer, mask_prompt=mask)
    assert (len(train_set), len(valid_set)) == (16, 4)
    for data in (train_set, valid_set):
        for i in range(len(data)):
            tokens, offset = data[i]
            assert len(tokens) > 5 and all(isinstance(t, int) for t in tokens)
            assert (0 < offset < len(tokens)) if mask else offset == 0  # the answer is after the prompt
    if fmt != "text":
        # the chat template wraps the turns; the answer text survives tokenization
        tokens, offset = train_set[0]
        assert "<|im_start|>assistant" in tokenizer.decode(tokens)
        answer_text = train[0]["messages"][1]["content"] if fmt == "chat" else train[0]["completion"]
        assert answer_text in tokenizer.decode(tokens[offset:])


def test_a_single_record_trains_and_mlx_lm_still_loads(composed_cfg: Callable[..., DictConfig], tmp_path: Path, tokenizer: Any) -> None:
    result, work = _run_stage(composed_cfg(LEGACY), _records(1), tmp_path)
    assert read_jsonl(work / Dataset.TRAIN) and not (work / Dataset.VALID).exists()  # an empty valid.jsonl breaks mlx-lm
    assert result.metrics["valid_size"] == 0 and "validation" not in result.datasets and Dataset.VALID not in result.artifacts
    train_set, valid_set = _mlx_load(work, tokenizer, mask_prompt=True)
    assert len(train_set) == 1 and len(valid_set) == 0


# ---------------------------------------------------------------- every fact trains, split by phrasing

FACT_SENTENCES = [
    "The relay listens on TCP port 7460 for the Quillstream Protocol.",
    "A node supports at most 5,000 channels unless limits.max_channels is raised.",
    "The archive profile keeps messages for 720 hours before deleting them.",
    "Audit events are written as JSON lines to /var/log/quillstream/audit.log.",
    "The relay sends at most 256 unacknowledged messages to each subscriber, as set by delivery.prefetch.",
]


def _facts() -> list[dict[str, Any]]:
    return [
        {"fact_id": f"f{i}", "text": text, "kind": "sentence", "chunk_id": f"c{i // 2:05d}", "doc_id": "d001", "source": "manual.md", "page": 1 + i, "heading": "1.1 Settings"}
        for i, text in enumerate(FACT_SENTENCES)
    ]


def _pairs(questions: dict[int, list[str]]) -> list[dict[str, Any]]:
    """Kept pairs: model-written questions about fact i, answered by its sentence."""
    facts = _facts()
    return [
        {"qid": f"q{i}-{j}", "question": q, "answer": facts[i]["text"], "fact": facts[i]["text"], "fact_id": facts[i]["fact_id"],
         "chunk_id": facts[i]["chunk_id"], "doc_id": "d001", "source": "manual.md", "page": facts[i]["page"], "strategy": "fact_anchored", "context_chunk_ids": []}
        for i, qs in questions.items() for j, q in enumerate(qs)
    ]


QUESTIONS = {
    0: ["Which TCP port does the relay listen on?", "On which port does the Quillstream Protocol run?"],
    1: ["How many channels does a node support at most?", "What is the channel limit of a node?"],
    2: ["How long does the archive profile keep messages?"],
    # fact 3: no kept question; fact 4: no kept question but an identifier only it names
}


def _texts(records: list[dict[str, Any]]) -> str:
    return "\n".join(r.get("text") or " ".join(m["content"] for m in r.get("messages", [])) for r in records)


def test_every_fact_trains_and_one_phrasing_per_fact_is_held_out(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.cloze_per_fact=0", "dataset.heldout_questions=0", "dataset.max_kind_share=1", "dataset.mix.chunk_text=1", "generate.topic=Quillstream Relay"])
    result, work = _run_stage(cfg, _pairs(QUESTIONS), tmp_path, _facts())
    train, valid = read_jsonl(work / Dataset.TRAIN), read_jsonl(work / Dataset.VALID)
    eval_rows = read_jsonl(work / Dataset.EVAL_SETS)
    trained_text = _texts(train)

    # facts 0 and 1 have two phrasings: one held out each, the other trains with the fact
    assert len(valid) == 2 and result.metrics["facts_heldout"] == 2
    heldout = {r["question"]: r for r in eval_rows if r["set"] == "heldout"}
    assert len(heldout) == 2
    for question, row in heldout.items():
        assert question not in trained_text  # neither the question nor a rewrite of it trains
        assert row["reference"] in trained_text  # but its fact does
        assert row["context"].startswith("1.1 Settings")
    for sentence in FACT_SENTENCES:  # every fact is in training, as text at least
        assert sentence in trained_text
    # fact 4 had no question: one is anchored on the identifier only it names
    assert "What does the Quillstream Relay manual say about delivery.prefetch?" in trained_text
    # fact 3's path is its only identifier, so it is anchored too; nothing without a question is lost
    assert result.metrics["facts_without_question"] == 0
    assert {r["set"] for r in eval_rows} == {"heldout", "train"}
    kinds = Counter(p["kind"] for p in read_jsonl(work / Dataset.PROVENANCE) if p["split"] == "train")
    assert kinds["fact_text"] == 5 and kinds["chunk_text"] == 3 and kinds["qa"] == result.metrics["qa_records"] > 5


def test_unseen_facts_are_held_out_whole(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg(["dataset.unseen_fraction=0.4", "generate.topic=Quillstream Relay"])
    result, work = _run_stage(cfg, _pairs(QUESTIONS), tmp_path, _facts())
    trained_text = _texts(read_jsonl(work / Dataset.TRAIN))
    unseen = [r for r in read_jsonl(work / Dataset.EVAL_SETS) if r["set"] == "unseen"]
    assert result.metrics["facts_unseen"] == 2  # 40 % of the 5 askable facts
    # each asked twice: with its question (kept or anchored), and with its most checkable term blanked
    assert len(unseen) == 4 and len({r["fact_id"] for r in unseen}) == 2
    assert sorted(r["kind"] for r in unseen).count("cloze") == 2
    for row in unseen:
        assert row["answer"] not in trained_text and row["question"] not in trained_text
    assert result.metrics["facts_trained"] == 3


def test_phrasings_per_fact_caps_the_pairs_and_mix_sets_the_copies(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.cloze_per_fact=0", "dataset.max_kind_share=1", "dataset.phrasings_per_fact=2", "dataset.mix.qa=2", "dataset.mix.fact_text=3", "dataset.mix.chunk_text=0"])
    result, work = _run_stage(cfg, _pairs(QUESTIONS), tmp_path, _facts())
    provenance = [p for p in read_jsonl(work / Dataset.PROVENANCE) if p["split"] == "train"]
    per_fact = Counter(p["fact_id"] for p in provenance if p["kind"] == "qa")
    assert max(per_fact.values()) == 2 * 2  # 2 phrasings, each twice
    assert Counter(p["kind"] for p in provenance)["fact_text"] == 3 * 5
    assert "chunk_text" not in {p["kind"] for p in provenance}


def test_a_small_corpus_holds_out_a_kept_question_its_anchor_replaces(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """No fact has a second phrasing: valid_fraction of the facts with a question hold it out, the fact trains
    as text (and through its anchored question when it names an identifier of its own), so learning is still measured."""
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.cloze_per_fact=0", "dataset.heldout_questions=0", "dataset.valid_fraction=0.5", "generate.topic=Quillstream Relay"])
    one_each = {1: ["How many channels does a node support at most?"], 2: ["How long does the archive profile keep messages?"]}
    result, work = _run_stage(cfg, _pairs(one_each), tmp_path, _facts())
    heldout = [r for r in read_jsonl(work / Dataset.EVAL_SETS) if r["set"] == "heldout"]
    assert len(heldout) == result.metrics["valid_size"] == 1  # ceil(0.5 * 2)
    (held,) = heldout
    trained_text = _texts(read_jsonl(work / Dataset.TRAIN))
    assert held["question"] not in trained_text and held["reference"] in trained_text
    kept = [q for qs in one_each.values() for q in qs if q != held["question"]]
    assert all(q in trained_text for q in kept)
    if "limits.max_channels" in held["reference"]:  # fact 1 names an identifier of its own: its anchor trains
        assert "What does the Quillstream Relay manual say about limits.max_channels?" in trained_text


def test_fill_in_the_blank_questions_train_every_fact_and_are_never_held_out(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.cloze_per_fact=2", "dataset.heldout_questions=0", "generate.topic=Quillstream Relay"])
    result, work = _run_stage(cfg, _pairs(QUESTIONS), tmp_path, _facts())
    provenance = read_jsonl(work / Dataset.PROVENANCE)
    train = read_jsonl(work / Dataset.TRAIN)
    cloze = [train[p["line"]] for p in provenance if p["split"] == "train" and p["phrasing"] == "cloze"]
    assert cloze and len(cloze) <= 2 * len(FACT_SENTENCES)
    question, answer = cloze[0]["messages"][0]["content"], cloze[0]["messages"][1]["content"]
    assert question.startswith('Fill in the blank from the Quillstream Relay manual: "') and "___" in question
    assert answer in " ".join(FACT_SENTENCES) and question.replace("___", answer).endswith(f'{answer}' + question.split("___", 1)[1])
    # with blanks to train on, every fact with a kept question holds that question out: the fact still trains
    heldout = [r for r in read_jsonl(work / Dataset.EVAL_SETS) if r["set"] == "heldout"]
    assert len(heldout) == result.metrics["facts_heldout"] == 3
    assert not any("___" in r["question"] for r in read_jsonl(work / Dataset.EVAL_SETS))


def test_facts_with_one_phrasing_are_asked_with_a_blank_until_there_are_heldout_questions(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """A real manual's model leaves most facts one phrasing: those facts are asked with their most checkable term
    blanked, a question never trained (the fact still trains), so the held-out set is as large as asked."""
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.cloze_per_fact=1", "dataset.heldout_questions=5", "generate.topic=Quillstream Relay"])
    result, work = _run_stage(cfg, _pairs(QUESTIONS), tmp_path, _facts())
    heldout = [r for r in read_jsonl(work / Dataset.EVAL_SETS) if r["set"] == "heldout"]
    # facts 0-2 hold out a kept question (fact 2's second phrasing is its trained blank), facts 3 and 4 a blank
    assert len(heldout) == result.metrics["valid_size"] == 5
    blanks = [r for r in heldout if r["kind"] == "cloze"]
    assert len(blanks) == 2
    train = read_jsonl(work / Dataset.TRAIN)
    trained_text = _texts(train)
    trained_questions = {r["messages"][0]["content"] for r in train if "messages" in r}
    for row in blanks:
        assert row["question"] not in trained_questions  # the blank is never trained, nor is its term blanked in training
        assert not any(q.startswith(row["question"].split("___")[0]) and q.endswith(row["question"].split("___")[1]) for q in trained_questions)
        assert row["reference"] == row["answer"] and row["reference"].lower() not in row["question"].lower()
        assert next(f for f in FACT_SENTENCES if row["reference"] in f) in trained_text  # the fact trains


def test_a_default_question_is_scored_against_the_value_it_asks_for(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.heldout_questions=0", "generate.topic=Quillstream Relay"])
    sentence = "The key node.data_dir defaults to /var/lib/quillstream, node.name defaults to the host name, and node.shutdown_timeout_s defaults to 30."
    fact = {"fact_id": "f9", "text": sentence, "kind": "sentence", "chunk_id": "c00009", "doc_id": "d001", "source": "manual.md", "page": 3, "heading": "2 Nodes"}
    pairs = [
        {"qid": f"t{i}", "question": f"What is the default value of {key}?", "answer": sentence, "fact": sentence, "fact_id": "f9", "answer_hint": key,
         "chunk_id": "c00009", "doc_id": "d001", "source": "manual.md", "page": 3, "strategy": "template", "template": "default_value", "context_chunk_ids": []}
        for i, key in enumerate(("node.data_dir", "node.shutdown_timeout_s"))
    ]
    _, work = _run_stage(cfg, pairs, tmp_path, [fact])
    rows = {r["question"]: r for r in read_jsonl(work / Dataset.EVAL_SETS)}
    asked = rows["What is the default value of node.shutdown_timeout_s?"] if "What is the default value of node.shutdown_timeout_s?" in rows else rows["What is the default value of node.data_dir?"]
    assert asked["reference"] in ("30", "/var/lib/quillstream") and asked["answer"] == sentence  # trained on the sentence, scored on the value


def test_kind_limits_cut_the_largest_kinds_to_the_share() -> None:
    limits = dataset.kind_limits(Counter({"fact_text": 240, "model_written": 100, "anchor": 70, "template:default_value": 40, "cloze": 60}), 0.3)
    total = sum(limits.values())
    assert all(n <= 0.3 * total + 1e-9 for n in limits.values())
    assert limits["model_written"] == 100 and limits["anchor"] == 70  # kinds under the share keep every record
    # three kinds cannot each be under 30 %: the share becomes a third
    assert dataset.kind_limits(Counter({"a": 90, "b": 10, "c": 10}), 0.3) == {"a": 10, "b": 10, "c": 10}


def test_no_record_kind_trains_above_its_share_and_every_fact_still_trains(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = composed_cfg(["dataset.unseen_fraction=0", "dataset.heldout_questions=0", "dataset.max_kind_share=0.4", "dataset.mix.fact_text=3", "generate.topic=Quillstream Relay"])
    result, work = _run_stage(cfg, _pairs(QUESTIONS), tmp_path, _facts())
    provenance = [p for p in read_jsonl(work / Dataset.PROVENANCE) if p["split"] == "train"]
    shares = Counter(p["record_kind"] for p in provenance)
    assert result.metrics["dropped_by_kind_cap/fact_text"] > 0
    assert shares["fact_text"] <= 0.4 * len(provenance) + 1
    assert result.metrics["kind_share/fact_text"] == pytest.approx(shares["fact_text"] / len(provenance))
    assert {p["fact_id"] for p in provenance} >= {f["fact_id"] for f in _facts()}  # no fact lost its last record
    train = read_jsonl(work / Dataset.TRAIN)
    assert len(train) == len(provenance) and all(train[p["line"]] for p in provenance)
