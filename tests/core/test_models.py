"""Model references: embedded models, user files, and identities that do not depend on where a model lives."""

from __future__ import annotations

import shutil
from pathlib import Path

from runner.core.models import model_identity, resolve_gguf
from runner.core.paths import resolve_path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_resolve_path_expands_home_keeps_absolute_and_roots_the_rest(tmp_path: Path) -> None:
    assert resolve_path("~/x.pdf", tmp_path) == Path.home() / "x.pdf"
    assert resolve_path("/data/x.pdf", tmp_path) == Path("/data/x.pdf")
    assert resolve_path("docs/x.pdf", tmp_path) == tmp_path / "docs" / "x.pdf"


def test_embedded_model_identity_is_its_package_version_not_its_path(tmp_path: Path) -> None:
    identity = model_identity("embedded:smollm2", REPO_ROOT, tmp_path / "memo")
    assert identity[0] == "embedded:smollm2" and identity[1] not in ("", "not installed")
    assert str(resolve_gguf("embedded:smollm2", REPO_ROOT)) not in str(identity)


def test_a_user_file_is_keyed_by_content_wherever_it_lives(tmp_path: Path) -> None:
    first = tmp_path / "a" / "model.gguf"
    first.parent.mkdir()
    first.write_bytes(b"GGUF" + bytes(range(200)))
    moved = tmp_path / "b" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    memo = tmp_path / "memo"
    assert model_identity(str(first), tmp_path, memo) == model_identity(str(moved), tmp_path, memo)
    assert len(list(memo.iterdir())) == 2  # one remembered hash per file (path, size, mtime)

    moved.write_bytes(b"GGUF" + bytes(range(201)))
    assert model_identity(str(first), tmp_path, memo) != model_identity(str(moved), tmp_path, memo)


def test_a_user_folder_is_keyed_by_its_files_contents(tmp_path: Path) -> None:
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}')
        (folder / "model.safetensors").write_bytes(b"weights")
    memo = tmp_path / "memo"
    assert model_identity(str(tmp_path / "one"), tmp_path, memo) == model_identity(str(tmp_path / "two"), tmp_path, memo)
