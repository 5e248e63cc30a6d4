"""Compare runs: ``python -m runner.cli.compare [--experiment NAME] [--csv FILE] [key=value ...]``.

Prints one row per run with the params that differ between runs and the eval metrics,
and writes the same table as CSV. The tracking store is the one ``python -m runner`` with the
same overrides uses (``tracking.uri``, ``$MLFLOW_TRACKING_URI``, ``paths.mlruns_dir``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.cli.compose import compose_config
from runner.core.errors import RunnerError
from runner.engine.tracking import resolve_tracking_uri

KEY_METRICS = (
    "metrics.eval/heldout/new_term_recall/delta",
    "metrics.eval/probes/new_term_recall/delta",
    "metrics.eval/heldout/loss/delta",
    "metrics.answer/retrieval/ensemble/hit_at_3",
)


def compare_table(experiment: str, tracking_uri: str, max_runs: int = 200):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=max_runs, order_by=["attributes.start_time DESC"])
    if runs.empty:
        return runs
    params = [c for c in runs.columns if c.startswith("params.") and runs[c].nunique(dropna=False) > 1]
    metrics = [c for c in runs.columns if c.startswith("metrics.eval/") and c.endswith("/delta")]
    metrics += [c for c in KEY_METRICS if c in runs.columns and c not in metrics]
    columns = ["run_id", "tags.mlflow.runName", "status", "tags.mlflow.parentRunId"] + params + metrics
    table = runs[[c for c in columns if c in runs.columns]].copy()
    table.columns = [c.removeprefix("params.").removeprefix("metrics.").removeprefix("tags.") for c in table.columns]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.cli.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=None, help="default: tracking.experiment")
    parser.add_argument("--csv", default="outputs/compare.csv")
    parser.add_argument("--tracking-uri", default=None, help="the same as tracking.uri=...")
    parser.add_argument("overrides", nargs="*", help="config overrides that locate the store, e.g. paths.mlruns_dir=/shared/mlruns")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, *([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])]
    try:
        cfg = compose_config(overrides)
        uri = resolve_tracking_uri(cfg)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.experiment = args.experiment or cfg.tracking.experiment
    table = compare_table(args.experiment, uri)
    if table.empty:
        print(f"no runs in experiment {args.experiment!r}", file=sys.stderr)
        return 1
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    import pandas as pd

    with pd.option_context("display.max_columns", 50, "display.width", 200, "display.max_colwidth", 40):
        print(table.to_string(index=False))
    print(f"\nwritten {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
