"""Generate: reply parsing, work items, the real stage on SmolLM2 (both strategies).
(Killed mid-run and resumed: tests/reliability/test_interruption.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import DictConfig

from conftest import REPO_ROOT, BuiltIndex
from runner.questions.facts import normalize_whitespace
from runner.core.jsonl import read_jsonl
from runner.core.stage import StageContext
from runner.stages import generate
from runner.core.artifacts import Generate, load_chunks
from runner.stages.generate import build_items, parse_questions, select_chunks

# The tiny_index document with small model settings: one fact and one candidate per chunk, short replies.
# Spelled out rather than debug=tiny, whose values may change. One thread: on two shared cores
# llama.cpp with two threads was 3-4x slower than with one.
SMALL = [
    "chunk.size=160", "chunk.overlap=0", "llm.n_ctx=1024", "llm.max_tokens=40", "llm.n_threads=1",
    "generate.questions_per_chunk=1", "generate.max_facts_per_chunk=1", "generate.candidates_per_fact=1",
]


def small_overrides(index: BuiltIndex, *extra: str) -> list[str]:
    return [f"ingest.documents=[{index.doc}]", *SMALL, *extra]


def run_generate(cfg: DictConfig, chunk_dir: Path, work_dir: Path) -> Any:
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext("generate", cfg, REPO_ROOT, work_dir, {"chunk": chunk_dir})
    return generate.run(cfg, ctx)


# ---------------------------------------------------------------- parsing replies


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '{"questions": ["What port does the relay use?", "How many lanes can a channel have?"]}',
            ["What port does the relay use?", "How many lanes can a channel have?"],
        ),
        ('{"question": "Which command lists channels?"}', ["Which command lists channels?"]),
        # a list; numbering and quotes are stripped, so the two entries are one question
        ('["1. What port does the relay use?", "What port does the relay use?"]', ["What port does the relay use?"]),
        # JSON inside prose and a code fence
        (
            'Sure! Here are the questions:\n```json\n{"questions": ["Which command lists channels?"]}\n```\nHope this helps.',
            ["Which command lists channels?"],
        ),
        # numbered plain lines; the line without "?" is not a question
        (
            "1. What is the default port?\n2) How many lanes are allowed?\nQ3: Which file holds the license?\n"
            "- \"Is there a size limit?\"\n**Who signs the license file?**\nThis line is not a question.",
            [
                "What is the default port?",
                "How many lanes are allowed?",
                "Which file holds the license?",
                "Is there a size limit?",
                "Who signs the license file?",
            ],
        ),
        ("lorem ipsum dolor sit amet", []),
        ("", []),
        ('{"answer": 42}', []),
        ('{"questions": []}', []),
        ('{"questions": ["What is', []),  # cut off mid-string: nothing complete to keep
    ],
    ids=["object", "single", "list", "prose", "lines", "garbage", "empty", "other-object", "empty-list", "truncated"],
)
def test_parse_questions(raw: str, expected: list[str]) -> None:
    assert parse_questions(raw) == expected


# ---------------------------------------------------------------- work items (no model)


def test_select_chunks_takes_a_seeded_sample_in_reading_order() -> None:
    chunks = [{"chunk_id": f"c{i}"} for i in range(10)]
    first = select_chunks(chunks, 3, seed=5)
    assert first == select_chunks(chunks, 3, seed=5)
    assert len(first) == 3 and [c["chunk_id"] for c in first] == sorted(c["chunk_id"] for c in first)
    assert select_chunks(chunks, None, seed=5) == chunks
    assert select_chunks(chunks, 99, seed=5) == chunks


def test_fact_items_ask_once_per_fact_and_candidate(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg(["generate.max_facts_per_chunk=2", "generate.questions_per_chunk=2", "generate.chars_per_question=null", "generate.candidates_per_fact=2"])
    chunk = {
        "chunk_id": "c00007", "doc_id": "d", "source": "s.md", "page": 1,
        "text": "The Admin API listens on port 7461 and requires a bearer token for every request.\n"
        "The relay is easy to operate and well documented.\n"
        "A node supports at most 5,000 channels unless limits.max_channels is raised.",
    }
    items = build_items([chunk], cfg)
    assert [i.item_id for i in items] == ["c00007-f0-k0", "c00007-f0-k1", "c00007-f1-k0", "c00007-f1-k1"]
    assert [i.fact for i in items[::2]] == [
        "The Admin API listens on port 7461 and requires a bearer token for every request.",
        "A node supports at most 5,000 channels unless limits.max_channels is raised.",
    ]
    first, second = items[0].request, items[1].request
    assert first.temperature is None and second.temperature >= 0.7  # extra candidates explore
    assert (first.seed, second.seed) == (cfg.generate.seed, cfg.generate.seed + 1)
    assert first.json_schema == generate.QUESTION_SCHEMA
    # few-shot turns from config, then the fact
    examples = list(cfg.prompts.fact_examples)
    assert len(first.messages) == 1 + 2 * len(examples) + 1
    assert items[0].fact in first.messages[-1]["content"]
    assert examples[0]["question"] in first.messages[2]["content"]


def test_free_items_ask_per_chunk_with_a_json_schema(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg(["generate.strategy=free", "generate.chars_per_question=50", "llm.max_tokens=30"])
    chunk = {"chunk_id": "c00001", "doc_id": "d", "source": "s.md", "page": 2, "text": "x" * 120}
    (item,) = build_items([chunk], cfg)
    # ceil(120 / 50) = 3 questions, 30 tokens each
    assert item.item_id == "c00001" and item.fact is None
    assert item.request.max_tokens == 90
    assert item.request.json_schema["properties"]["questions"]["maxItems"] == 3
    assert "x" * 120 in item.request.messages[-1]["content"]


# ---------------------------------------------------------------- the real stage (SmolLM2 via llama.cpp)


@pytest.fixture(scope="module")
def fact_run(tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("generate_facts")
    cfg = make_cfg(small_overrides(tiny_index, "generate.max_chunks=3"), tmp)
    result = run_generate(cfg, tiny_index.stage_dir("chunk"), tmp / "work")
    return cfg, result, tmp / "work"


def test_every_selected_chunk_gets_a_question_with_its_provenance(fact_run, tiny_index: BuiltIndex) -> None:
    cfg, result, work = fact_run
    chunks = load_chunks(tiny_index.stage_dir("chunk"))
    selected = select_chunks(chunks, cfg.generate.max_chunks, cfg.generate.seed)
    by_id = {c["chunk_id"]: c for c in chunks}
    questions = read_jsonl(work / Generate.INSTRUCTIONS)

    assert len(selected) == 3
    assert {q["chunk_id"] for q in questions} == {c["chunk_id"] for c in selected}
    assert len({q["qid"] for q in questions}) == len(questions)
    for q in questions:
        chunk = by_id[q["chunk_id"]]
        assert (q["doc_id"], q["source"], q["page"]) == (chunk["doc_id"], chunk["source"], chunk["page"])
        assert q["strategy"] == "fact_anchored"
        assert q["fact"] and q["fact"] in normalize_whitespace(chunk["text"])
        assert 10 <= len(q["question"]) <= 200, q  # the JSON schema's bounds
        assert q["qid"].startswith(f"{q['chunk_id']}-f0-k0-q")

    items = read_jsonl(work / Generate.ITEMS)
    assert sorted(i["item_id"] for i in items) == sorted(i.item_id for i in build_items(selected, cfg))
    assert all(i["status"] == "ok" and i["completion_tokens"] > 0 and i["prompt_tokens"] > 0 for i in items)
    assert result.metrics["chunk_coverage"] == 1.0
    assert result.metrics["requests"] == len(items) == 3
    assert result.metrics["questions"] == len(questions)
    assert result.metrics["errors"] == 0
    assert result.metrics["tokens_per_s"] > 0
    assert set(result.artifacts) == {Generate.INSTRUCTIONS, Generate.ITEMS, Generate.FACTS}


def test_free_strategy_runs_one_request_per_chunk(
    tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = make_cfg(small_overrides(tiny_index, "generate.strategy=free", "generate.max_chunks=2"), tmp_path)
    result = run_generate(cfg, tiny_index.stage_dir("chunk"), tmp_path / "work")

    selected = select_chunks(load_chunks(tiny_index.stage_dir("chunk")), 2, cfg.generate.seed)
    items = read_jsonl(tmp_path / "work" / Generate.ITEMS)
    assert sorted(i["item_id"] for i in items) == [c["chunk_id"] for c in selected]
    for item in items:
        assert item["strategy"] == "free" and item["fact"] is None
        assert item["status"] in ("ok", "no_question") and item["error"] is None
        assert item["raw"].lstrip().startswith("{")  # grammar-constrained JSON, possibly cut at max_tokens
        assert 0 < item["completion_tokens"] <= cfg.llm.max_tokens * cfg.generate.questions_per_chunk
    questions = read_jsonl(tmp_path / "work" / Generate.INSTRUCTIONS)
    assert all(q["strategy"] == "free" and q["fact"] is None and q["chunk_id"] in {c["chunk_id"] for c in selected} for q in questions)
    assert result.metrics["requests"] == 2
    assert result.metrics["questions"] == len(questions)
    assert result.metrics["responses_without_question"] == sum(i["status"] == "no_question" for i in items)
