"""The link to the project's runs in the MLflow UI: ``python -m runner.cli.ui [--port N] [key=value ...]``.

MLflow 3 opens its sidebar in GenAI mode and keeps the GenAI / Model training switch in the browser
(upstream mlflow#24498), so the runs page is linked directly: it shows the training runs whatever the switch says.
"""

from __future__ import annotations

import argparse
import sys

from runner.cli.compose import compose_config
from runner.core.errors import RunnerError
from runner.engine.tracking import resolve_tracking_uri


def runs_url(experiment: str, tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> str:
    """``http://host:port/#/experiments/<id>/runs`` for ``experiment``, or the UI's home while it has no runs."""
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    base = f"http://{host}:{port}/"
    return f"{base}#/experiments/{found.experiment_id}/runs" if found is not None else base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m runner")
    args = parser.parse_args(argv)
    try:
        cfg = compose_config(args.overrides)
        url = runs_url(cfg.tracking.experiment, resolve_tracking_uri(cfg), args.host, args.port)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"runs of experiment {cfg.tracking.experiment!r}: {url}")
    print('(the sidebar opens in GenAI mode; switch it to "Model training" once, the browser keeps the choice)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
