"""Rerun a past MLflow run from its recorded config: ``python -m runner.cli.reproduce <run-id>``.

The run's resolved Hydra config (artifact ``config/config.yaml``) is loaded into the schema,
validated and run again into a new MLflow run tagged ``reproduced_from=<run-id>``. With the
stage cache warm nothing is recomputed; deterministic stages give the same metrics.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

from omegaconf import OmegaConf

from runner.cli.app import print_summary
from runner.cli.compose import compose_config
from runner.core.errors import RunnerError
from runner.engine.pipeline import RunInfo, run_pipeline
from runner.core.schema import RunConfig, validate
from runner.engine.tracking import resolve_tracking_uri


def load_run_config(run_id: str, tracking_uri: str):
    """The schema-checked config recorded with ``run_id`` and the run's original overrides."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.tracking.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise RunnerError(f"no MLflow run {run_id!r} at {tracking_uri} ({exc.error_code})") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "config/config.yaml", tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise RunnerError(f"run {run_id} has no recorded config (artifact config/config.yaml)") from None
        recorded = OmegaConf.load(path)
    cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), recorded)
    cfg.paths.root = os.getcwd()
    return cfg, run.data.tags.get("overrides", "")


def masked_keys(node, prefix: str = "") -> list[str]:
    """Keys whose recorded value is the *** mask (secrets are never recorded)."""
    keys = []
    items = node.items() if OmegaConf.is_dict(node) else enumerate(node)
    for key, value in items:
        if OmegaConf.is_config(value):
            keys += masked_keys(value, f"{prefix}{key}.")
        elif value == "***":
            keys.append(f"{prefix}{key}")
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.cli.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="MLflow run id to reproduce")
    parser.add_argument("overrides", nargs="*", help="key=value for values that were masked in the record (secrets)")
    parser.add_argument("--tracking-uri", default=None, help="the same as tracking.uri=...; default: where python -m runner logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        # the store is found as a run finds it (conf/, these overrides, $MLFLOW_TRACKING_URI)
        store_overrides = [*args.overrides, *([f"tracking.uri={args.tracking_uri}"] if args.tracking_uri else [])]
        uri = resolve_tracking_uri(compose_config(store_overrides))
        cfg, overrides = load_run_config(args.run_id, uri)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(args.overrides))
        missing = masked_keys(cfg)
        if missing:
            raise RunnerError(f"run {args.run_id} used a secret for {missing[0]} (recorded as ***): pass it again, e.g. {missing[0]}=...")
        # the store is given by the environment, so the recorded config (and its hash) stays as it was
        os.environ["MLFLOW_TRACKING_URI"] = uri
        validate(cfg)
        summary = run_pipeline(
            cfg,
            RunInfo(overrides=overrides.split(), run_name="reproduce", extra_tags={"reproduced_from": args.run_id}),
        )
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
