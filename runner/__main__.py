"""Entry point: ``python -m runner [overrides]`` (Hydra)."""

import hydra
from omegaconf import DictConfig

from runner.app import main_task
from runner.schema import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return main_task(cfg)


if __name__ == "__main__":
    main()
