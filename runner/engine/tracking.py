"""MLflow tracking: one run per Hydra job, resolved config as params, metrics per stage."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.core.errors import TrackingError

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
_DATASET_ATTEMPTS = 3
_INVALID_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")
_SECRET_KEY = re.compile(r"(api_?key|password|secret|passphrase|(^|[/_])(auth_)?token)$", re.IGNORECASE)


def default_tracking_uri(mlruns_dir: Path) -> str:
    return f"sqlite:///{mlruns_dir.resolve() / 'mlflow.db'}"


def mlruns_dir(cfg: Any) -> Path:
    """``paths.mlruns_dir`` under ``paths.root``: the local store, and a SQLite store's artifacts."""
    return Path(cfg.paths.root).resolve() / cfg.paths.mlruns_dir


def resolve_tracking_uri(cfg: Any) -> str:
    """The tracking store of a run, a sweep, ``runner.cli.compare`` and ``runner.cli.reproduce`` alike.

    ``tracking.uri`` first, then ``$MLFLOW_TRACKING_URI``, then SQLite under ``paths.mlruns_dir``
    (created when used). A server that does not answer raises TrackingError at once, or with
    ``tracking.required=false`` gives the local store.
    """
    local_dir = mlruns_dir(cfg)
    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(local_dir)
    try:
        check_server(uri)
    except TrackingError:
        if cfg.tracking.required:
            raise
        local = default_tracking_uri(local_dir)
        log.warning("MLflow server %s unreachable; tracking.required=false, logging to %s", uri, local)
        uri = local
    if uri.startswith("sqlite"):  # the experiment's artifacts go under mlruns_dir too (Tracker)
        local_dir.mkdir(parents=True, exist_ok=True)
    return uri


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``a/b/c`` keys (MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}/"))
        else:
            flat[name] = value
    return flat


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask_overrides(overrides: list[str]) -> list[str]:
    """Command-line overrides with secret values replaced by ***."""
    masked = []
    for override in overrides:
        key, sep, value = override.partition("=")
        masked.append(f"{key}{sep}***" if sep and value and is_secret_key(key.lstrip("+~")) else override)
    return masked


def mask_secrets(node: Any, prefix: str = "") -> Any:
    """A copy of a nested config container with secret values replaced by ***."""
    if isinstance(node, Mapping):
        return {k: ("***" if is_secret_key(f"{prefix}{k}") and v not in (None, "") and not isinstance(v, Mapping) else mask_secrets(v, f"{prefix}{k}/")) for k, v in node.items()}
    if isinstance(node, list):
        return [mask_secrets(v, prefix) for v in node]
    return node


def params_from_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as MLflow params: flattened, secrets masked, long values cut to MLflow's limit."""
    params = {}
    for key, value in flatten(config).items():
        text = "null" if value is None else str(value)
        if is_secret_key(key) and value:
            text = "***"
        params[key] = text[:MAX_PARAM_CHARS]
    return params


def metric_name(key: str) -> str:
    """MLflow allows only [A-Za-z0-9_-. :/] in metric names: ``hit@5`` becomes ``hit_at_5``."""
    return _INVALID_METRIC_CHARS.sub("_", key.replace("@", "_at_"))


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast when a remote tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status >= 400:
                raise TrackingError(f"MLflow server {uri} answered HTTP {response.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix "
            "MLFLOW_TRACKING_URI / tracking.uri, or set tracking.required=false to log locally"
        ) from None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# MLflow 3 opens an experiment in its GenAI view (traces, prompts) unless told it holds model training
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_TAGS = {EXPERIMENT_KIND: "custom_model_development"}


class Tracker:
    """Thin wrapper over the MLflow fluent API that owns one run."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        import mlflow

        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.mlflow = mlflow
        self.uri = uri
        users_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        # MLflow also exports the URI to the environment; keep the user's, so that a later run of this
        # process with tracking.uri=null still resolves from paths.mlruns_dir (resolve_tracking_uri)
        if users_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = users_uri
        client = mlflow.tracking.MlflowClient()
        if client.get_experiment_by_name(experiment) is None:
            location = artifact_root.resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
            try:
                client.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
            except Exception:  # another job created it first
                if client.get_experiment_by_name(experiment) is None:
                    raise
        found = client.get_experiment_by_name(experiment)
        if found is not None and EXPERIMENT_KIND not in found.tags:  # made before the tag was set
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, EXPERIMENT_TAGS[EXPERIMENT_KIND])
        mlflow.set_experiment(experiment)
        self.experiment = experiment
        self.run_id: str | None = None

    def start(self, run_name: str, tags: Mapping[str, str], parent_run_id: str | None = None) -> str:
        self.reap_dead_runs()
        owner = {"runner.host": socket.gethostname(), "runner.pid": str(os.getpid())}
        run = self.mlflow.start_run(run_name=run_name, tags={**tags, **owner}, parent_run_id=parent_run_id)
        self.run_id = run.info.run_id
        return self.run_id

    def reap_dead_runs(self) -> None:
        """Mark KILLED the RUNNING runs whose process on this host is gone (kill -9, power loss)."""
        client = self.mlflow.tracking.MlflowClient()
        experiment = self.mlflow.get_experiment_by_name(self.experiment)
        if experiment is None:
            return
        host = socket.gethostname()
        running = client.search_runs(
            [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
        for run in running:
            tags = run.data.tags
            pid = tags.get("runner.pid")
            if tags.get("runner.host") == host and pid and pid.isdigit() and not _process_alive(int(pid)):
                client.set_terminated(run.info.run_id, "KILLED")
                log.warning("marked MLflow run %s KILLED: its process %s is gone", run.info.run_id, pid)

    def log_params(self, params: Mapping[str, str]) -> None:
        self.mlflow.log_params(dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        numeric = {
            metric_name(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if numeric:
            self.mlflow.log_metrics(numeric, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.mlflow.set_tags(dict(tags))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self.mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif path.exists():
            self.mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dataset(self, path: Path, context: str, name: str) -> None:
        """Record a JSONL file as a run input (the run's Datasets panel in the UI)."""
        import mlflow.data
        import pandas as pd

        frame = pd.read_json(path, lines=True) if path.stat().st_size else pd.DataFrame()
        dataset = mlflow.data.from_pandas(frame, source=str(path), name=name)
        for attempt in range(_DATASET_ATTEMPTS):
            try:
                self.mlflow.log_input(dataset, context=context)
                return
            except self.mlflow.exceptions.MlflowException as exc:
                # Two jobs of a sweep logging the same cached dataset at once: the store checks for the
                # dataset, then inserts it, so one of them can fail on its unique (experiment, name,
                # digest). Its transaction is rolled back; the next attempt finds the dataset and links it.
                if "unique" not in str(exc).lower() or attempt == _DATASET_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def log_table(self, path: Path, artifact_file: str) -> None:
        """A JSONL file as an MLflow table (browsable and comparable in the UI)."""
        import pandas as pd

        frame = pd.read_json(path, lines=True) if path.stat().st_size else pd.DataFrame()
        self.mlflow.log_table(data=frame, artifact_file=artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.mlflow.end_run(status=status)
            self.run_id = None
