"""Evaluate: a real tiny adapter (the train stage on a few records) against the base model in llama.cpp,
on a hand-written eval_sets.jsonl: set names, metric names with their intervals, missing sets, no probes,
the fallback to the dataset's splits, and a resumed rerun."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

from runner.core.artifacts import Answer, Dataset, Eval, Train
from runner.core.cache import MANIFEST
from runner.core.errors import InputError
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.stages import evaluate, train
from tiny_model import prepare_smollm2, stage_context, tiny_config

CHUNK = "## Zephyrix Beacon\n\nThe Zephyrix Beacon listens on TCP port 7311. It keeps at most 64 fennel entries."
# (set, question, reference): a fictional product, so nothing here is in the base model already
QUESTIONS = [
    ("train", "What port does the Zephyrix Beacon listen on?", "The Zephyrix Beacon listens on TCP port 7311."),
    ("train", "How many fennel entries does the Zephyrix Beacon keep?", "It keeps at most 64 fennel entries."),
    ("train", "What error does the Zephyrix Beacon return after its license expires?", "It returns error ZB-5083."),
    ("train", "How many nodes can a Zephyrix community cluster have?", "A community cluster has at most 3 nodes."),
    ("heldout", "Which TCP port is the Zephyrix Beacon bound to?", "The Zephyrix Beacon listens on TCP port 7311."),
    ("heldout", "What is the largest number of fennel entries the Zephyrix Beacon holds?", "It keeps at most 64 fennel entries."),
    ("heldout", "Which error code follows an expired Zephyrix license?", "It returns error ZB-5083."),
    ("unseen", "How much memory does the Zephyrix Beacon need?", "The Zephyrix Beacon needs at least 2 GiB of memory."),
    ("unseen", "Which file holds the Zephyrix Beacon settings?", "The settings live in /etc/zephyrix/beacon.toml."),
]
PROBES = [
    {"question": "On which port does the Zephyrix Beacon listen?", "answer": "It listens on TCP port 7311."},
    {"question": "How many fennel entries fit in the Zephyrix cache?", "answer": "At most 64 fennel entries."},
]
SCORES = ("new_term_recall", "fact_recall", "f1", "rougeL", "similarity")
SUFFIXES = ("base", "tuned", "delta", "delta_ci_low", "delta_ci_high")
TINY_EVAL = ["llm.n_threads=1", "llm.n_ctx=512", "eval.max_tokens=24", "eval.bootstrap_samples=200", "generate.topic=Zephyrix Beacon"]


def _chat(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _eval_set_records(sets: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"set": name, "id": f"{name}-{i}", "question": q, "reference": ref, "fact_id": f"f{i % 4}", "chunk_id": "c0", "context": CHUNK}
        for i, (name, q, ref) in enumerate(QUESTIONS)
        if name in sets
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train stage's folder: a real LoRA adapter (mlx, 15 iterations) on the train and heldout pairs, and its manifest."""
    prepared = prepare_smollm2(tmp_path_factory.getbasetemp())[0]
    data = tmp_path_factory.mktemp("train_data")
    write_jsonl(data / Dataset.TRAIN, [_chat(q, a) for name, q, a in QUESTIONS if name == "train"])
    write_jsonl(data / Dataset.VALID, [_chat(q, a) for name, q, a in QUESTIONS if name == "heldout"])
    cfg = tiny_config(["train.iters=15", "train.learning_rate=1e-3", "train.steps_per_eval=15", "train.save_every=15", "train.max_seq_length=128", "train.val_batches=-1", "llm.n_threads=1"])
    work_dir = tmp_path_factory.mktemp("eval_inputs") / "train"
    result = train.run(cfg, stage_context(cfg, work_dir, {"dataset": data, "prepare_model": prepared}))
    (work_dir / MANIFEST).write_text(json.dumps({"metrics": result.metrics}))  # what the pipeline writes
    assert (work_dir / Train.ADAPTER_GGUF).is_file()
    return work_dir


def _run_eval(compose: Callable[..., DictConfig], trained: Path, tmp_path: Path, dataset: Path, overrides: Sequence[str] = (), answer: Path | None = None, work: str = "eval") -> tuple[Any, Path]:
    cfg = compose([*TINY_EVAL, *overrides])  # the real configs: the answer prompts for the open-book row
    inputs = {"train": trained, "dataset": dataset, "answer": answer or tmp_path / "no_answer_stage"}
    work_dir = tmp_path / work
    return evaluate.run(cfg, stage_context(cfg, work_dir, inputs)), work_dir


def _dataset_with(tmp_path: Path, sets: Sequence[str]) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir(exist_ok=True)
    write_jsonl(folder / Dataset.EVAL_SETS, _eval_set_records(sets))
    return folder


def _probes_file(tmp_path: Path) -> Path:
    path = tmp_path / "probes.jsonl"
    write_jsonl(path, PROBES)
    return path


def _set_names(metrics: dict[str, float]) -> set[str]:
    return {key.split("/")[0] for key in metrics if key.endswith("/questions")}


def _check_intervals(metrics: dict[str, float], set_name: str) -> None:
    for score in SCORES:
        stem = f"{set_name}/{score}"
        for suffix in SUFFIXES:
            assert math.isfinite(metrics[f"{stem}/{suffix}"]), f"{stem}/{suffix}"
        assert metrics[f"{stem}/delta"] == pytest.approx(metrics[f"{stem}/tuned"] - metrics[f"{stem}/base"])
        assert metrics[f"{stem}/delta_ci_low"] <= metrics[f"{stem}/delta"] <= metrics[f"{stem}/delta_ci_high"], stem


def test_every_set_gets_scores_with_intervals_tables_and_a_report(composed_cfg: Callable[..., DictConfig], trained: Path, tmp_path: Path) -> None:
    dataset = _dataset_with(tmp_path, ("heldout", "unseen", "train"))
    overrides = [f"eval.probes={_probes_file(tmp_path)}", "eval.train_sample=3", "eval.openbook_questions=2"]
    result, work_dir = _run_eval(composed_cfg, trained, tmp_path, dataset, overrides)
    m = result.metrics

    assert _set_names(m) == {"heldout", "unseen", "probes", "train", "openbook"}
    assert {name: m[f"{name}/questions"] for name in _set_names(m)} == {"heldout": 3, "unseen": 2, "probes": 2, "train": 3, "openbook": 2}
    for name in _set_names(m):
        _check_intervals(m, name)
    assert not any(k.startswith("eval/") for k in m), "the pipeline adds the eval/ prefix"
    # loss and perplexity on the held-out phrasings come from the train stage, without an interval
    assert m["heldout/loss/base"] == pytest.approx(json.loads((trained / MANIFEST).read_text())["metrics"]["val/loss_before"])
    assert "heldout/loss/delta_ci_low" not in m

    assert result.tables == {f"eval/{name}_comparison.json": f"comparison_{name}.jsonl" for name in _set_names(m)}
    rows = read_jsonl(work_dir / Eval.COMPARISON)
    assert [r["set"] for r in rows] == ["heldout"] * 3 + ["unseen"] * 2 + ["probes"] * 2 + ["train"] * 3 + ["openbook"] * 2
    openbook = read_jsonl(work_dir / "comparison_openbook.jsonl")
    assert {r["id"] for r in openbook} <= {"heldout-4", "heldout-5", "heldout-6"}
    # a tuned model trained on these facts answers some question differently from the base model
    assert any(r["base_answer"] != r["tuned_answer"] for r in rows)

    # every distinct prompt answered once per model: the three sets share no question, and the
    # open-book prompts differ from the closed-book ones
    assert len(read_jsonl(work_dir / "base_answers.jsonl")) == len(read_jsonl(work_dir / "tuned_answers.jsonl")) == 12
    report = (work_dir / Eval.REPORT).read_text()
    delta = m["heldout/fact_recall/delta"]
    assert f"{delta:+.3f} [{m['heldout/fact_recall/delta_ci_low']:+.3f}, {m['heldout/fact_recall/delta_ci_high']:+.3f}]" in report
    assert report.index("| heldout |") < report.index("| unseen |") < report.index("| probes |") < report.index("| train |") < report.index("| openbook |")
    assert all(f"### {name}" in report for name in _set_names(m))
    assert (work_dir / Eval.CHART).stat().st_size > 1000

    # a rerun in the same folder (a resumed stage) sends no request again and gives the same numbers
    again, _ = _run_eval(composed_cfg, trained, tmp_path, dataset, overrides)
    assert len(read_jsonl(work_dir / "base_answers.jsonl")) == 12
    assert again.metrics == m


def test_missing_sets_and_null_probes_leave_only_what_exists(composed_cfg: Callable[..., DictConfig], trained: Path, tmp_path: Path) -> None:
    dataset = _dataset_with(tmp_path, ("heldout",))  # no unseen or train record, no probes
    result, work_dir = _run_eval(composed_cfg, trained, tmp_path, dataset, ["eval.probes=null", "eval.openbook_questions=0", "eval.max_questions=2"])
    m = result.metrics
    assert _set_names(m) == {"heldout"} and m["heldout/questions"] == 2
    _check_intervals(m, "heldout")
    assert not (work_dir / "comparison_probes.jsonl").exists()
    assert set(result.tables) == {"eval/heldout_comparison.json"}


def test_without_eval_sets_heldout_and_train_come_from_the_dataset_splits(composed_cfg: Callable[..., DictConfig], trained: Path, tmp_path: Path) -> None:
    answer_dir, dataset = tmp_path / "answer", tmp_path / "dataset"
    answer_dir.mkdir()
    dataset.mkdir()
    answers = [{"qid": f"q{i}", "question": q, "answer": a, "chunk_id": "c0"} for i, (name, q, a) in enumerate(QUESTIONS) if name != "unseen"]
    write_jsonl(answer_dir / Answer.ANSWERS, answers)
    split = {q: "valid" if name == "heldout" else "train" for name, q, _ in QUESTIONS}
    provenance = [{"split": split[a["question"]], "qid": a["qid"]} for a in answers]
    write_jsonl(dataset / Dataset.PROVENANCE, [*provenance, {"split": "train", "qid": None}])  # a text record asks nothing
    result, work_dir = _run_eval(composed_cfg, trained, tmp_path, dataset, ["eval.probes=null"], answer=answer_dir)
    m = result.metrics
    assert _set_names(m) == {"heldout", "train"}  # no chunk text without eval_sets.jsonl: no open-book row
    assert m["heldout/questions"] == 3 and m["train/questions"] == 4
    assert {r["id"] for r in read_jsonl(work_dir / "comparison_heldout.jsonl")} == {"q4", "q5", "q6"}


@pytest.mark.parametrize(
    ("change", "message"),
    [({"set": "valid"}, "line 2: set 'valid' is not one of"), ({"id": "heldout-4"}, "line 2: id 'heldout-4' appears twice"), ({"question": ""}, "line 2: needs non-empty")],
)
def test_a_record_against_the_contract_is_an_input_error(composed_cfg: Callable[..., DictConfig], tmp_path: Path, change: dict, message: str) -> None:
    dataset = _dataset_with(tmp_path, ("heldout",))
    first, second, _ = _eval_set_records(("heldout",))
    write_jsonl(dataset / Dataset.EVAL_SETS, [first, {**second, **change}])
    with pytest.raises(InputError, match=message):
        _run_eval(composed_cfg, tmp_path / "no_train_stage", tmp_path, dataset, ["eval.probes=null"])  # fails before any model loads


def test_a_probe_is_covered_when_the_training_data_holds_every_term_its_answer_adds(tmp_path: Path) -> None:
    from runner.stages.evaluate import covered_by, trained_terms

    train_file = tmp_path / Dataset.TRAIN
    write_jsonl(train_file, [_chat("Which port does the beacon use?", "The Zephyrix Beacon listens on TCP port 7311."), {"text": "Error ZB-5083 follows."}])
    taught = trained_terms(train_file)
    port, cache = ({"question": p["question"], "reference": p["answer"]} for p in PROBES)
    assert covered_by(port, taught)  # 7311 was trained
    assert not covered_by(cache, taught)  # 64 never was
    assert covered_by({"question": "Which error?", "reference": "Something else.", "key_terms": ["ZB-5083"]}, taught)  # its own key terms
