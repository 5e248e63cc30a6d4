"""The contract between the pipeline and a stage: ``run(cfg, ctx) -> StageResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig

from runner.core.paths import resolve_path


@dataclass
class StageResult:
    """What a stage returns: numbers for MLflow and files (relative to its folder) to log."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    # MLflow dataset inputs: context ("training", "validation", ...) -> file in the stage folder
    datasets: dict[str, str] = field(default_factory=dict)
    # MLflow tables (browsable in the UI): artifact file name -> JSONL file in the stage folder
    tables: dict[str, str] = field(default_factory=dict)


@dataclass
class StageContext:
    """Everything a stage may touch: its own work folder and its inputs' folders."""

    name: str
    cfg: DictConfig
    root: Path
    work_dir: Path
    inputs: dict[str, Path]
    log_metrics: Callable[[dict[str, float], Optional[int]], None] = lambda metrics, step=None: None

    def path(self, value: str | Path) -> Path:
        """Resolve a user path against the project root."""
        return resolve_path(value, self.root)
