"""Evaluate: base vs tuned model, side by side, on sets that tell learned facts from unseen ones.

Sets (in ``runner.evaluation.report.SET_ORDER``): ``heldout`` (a trained fact asked in a wording that was not
trained), ``unseen`` (facts kept out of training entirely: the control), ``probes`` (hand-written),
``probes_covered`` / ``probes_uncovered`` (the probes whose new key terms the training data holds, or
not: what tuning could have taught), ``train`` (a seeded sample of training pairs: the memorization
ceiling), all closed-book (the
question alone, as in training), and ``openbook`` (held-out questions with the fact's chunk as
context through the answer prompt: what a model gets when it sees the text). The dataset stage
lists the first three in ``eval_sets.jsonl``; without that file, ``heldout`` and ``train`` come
from the dataset's valid and train provenance.

Both models answer with the same greedy decoding and the same engine (llama.cpp: the base GGUF,
and the base GGUF plus the exported LoRA adapter), one load and one batched pass per model over
every distinct prompt. Scores per question: new-term recall (the reference's key terms that the
question does not hold: what the answer adds), fact recall (all the reference's key terms), token F1,
ROUGE-L and semantic similarity (the embedding model); per set and score: base and tuned means, the delta and its 95 % paired
bootstrap interval. Loss and perplexity on the held-out phrasings come from the train stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from runner.core.artifacts import Answer, Dataset, Eval, Train
from runner.core.cache import MANIFEST, write_text_atomic
from runner.retrieval.embeddings import embed_texts
from runner.core.errors import InputError
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.llm import ChatRequest, create_llm
from runner.llm.resumable import latest_results, raise_if_too_many_failed, response_fields, run_resumable
from runner.evaluation.metrics import fact_recall, new_term_recall, new_terms, paired_delta, rouge_l, token_f1
from runner.questions.facts import comparable_terms
from runner.evaluation.report import SET_ORDER, draw_chart, render_report
from runner.core.stage import StageContext, StageResult

log = logging.getLogger(__name__)

ROW_METRICS = ("new_term_recall", "fact_recall", "f1", "rougeL", "similarity")
DATASET_SETS = ("heldout", "unseen", "train")  # the sets eval_sets.jsonl may hold
OPENBOOK = "openbook"
_EVAL_SET_FIELDS = ("id", "question", "reference")


def _read_eval_sets(path: Path) -> dict[str, list[dict[str, Any]]]:
    """eval_sets.jsonl grouped by set, each record checked against the dataset stage's contract."""
    grouped: dict[str, list[dict[str, Any]]] = {name: [] for name in DATASET_SETS}
    seen: set[str] = set()
    for number, record in enumerate(read_jsonl(path), start=1):
        if record.get("set") not in DATASET_SETS:
            raise InputError(f"{path} line {number}: set {record.get('set')!r} is not one of {', '.join(DATASET_SETS)}")
        if not all(isinstance(record.get(key), str) and record[key] for key in _EVAL_SET_FIELDS):
            raise InputError(f"{path} line {number}: needs non-empty string fields {', '.join(_EVAL_SET_FIELDS)}")
        if record["id"] in seen:
            raise InputError(f"{path} line {number}: id {record['id']!r} appears twice")
        seen.add(record["id"])
        grouped[record["set"]].append(record)
    return grouped


def _sets_from_provenance(ctx: StageContext) -> dict[str, list[dict[str, Any]]]:
    """Before the dataset stage wrote eval_sets.jsonl: heldout = the valid split, train = the train split."""
    answers = {r["qid"]: r for r in read_jsonl(ctx.inputs["answer"] / Answer.ANSWERS)}
    grouped: dict[str, list[dict[str, Any]]] = {name: [] for name in DATASET_SETS}
    for record in read_jsonl(ctx.inputs["dataset"] / Dataset.PROVENANCE):
        answer = answers.get(record.get("qid"))
        if answer is None or record["split"] not in ("valid", "train"):
            continue  # a record that is no question/answer pair (a fact as text) asks nothing
        row = {"id": answer["qid"], "question": answer["question"], "reference": answer["answer"], "chunk_id": answer.get("chunk_id")}
        grouped["heldout" if record["split"] == "valid" else "train"].append(row)
    return grouped


def _load_probes(cfg: Any, ctx: StageContext) -> list[dict[str, Any]]:
    if not cfg.eval.probes:
        return []
    path = ctx.path(cfg.eval.probes)
    if not path.is_file():
        raise InputError(f"eval.probes={cfg.eval.probes!r} does not exist (looked for {path})")
    probes = read_jsonl(path)
    for number, probe in enumerate(probes, start=1):
        if not (isinstance(probe.get("question"), str) and isinstance(probe.get("answer"), str)):
            raise InputError(f"eval.probes: record {number} of {path} needs string fields 'question' and 'answer'")
    return [
        {"id": str(p.get("id", i)), "question": p["question"], "reference": p["answer"], **({"key_terms": p["key_terms"]} if p.get("key_terms") else {})}
        for i, p in enumerate(probes)
    ]


def _sample(rows: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of ``size`` rows, in their original order."""
    if size >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), size))]


def trained_terms(train_file: Path) -> set[str]:
    """Every key term the training records hold (messages, prompt/completion or text)."""
    terms: set[str] = set()
    for record in read_jsonl(train_file):
        parts = [m.get("content", "") for m in record.get("messages", [])] + [str(record.get(k, "")) for k in ("prompt", "completion", "text")]
        terms |= comparable_terms(" ".join(parts))
    return terms


def covered_by(row: dict[str, Any], taught: set[str]) -> bool:
    """A probe is covered when the training data holds every key term its answer adds to its question."""
    return new_terms(row["reference"], row["question"], row.get("key_terms")) <= taught


def load_eval_sets(cfg: Any, ctx: StageContext) -> dict[str, list[dict[str, Any]]]:
    """Non-empty sets in reading order: set name -> rows with id, question, reference (and, from
    eval_sets.jsonl, fact_id, chunk_id, context)."""
    ev = cfg.eval
    path = ctx.inputs["dataset"] / Dataset.EVAL_SETS
    if path.is_file():
        grouped = _read_eval_sets(path)
    else:
        log.info("eval: no %s from the dataset stage; heldout and train come from its valid and train splits", Dataset.EVAL_SETS)
        grouped = _sets_from_provenance(ctx)
    sets = {
        "heldout": grouped["heldout"],
        "unseen": grouped["unseen"],
        "probes": _load_probes(cfg, ctx),
        "train": _sample(grouped["train"], ev.train_sample, ev.seed),
    }
    if ev.max_questions:
        sets = {name: rows[: ev.max_questions] for name, rows in sets.items()}
    train_file = ctx.inputs["dataset"] / Dataset.TRAIN
    if sets["probes"] and train_file.is_file():
        taught = trained_terms(train_file)
        covered = [covered_by(row, taught) for row in sets["probes"]]
        sets["probes_covered"] = [row for row, yes in zip(sets["probes"], covered) if yes]
        sets["probes_uncovered"] = [row for row, yes in zip(sets["probes"], covered) if not yes]
    with_context = [row for row in sets["heldout"] if row.get("context")]
    sets[OPENBOOK] = _sample(with_context, ev.openbook_questions, ev.seed)
    return {name: sets[name] for name in SET_ORDER if sets.get(name)}


def answer_messages(set_name: str, row: dict[str, Any], cfg: Any) -> list[dict[str, str]]:
    """Closed-book: the question alone (after ``model.system_prompt``, when set), as in training. Open-book: the
    configured answer prompt with the fact's chunk."""
    if set_name != OPENBOOK:
        system = [{"role": "system", "content": cfg.model.system_prompt}] if cfg.model.system_prompt else []
        return [*system, {"role": "user", "content": row["question"]}]
    prompts, topic = cfg.prompts, cfg.generate.topic
    messages = [{"role": "system", "content": prompts.answer_system.format(topic=topic)}] if prompts.answer_system else []
    messages.append({"role": "user", "content": prompts.answer_user.format(topic=topic, question=row["question"], context=row["context"])})
    return messages


def prompt_key(messages: list[dict[str, str]]) -> str:
    """The same prompt in two sets (a probe that is also a held-out question) is answered once."""
    return hashlib.sha1(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def answer_all(llm: Any, prompts: dict[str, list[dict[str, str]]], max_tokens: int, path: Path, desc: str, max_error_share: float) -> dict[str, str]:
    """Greedy answers keyed by prompt key, in one batched pass, resumable through ``path``."""
    keys = list(prompts)
    requests = [ChatRequest(prompts[key], max_tokens=max_tokens, temperature=0.0) for key in keys]
    run_resumable(llm, keys, requests, path, lambda i, r: {"status": "ok" if r.ok else "error", **response_fields(r)}, desc)
    latest = latest_results(path)
    errors = [latest[key].get("error") or "unknown" for key in keys if latest[key].get("status") == "error"]
    raise_if_too_many_failed(errors, len(keys), max_error_share, desc)
    # a request that failed within the accepted share counts as an empty (wrong) answer
    return {key: "" if latest[key].get("status") == "error" else latest[key]["raw"].strip() for key in keys}


def score_rows(rows: list[dict[str, Any]], embed: Any) -> None:
    """Add per-row scores for base and tuned answers in place."""
    ref_vectors = embed([r["reference"] for r in rows])
    for model in ("base", "tuned"):
        answers = [r[f"{model}_answer"] for r in rows]
        similarity = np.sum(embed(answers) * ref_vectors, axis=1)
        for row, answer, sim in zip(rows, answers, similarity):
            row[f"{model}_f1"] = token_f1(answer, row["reference"])
            row[f"{model}_rougeL"] = rouge_l(answer, row["reference"])
            row[f"{model}_similarity"] = float(sim)
            row[f"{model}_fact_recall"] = fact_recall(answer, row["reference"])
            row[f"{model}_new_term_recall"] = new_term_recall(answer, row["reference"], row["question"], row.get("key_terms"))


def summarize(rows: list[dict[str, Any]], bootstrap_samples: int, seed: int) -> dict[str, float]:
    """Per metric: base and tuned means, delta and its 95 % paired bootstrap interval and width, and the
    questions scored (NaN rows left out: a question that leaves no new term has no new-term recall)."""
    summary = {}
    for metric in ROW_METRICS:
        stats = paired_delta([r[f"base_{metric}"] for r in rows], [r[f"tuned_{metric}"] for r in rows], bootstrap_samples, seed)
        if stats["n"]:
            summary.update({f"{metric}/{name}": value for name, value in stats.items()})
            summary[f"{metric}/delta_ci_width"] = stats["delta_ci_high"] - stats["delta_ci_low"]
    return summary


def loss_metrics(train_dir: Path) -> dict[str, float]:
    """Loss and perplexity on the held-out phrasings (valid.jsonl) before (base) and after (tuned) training."""
    metrics = json.loads((train_dir / MANIFEST).read_text())["metrics"] if (train_dir / MANIFEST).exists() else {}
    before, after = metrics.get("val/loss_before"), metrics.get("val/loss_after")
    if before is None or after is None:
        return {}
    return {
        "heldout/loss/base": before,
        "heldout/loss/tuned": after,
        "heldout/loss/delta": after - before,
        "heldout/perplexity/base": math.exp(min(before, 50)),
        "heldout/perplexity/tuned": math.exp(min(after, 50)),
        "heldout/perplexity/delta": math.exp(min(after, 50)) - math.exp(min(before, 50)),
    }


def _answer_with_both_models(cfg: Any, ctx: StageContext, prompts: dict[str, list[dict[str, str]]]) -> dict[str, dict[str, str]]:
    adapter = ctx.inputs["train"] / Train.ADAPTER_GGUF
    if not adapter.is_file():
        raise InputError(f"the train stage produced no GGUF adapter at {adapter}")
    llm_cfg = OmegaConf.merge(cfg.llm, {"backend": "llama_cpp", "temperature": 0.0})
    answers = {}
    for model, lora in (("base", None), ("tuned", adapter)):
        llm = create_llm(llm_cfg, cfg.model, ctx.root, lora_path=lora, default_system=False)
        try:
            path = ctx.work_dir / f"{model}_answers.jsonl"
            answers[model] = answer_all(llm, prompts, cfg.eval.max_tokens, path, f"eval {model}", cfg.llm.max_error_share)
        finally:
            llm.close()
    return answers


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Answer every eval question with both models; write the comparison tables, summary and report."""
    sets = load_eval_sets(cfg, ctx)
    messages = {name: [answer_messages(name, row, cfg) for row in rows] for name, rows in sets.items()}
    keys = {name: [prompt_key(m) for m in set_messages] for name, set_messages in messages.items()}
    prompts = {key: m for name in sets for key, m in zip(keys[name], messages[name])}
    log.info("eval: %d distinct prompts over %s", len(prompts), ", ".join(f"{name} {len(rows)}" for name, rows in sets.items()) or "no set")
    answers = _answer_with_both_models(cfg, ctx, prompts) if prompts else {}

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cfg.index, ctx.root, show_progress=False)

    metrics: dict[str, float] = loss_metrics(ctx.inputs["train"])
    all_rows = []
    for set_name, rows in sets.items():
        table = [
            {"set": set_name, **{k: v for k, v in row.items() if k not in ("set", "context")},
             "base_answer": answers["base"][key], "tuned_answer": answers["tuned"][key]}
            for row, key in zip(rows, keys[set_name])
        ]
        score_rows(table, embed)
        metrics.update({f"{set_name}/{k}": v for k, v in summarize(table, cfg.eval.bootstrap_samples, cfg.eval.seed).items()})
        metrics[f"{set_name}/questions"] = len(table)
        write_jsonl(ctx.work_dir / f"comparison_{set_name}.jsonl", table)
        all_rows += table
    write_jsonl(ctx.work_dir / Eval.COMPARISON, all_rows)
    write_text_atomic(ctx.work_dir / Eval.SUMMARY, json.dumps(metrics, indent=2, sort_keys=True))
    write_text_atomic(ctx.work_dir / Eval.REPORT, render_report(metrics, all_rows))
    draw_chart(metrics, ctx.work_dir / Eval.CHART)
    return StageResult(
        metrics=metrics,
        artifacts=[Eval.COMPARISON, Eval.SUMMARY, Eval.REPORT, Eval.CHART],
        tables={f"eval/{name}_comparison.json": f"comparison_{name}.jsonl" for name in sets},
    )
