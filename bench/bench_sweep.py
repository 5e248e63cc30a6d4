"""A LoRA sweep with a warm stage cache vs the same points each regenerating everything.

    .venv/bin/python bench/bench_sweep.py [--points 4] [--chunks 3]

(a) "original workflow": every sweep point runs the whole pipeline from scratch (own cache);
(b) this runner: the points share one cache, so ingest -> dataset run once and each further
point reruns only train and eval. Both in one run, same tiny settings; prints wall times and
the ratio and writes ``bench/results/sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from runner.engine.pipeline import run_pipeline  # noqa: E402
from runner.core.schema import register_configs, validate  # noqa: E402


def run_point(iters: int, cache_root: Path, mlruns: Path, chunks: int) -> dict[str, Any]:
    overrides = [
        f"paths.root={ROOT}",
        f"paths.output_dir={cache_root}",
        f"paths.mlruns_dir={mlruns}",
        "tracking.experiment=bench-sweep",
        "debug=tiny",
        f"generate.max_chunks={chunks}",
        "eval.max_questions=3",
        f"train.iters={iters}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    started = time.perf_counter()
    summary = run_pipeline(cfg)
    return {"iters": iters, "seconds": time.perf_counter() - started, "cache_hits": summary["metrics"]["pipeline/cache_hits"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    register_configs()
    iters = [2 + i for i in range(args.points)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cold = [run_point(n, tmp_path / f"cold-{n}", tmp_path / "mlruns", args.chunks) for n in iters]
        warm = [run_point(n, tmp_path / "warm", tmp_path / "mlruns", args.chunks) for n in iters]
    cold_s, warm_s = sum(p["seconds"] for p in cold), sum(p["seconds"] for p in warm)
    result = {"points": args.points, "cold_each_s": cold_s, "warm_cache_s": warm_s, "ratio": cold_s / warm_s, "cold": cold, "warm": warm}
    print(f"{args.points}-point LoRA sweep (train.iters={iters}), debug=tiny, {args.chunks} chunks")
    print(f"  each point from scratch (original workflow): {cold_s:7.1f} s")
    per_point = ", ".join(f"{p['seconds']:.0f}" for p in warm)
    print(f"  shared stage cache (this runner):            {warm_s:7.1f} s   ({per_point} s per point)")
    print(f"  ratio: {cold_s / warm_s:.2f}x")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
