"""Question/answer quality per generation strategy, on the same chunks, in one run.

    .venv/bin/python bench/bench_quality.py [--chunks N] [--review 30] [override ...]

Strategies compared (same sample chunks, same model, generate -> curate -> answer):
- ``fact_anchored``: the default (facts picked deterministically, one question per fact,
  answered by the fact sentence: ``answer.mode=extractive``).
- ``fact_anchored_rag``: the same questions answered by the model with RAG (``answer.mode=rag``).
- ``fact_anchored_no_templates``: only the model's questions (``generate.templates=[]``).
- ``free``: the original per-chunk prompt done right (chat template, JSON-constrained, short).
- ``original_raw``: the original prompts in the Mistral ``[INST]`` format sent to a model with
  another chat template, as the original scripts did.

Reports yield (kept / generated), self-retrieval hit@5 before the gate, answer grounding
rate (of the model's answers), coverage (share of chunks with a kept pair) and seconds per kept example, and writes kept pairs to review by hand to
``bench/results/quality_review_<strategy>.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.cli.compose import compose_config  # noqa: E402
from runner.core.jsonl import read_jsonl  # noqa: E402
from runner.engine.pipeline import run_pipeline  # noqa: E402
from runner.core.schema import validate  # noqa: E402

log = logging.getLogger("bench.quality")

STRATEGIES = {
    "fact_anchored": [],
    "fact_anchored_rag": ["answer.mode=rag"],
    "fact_anchored_no_templates": ["generate.templates=[]"],
    "free": ["generate.strategy=free"],
    "original_raw": ["generate.strategy=free", "prompts=original", "model.chat_format=mistral-instruct", "llm.max_tokens=256"],
}


def run_strategy(name: str, extra: list[str], chunks: int, workdir: Path) -> dict[str, Any]:
    overrides = [
        f"paths.output_dir={workdir / 'outputs'}",
        f"paths.mlruns_dir={workdir / 'mlruns'}",
        "tracking.experiment=bench-quality",
        f"generate.max_chunks={chunks}",
        "until=answer",
        *extra,
    ]
    cfg = compose_config(overrides, root=ROOT)
    validate(cfg)
    started = time.perf_counter()
    summary = run_pipeline(cfg)
    wall = time.perf_counter() - started
    m = summary["metrics"]
    kept = m.get("answer/answered", 0.0)
    answers = read_jsonl(Path(summary["stages"]["answer"]["path"]) / "answers.jsonl")
    return {
        "strategy": name,
        "generated": m.get("curate/generated", 0.0),
        "kept_questions": m.get("curate/kept", 0.0),
        "kept_pairs": kept,
        "yield": kept / max(1.0, m.get("curate/generated", 0.0)),
        "self_hit_at_5_before_gate": m.get("curate/self_hit@5_before_gate", float("nan")),
        "grounding_rate": m.get("answer/grounding_rate", float("nan")),
        "chunk_coverage": m.get("answer/chunk_coverage", 0.0),
        "mean_completion_tokens": m.get("generate/mean_completion_tokens", 0.0),
        "seconds": wall,
        "seconds_per_kept_example": wall / kept if kept else float("inf"),
        "answers": answers,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--review", type=int, default=30, help="kept pairs per strategy written for manual review")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("overrides", nargs="*", help="config overrides for every strategy, e.g. llm.n_threads=1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.strategies.split(","):
            result = run_strategy(name, [*STRATEGIES[name], *args.overrides], args.chunks, Path(tmp))
            answers = result.pop("answers")
            sample = random.Random(0).sample(answers, min(args.review, len(answers)))
            with open(out_dir / f"quality_review_{name}.jsonl", "w") as handle:
                for row in sample:
                    handle.write(json.dumps({k: row.get(k) for k in ("qid", "question", "answer", "fact", "chunk_id", "page")}) + "\n")
            results.append(result)
    header = f"{'strategy':<27} {'generated':>9} {'kept':>5} {'yield':>6} {'hit@5':>6} {'ground':>7} {'cover':>6} {'tok/req':>8} {'s/kept':>7}"
    print(header)
    for r in results:
        print(
            f"{r['strategy']:<27} {r['generated']:>9.0f} {r['kept_pairs']:>5.0f} {r['yield']:>6.2f} {r['self_hit_at_5_before_gate']:>6.2f} "
            f"{r['grounding_rate']:>7.2f} {r['chunk_coverage']:>6.2f} {r['mean_completion_tokens']:>8.1f} {r['seconds_per_kept_example']:>7.1f}"
        )
    payload = {"chunks": args.chunks, "results": results}
    (out_dir / "quality.json").write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
