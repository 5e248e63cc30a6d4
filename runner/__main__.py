"""Entry point: ``python -m runner [overrides]`` (Hydra)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from runner.cli.app import main_task
from runner.core.schema import register_configs

register_configs()


# an absolute folder: as a console script (`doc2lora`) Hydra would read "../conf" as a Python package
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    return main_task(cfg)


if __name__ == "__main__":
    main()
