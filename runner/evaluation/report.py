"""Base-vs-tuned tables, the Markdown report and the chart, from the eval stage's flat metrics.

The metrics are ``<set>/<metric>/{base,tuned,delta}`` with, for per-question scores, the delta's
95 % bootstrap interval ``<set>/<metric>/delta_ci_low`` / ``delta_ci_high`` (and its width), the questions
scored ``<set>/<metric>/n``, and ``<set>/questions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.core.artifacts import Eval

# the order a reader goes through: what was learned, the control, people's questions, the ceilings
SET_ORDER = ("heldout", "unseen", "probes", "probes_covered", "probes_uncovered", "train", "openbook")
METRIC_ORDER = ("new_term_recall", "fact_recall", "f1", "rougeL", "similarity", "loss", "perplexity")
SET_MEANING = {
    "heldout": "trained facts, asked in a wording that was not trained",
    "unseen": "facts kept out of training (the control)",
    "probes": "hand-written questions",
    "probes_covered": "hand-written questions whose new key terms all appear in the training data (tuning could teach them)",
    "probes_uncovered": "hand-written questions with a new key term the training data never holds",
    "train": "training questions asked again (the memorization ceiling)",
    "openbook": "held-out questions with the fact's chunk as context (the open-book ceiling)",
}
EXAMPLES_PER_SET = 3


@dataclass
class SummaryRow:
    set_name: str
    metric: str
    base: float
    tuned: float
    delta: float
    ci_low: float | None  # None where the metric has no interval (loss and perplexity: one number per model)
    ci_high: float | None
    questions: int | None


def _rank(names: list[str], order: tuple[str, ...]) -> list[str]:
    return sorted(names, key=lambda name: (order.index(name) if name in order else len(order), name))


def summary_table(metrics: dict[str, float]) -> list[SummaryRow]:
    """One row per set and metric, sets and metrics in reading order."""
    stems = [key[: -len("/base")] for key in metrics if key.endswith("/base")]
    by_set: dict[str, list[str]] = {}
    for stem in stems:
        set_name, metric = stem.split("/", 1)
        by_set.setdefault(set_name, []).append(metric)
    rows = []
    for set_name in _rank(list(by_set), SET_ORDER):
        for metric in _rank(by_set[set_name], METRIC_ORDER):
            stem = f"{set_name}/{metric}"
            # the questions the metric scored (a question that leaves no new term has no new-term recall)
            questions = metrics.get(f"{stem}/n", metrics.get(f"{set_name}/questions"))
            rows.append(
                SummaryRow(
                    set_name, metric, metrics[f"{stem}/base"], metrics[f"{stem}/tuned"], metrics[f"{stem}/delta"],
                    metrics.get(f"{stem}/delta_ci_low"), metrics.get(f"{stem}/delta_ci_high"),
                    int(questions) if questions is not None else None,
                )
            )
    return rows


def format_delta(row: SummaryRow) -> str:
    """``+0.152 [+0.101, +0.203]``, or the delta alone where there is no interval."""
    if row.ci_low is None or row.ci_high is None or math.isnan(row.ci_low):
        return f"{row.delta:+.3f}"
    return f"{row.delta:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"


def format_table(metrics: dict[str, float]) -> str:
    """The console table: per set and metric, base, tuned and the delta with its 95 % interval."""
    rows = summary_table(metrics)
    width = max([len("set"), *(len(row.set_name) for row in rows)])
    lines = [f"{'set':<{width}} {'n':>4} {'metric':<15} {'base':>8} {'tuned':>8}  delta [95% CI]"]
    for row in rows:
        n = "" if row.questions is None else str(row.questions)
        lines.append(f"{row.set_name:<{width}} {n:>4} {row.metric:<15} {row.base:>8.3f} {row.tuned:>8.3f}  {format_delta(row)}")
    return "\n".join(lines + _legend(rows))


def _legend(rows: list[SummaryRow]) -> list[str]:
    names = list(dict.fromkeys(row.set_name for row in rows))
    return [""] + [f"{name}: {SET_MEANING[name]}" for name in names if name in SET_MEANING] if names else []


def _examples(rows: list[dict[str, Any]]) -> list[str]:
    out = ["## Examples", ""]
    by_set: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_set.setdefault(row["set"], []).append(row)
    for set_name in _rank(list(by_set), SET_ORDER):
        out += [f"### {set_name}", ""]
        for row in by_set[set_name][:EXAMPLES_PER_SET]:
            out += [
                f"**Q:** {row['question']}", "",
                f"- reference: {row['reference']}", f"- base: {row['base_answer']}", f"- tuned: {row['tuned_answer']}", "",
            ]
    return out


def render_report(metrics: dict[str, float], rows: list[dict[str, Any]]) -> str:
    """report.md: the summary table with intervals, the chart, and a few examples per set."""
    out = [
        "# Base vs tuned",
        "",
        "Delta = tuned - base; in brackets its 95 % paired bootstrap interval over the questions.",
        "",
        "| set | n | metric | base | tuned | delta [95% CI] |",
        "|---|---:|---|---:|---:|---|",
    ]
    for row in summary_table(metrics):
        n = "" if row.questions is None else str(row.questions)
        out.append(f"| {row.set_name} | {n} | {row.metric} | {row.base:.3f} | {row.tuned:.3f} | {format_delta(row)} |")
    out += [""] + [f"- {line}" for line in _legend(summary_table(metrics)) if line]
    out += ["", f"![base vs tuned]({Eval.CHART})", ""]
    return "\n".join(out + _examples(rows))


def draw_chart(metrics: dict[str, float], path: Path) -> None:
    """One panel per score (loss and perplexity left out), base and tuned bars per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary_table(metrics) if r.metric not in ("loss", "perplexity")]
    metric_names = list(dict.fromkeys(r.metric for r in rows)) or ["(no scores)"]
    fig, axes = plt.subplots(1, len(metric_names), figsize=(3.2 * len(metric_names) + 1, 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metric_names):
        panel = [r for r in rows if r.metric == metric]
        x = np.arange(len(panel))
        ax.bar(x - 0.2, [r.base for r in panel], 0.4, label="base")
        ax.bar(x + 0.2, [r.tuned for r in panel], 0.4, label="tuned")
        ax.set_xticks(x, [r.set_name for r in panel], fontsize=8, rotation=30)
        ax.set_title(metric, fontsize=10)
        ax.set_ylim(min([0.0] + [min(r.base, r.tuned) for r in panel]), 1.0)  # cosine similarity can be negative
    axes[0][0].set_ylabel("score")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Base vs tuned")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
