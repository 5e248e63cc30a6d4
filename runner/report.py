"""Base-vs-tuned tables, the Markdown report and the chart, from the eval stage's flat metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runner.artifacts import Eval


def summary_table(metrics: dict[str, float]) -> list[tuple[str, str, float, float, float]]:
    """(set, metric, base, tuned, delta) rows from the flat metrics."""
    rows = []
    for key, base in sorted(metrics.items()):
        if key.endswith("/base"):
            stem = key[: -len("/base")]
            set_name, metric = stem.split("/", 1)
            rows.append((set_name, metric, base, metrics[f"{stem}/tuned"], metrics[f"{stem}/delta"]))
    return rows


def format_table(metrics: dict[str, float]) -> str:
    lines = [f"{'set':<8} {'metric':<12} {'base':>8} {'tuned':>8} {'delta':>8}"]
    for set_name, metric, base, tuned, delta in summary_table(metrics):
        lines.append(f"{set_name:<8} {metric:<12} {base:>8.3f} {tuned:>8.3f} {delta:>+8.3f}")
    return "\n".join(lines)


def render_report(metrics: dict[str, float], rows: list[dict[str, Any]]) -> str:
    out = ["# Base vs tuned", "", "| set | metric | base | tuned | delta |", "|---|---|---:|---:|---:|"]
    for set_name, metric, base, tuned, delta in summary_table(metrics):
        out.append(f"| {set_name} | {metric} | {base:.3f} | {tuned:.3f} | {delta:+.3f} |")
    out += ["", f"![base vs tuned]({Eval.CHART})", "", "## Examples", ""]
    for row in rows[:10]:
        out += [f"**Q ({row['set']}):** {row['question']}", "", f"- reference: {row['reference']}", f"- base: {row['base_answer']}", f"- tuned: {row['tuned_answer']}", ""]
    return "\n".join(out)


def draw_chart(metrics: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary_table(metrics) if r[1] not in ("loss", "perplexity")]
    labels = [f"{s}\n{m}" for s, m, *_ in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4))
    ax.bar(x - 0.2, [r[2] for r in rows], 0.4, label="base")
    ax.bar(x + 0.2, [r[3] for r in rows], 0.4, label="tuned")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("score")
    ax.set_title("Base vs tuned")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
