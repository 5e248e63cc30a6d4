"""The one rule for paths a user gives: ``~`` expanded, absolute kept, anything else under ``paths.root``."""

from __future__ import annotations

from pathlib import Path


def resolve_path(value: str | Path, root: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(root) / path
