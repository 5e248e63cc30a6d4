"""Content-addressed stage cache.

A stage's output lives in ``<cache_dir>/<stage>/<key>/`` where the key hashes the
stage name, its code, its config slice and its inputs' keys. Work happens in
``<key>.partial/`` and is renamed into place only when the stage finished, so a
half-written folder is never taken as complete. A file lock per key makes two
jobs sharing the cache wait for each other instead of computing the key twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

MANIFEST = "_stage.json"


def hash_json(payload: Any) -> str:
    """Stable short hash of a JSON-serialisable value."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def hash_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def hash_file_remembered(path: Path, memo_dir: Path) -> str:
    """``hash_file`` of a possibly large file (a model), remembered per path, size and mtime in
    ``memo_dir`` so that a multi-GB file is read once, not at every run."""
    stat = path.stat()
    memo = memo_dir / f"{hash_json([str(path.resolve()), stat.st_size, stat.st_mtime_ns])}.sha256"
    if memo.is_file():
        return memo.read_text().strip()
    digest = hash_file(path)
    memo_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(memo, digest)
    return digest


def hash_source(path: str | Path) -> str:
    """Short content hash of a code file, for cache keys."""
    return hash_file(Path(path))[:16]


@dataclass(frozen=True)
class CacheEntry:
    """Where one stage key lives on disk."""

    stage_dir: Path
    key: str

    @property
    def final_dir(self) -> Path:
        return self.stage_dir / self.key

    @property
    def partial_dir(self) -> Path:
        return self.stage_dir / f"{self.key}.partial"

    @property
    def lock_path(self) -> Path:
        return self.stage_dir / f"{self.key}.lock"

    def is_complete(self) -> bool:
        return (self.final_dir / MANIFEST).is_file()

    def lock(self) -> FileLock:
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path))

    def read_manifest(self) -> dict[str, Any]:
        return json.loads((self.final_dir / MANIFEST).read_text())

    def prepare_partial(self, resume: bool) -> Path:
        """Return the work folder; keep earlier partial work only when the stage can resume."""
        if self.partial_dir.exists() and not resume:
            shutil.rmtree(self.partial_dir)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        return self.partial_dir

    def commit(self, manifest: dict[str, Any]) -> None:
        """Write the manifest last, then atomically rename the work folder into place."""
        write_json_atomic(self.partial_dir / MANIFEST, manifest)
        if self.final_dir.exists():  # an incomplete leftover without manifest
            shutil.rmtree(self.final_dir)
        os.replace(self.partial_dir, self.final_dir)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
