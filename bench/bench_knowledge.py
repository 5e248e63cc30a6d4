"""What the tuned model learns, by phrasings per fact and epochs, on the bundled sample, in one run.

    .venv/bin/python bench/bench_knowledge.py [--phrasings 1,3,5] [--epochs 1,3,10] [override ...]

Every cell runs the real pipeline (shared stage cache: generation, curation and answers once; the
dataset per phrasings value; training and eval per cell) with ``dataset.phrasings_per_fact`` and
``train.epochs`` set, and reads the eval stage's metrics: fact recall on the held-out phrasings of
trained facts and on the hand-written probes, base and tuned, with the 95 % interval of the delta.
The table goes to ``bench/results/knowledge.json`` and the console.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.cli.compose import compose_config  # noqa: E402
from runner.engine.pipeline import run_pipeline  # noqa: E402
from runner.core.schema import validate  # noqa: E402

log = logging.getLogger("bench.knowledge")
SETS = ("heldout", "probes", "train", "unseen")


def run_cell(phrasings: int, epochs: float, workdir: Path, extra: list[str]) -> dict[str, Any]:
    overrides = [
        f"paths.output_dir={workdir / 'outputs'}",
        f"paths.mlruns_dir={workdir / 'mlruns'}",
        "tracking.experiment=bench-knowledge",
        f"dataset.phrasings_per_fact={phrasings}",
        f"train.epochs={epochs}",
        *extra,
    ]
    cfg = compose_config(overrides, root=ROOT)
    validate(cfg)
    started = time.perf_counter()
    metrics = run_pipeline(cfg)["metrics"]
    cell: dict[str, Any] = {"phrasings_per_fact": phrasings, "epochs": epochs, "seconds": time.perf_counter() - started}
    cell["train_seconds"] = metrics.get("train/train_seconds")
    cell["train_records"] = metrics.get("dataset/train_size")
    for name in SETS:
        for part in ("base", "tuned", "delta", "delta_ci_low", "delta_ci_high"):
            key = f"eval/{name}/fact_recall/{part}"
            if key in metrics:
                cell[f"{name}/{part}"] = metrics[key]
    return cell


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phrasings", default="1,3,5")
    parser.add_argument("--epochs", default="1,3,10")
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "bench-knowledge"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cells = []
    for phrasings in (int(p) for p in args.phrasings.split(",")):
        for epochs in (float(e) for e in args.epochs.split(",")):
            cells.append(run_cell(phrasings, epochs, Path(args.workdir), args.overrides))
            log.info("cell %s", cells[-1])
    out = ROOT / "bench" / "results" / "knowledge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cells, indent=2))
    print(f"{'phrasings':>9} {'epochs':>6} {'train s':>8} | " + " | ".join(f"{s} fact recall base -> tuned [95% CI of delta]" for s in ("heldout", "probes")))
    for c in cells:
        parts = []
        for s in ("heldout", "probes"):
            if f"{s}/tuned" in c:
                parts.append(f"{c[f'{s}/base']:.3f} -> {c[f'{s}/tuned']:.3f} [{c[f'{s}/delta_ci_low']:+.3f}, {c[f'{s}/delta_ci_high']:+.3f}]")
            else:
                parts.append("-")
        print(f"{c['phrasings_per_fact']:>9} {c['epochs']:>6g} {c['train_seconds'] or 0:>8.0f} | " + " | ".join(parts))
    return cells


if __name__ == "__main__":
    main()
