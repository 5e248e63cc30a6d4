"""Evaluate: base vs tuned model, side by side, on the validation split and on held-out probes.

Both models answer every question with the same prompt (the question alone, as in
training), the same greedy decoding and the same engine (llama.cpp: the base GGUF, and
the base GGUF plus the exported LoRA adapter), without retrieval: the point is what the
model itself learned. Scores per row: token F1, ROUGE-L, semantic similarity (the
embedding model) and, for probes, fact recall. Validation loss and perplexity come
from the train stage (before vs after training).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from runner.artifacts import Answer, Dataset, Eval, Train
from runner.cache import MANIFEST, write_text_atomic
from runner.embeddings import embed_texts
from runner.errors import InputError
from runner.jsonl import read_jsonl, write_jsonl
from runner.llm import ChatRequest, create_llm
from runner.llm.resumable import latest_results, response_fields, run_resumable
from runner.metrics import fact_recall, rouge_l, token_f1
from runner.report import draw_chart, render_report
from runner.stage import StageContext, StageResult

log = logging.getLogger(__name__)

ROW_METRICS = ("f1", "rougeL", "similarity", "fact_recall")


def load_eval_sets(cfg: Any, ctx: StageContext) -> dict[str, list[dict[str, str]]]:
    """{"valid": [...], "probes": [...]}: id, question, reference answer."""
    sets: dict[str, list[dict[str, str]]] = {}
    answers = {r["qid"]: r for r in read_jsonl(ctx.inputs["answer"] / Answer.ANSWERS)}
    valid = [answers[p["qid"]] for p in read_jsonl(ctx.inputs["dataset"] / Dataset.PROVENANCE) if p["split"] == "valid"]
    sets["valid"] = [{"id": r["qid"], "question": r["question"], "reference": r["answer"]} for r in valid]
    if cfg.eval.probes:
        path = ctx.path(cfg.eval.probes)
        if not path.is_file():
            raise InputError(f"eval.probes={cfg.eval.probes!r} does not exist (looked for {path})")
        probes = read_jsonl(path)
        for number, probe in enumerate(probes, start=1):
            if not (isinstance(probe.get("question"), str) and isinstance(probe.get("answer"), str)):
                raise InputError(f"eval.probes: record {number} of {path} needs string fields 'question' and 'answer'")
        sets["probes"] = [{"id": str(p.get("id", i)), "question": p["question"], "reference": p["answer"]} for i, p in enumerate(probes)]
    if cfg.eval.max_questions:
        sets = {name: rows[: cfg.eval.max_questions] for name, rows in sets.items()}
    return {name: rows for name, rows in sets.items() if rows}


def answer_all(llm: Any, questions: list[dict[str, str]], max_tokens: int, path: Path, desc: str) -> dict[str, str]:
    """Greedy answers keyed by question id, resumable through ``path``."""
    ids = [q["id"] for q in questions]
    requests = [ChatRequest([{"role": "user", "content": q["question"]}], max_tokens=max_tokens, temperature=0.0) for q in questions]
    run_resumable(llm, ids, requests, path, lambda i, r: {"status": "ok" if r.ok else "error", **response_fields(r)}, desc)
    latest = latest_results(path)
    return {item_id: latest[item_id]["raw"].strip() for item_id in ids}


def score_rows(rows: list[dict[str, Any]], embed: Any) -> None:
    """Add per-row scores for base and tuned answers in place."""
    references = [r["reference"] for r in rows]
    ref_vectors = embed(references)
    for model in ("base", "tuned"):
        answers = [r[f"{model}_answer"] for r in rows]
        similarity = np.sum(embed(answers) * ref_vectors, axis=1)
        for row, answer, sim in zip(rows, answers, similarity):
            row[f"{model}_f1"] = token_f1(answer, row["reference"])
            row[f"{model}_rougeL"] = rouge_l(answer, row["reference"])
            row[f"{model}_similarity"] = float(sim)
            row[f"{model}_fact_recall"] = fact_recall(answer, row["reference"])


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean per metric for base and tuned, and their delta (NaN rows ignored)."""
    summary = {}
    for metric in ROW_METRICS:
        means = {}
        for model in ("base", "tuned"):
            values = [r[f"{model}_{metric}"] for r in rows if not math.isnan(r[f"{model}_{metric}"])]
            means[model] = float(np.mean(values)) if values else float("nan")
        if not any(math.isnan(v) for v in means.values()):
            summary.update({f"{metric}/base": means["base"], f"{metric}/tuned": means["tuned"], f"{metric}/delta": means["tuned"] - means["base"]})
    return summary


def loss_metrics(train_dir: Path) -> dict[str, float]:
    """Validation loss and perplexity before (base) and after (tuned) training."""
    metrics = json.loads((train_dir / MANIFEST).read_text())["metrics"] if (train_dir / MANIFEST).exists() else {}
    before, after = metrics.get("val/loss_before"), metrics.get("val/loss_after")
    if before is None or after is None:
        return {}
    return {
        "valid/loss/base": before,
        "valid/loss/tuned": after,
        "valid/loss/delta": after - before,
        "valid/perplexity/base": math.exp(min(before, 50)),
        "valid/perplexity/tuned": math.exp(min(after, 50)),
        "valid/perplexity/delta": math.exp(min(after, 50)) - math.exp(min(before, 50)),
    }


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Answer every eval question with both models; write the comparison table, summary and report."""
    sets = load_eval_sets(cfg, ctx)
    adapter = ctx.inputs["train"] / Train.ADAPTER_GGUF
    if not adapter.is_file():
        raise InputError(f"the train stage produced no GGUF adapter at {adapter}")
    llm_cfg = OmegaConf.merge(cfg.llm, {"backend": "llama_cpp", "temperature": 0.0})
    questions = [q for rows in sets.values() for q in rows]
    unique = list({q["id"]: q for q in questions}.values())
    answers = {}
    for model, lora in (("base", None), ("tuned", adapter)):
        llm = create_llm(llm_cfg, cfg.model, ctx.root, lora_path=lora)
        try:
            answers[model] = answer_all(llm, unique, cfg.eval.max_tokens, ctx.work_dir / f"{model}_answers.jsonl", f"eval {model}")
        finally:
            llm.close()

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, cfg.index, ctx.root, show_progress=False)

    metrics: dict[str, float] = loss_metrics(ctx.inputs["train"])
    all_rows = []
    for set_name, rows in sets.items():
        table = [{"set": set_name, **q, "base_answer": answers["base"][q["id"]], "tuned_answer": answers["tuned"][q["id"]]} for q in rows]
        score_rows(table, embed)
        metrics.update({f"{set_name}/{k}": v for k, v in summarize(table).items()})
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
