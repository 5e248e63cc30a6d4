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


# the leading bytes of formats a user may hand over under another extension
_SIGNATURES = (
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a zip archive (DOCX, EPUB, ODT, ...)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an OLE2 file (Word 97-2003 .doc, .xls, ...)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
)
_ZIP_SUFFIXES = (".docx", ".epub")


def content_mismatch(path: Path) -> str | None:
    """Why the file's bytes are not what its extension says, or None when they may be."""
    with open(path, "rb") as handle:
        head = handle.read(8192)
    found = next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        # other bytes are left to the PDF reader, which names what it could not parse
        return None if b"%PDF-" in head[:1024] or not found else f"not a PDF: the content is {found}"
    if suffix in _ZIP_SUFFIXES:
        return None if head.startswith(b"PK\x03\x04") else f"not a {suffix[1:].upper()}: the content is {found or 'not a zip archive'}"
    if found or b"\x00" in head:
        return f"not {suffix[1:].upper() or 'text'}: the content is {found or 'binary'}"
    return None
