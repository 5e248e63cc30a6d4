"""Which files ``ingest.documents`` names: files as given, folders searched recursively."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from runner.core.errors import ConfigError
from runner.core.paths import resolve_path


def discover_documents(ingest_cfg: Any, root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand configured files/folders into document paths plus (path, reason) for unsupported files."""
    extensions = {ext.lower() for ext in ingest_cfg.extensions}
    files: list[Path] = []
    unsupported: list[tuple[str, str]] = []
    for entry in ingest_cfg.documents:
        path = resolve_path(entry, root)
        if not path.exists():
            raise ConfigError(f"ingest.documents entry {entry!r} does not exist (looked for {path})")
        for candidate in _candidates(path):
            if candidate.suffix.lower() in extensions:
                files.append(candidate)
            else:
                unsupported.append((str(candidate), f"unsupported extension {candidate.suffix or '(none)'}"))
    return files, unsupported


def existing_documents(entries: Iterable[str], extensions: Iterable[str], root: Path) -> list[Path]:
    """The supported files among ``entries``, skipping the ones that do not exist (never raises)."""
    wanted = {ext.lower() for ext in extensions}
    found = []
    for entry in entries:
        path = resolve_path(entry, root)
        if path.exists():
            found += [p for p in _candidates(path) if p.suffix.lower() in wanted]
    return found


def _candidates(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [p for p in files if not p.name.startswith(".")]
