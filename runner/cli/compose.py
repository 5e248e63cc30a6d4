"""The project's configuration outside ``@hydra.main``, for the command-line tools (compare, reproduce).

``conf/config.yaml`` composed with the given overrides as ``python -m runner`` would compose it
in ``root``, so they find the tracking store the way a run does (``tracking.uri``, a local
``conf/local/default.yaml``, ``paths.mlruns_dir``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from runner.core.errors import ConfigError
from runner.core.schema import register_configs

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """The root config with ``overrides``; ``paths.root`` is ``root`` (default: the working directory)
    unless an override sets it (``${hydra:runtime.cwd}`` only resolves inside ``@hydra.main``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    register_configs()
    own = [] if any(o.split("=", 1)[0].lstrip("+~") == "paths.root" for o in overrides) else [f"paths.root={Path(root or os.getcwd()).resolve()}"]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=[*own, *overrides])
    except HydraException as exc:  # a misspelled key, a wrong type, an unknown config group option
        raise ConfigError(f"{' '.join(overrides)}: {exc}") from None
