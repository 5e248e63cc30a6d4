"""Ingest: read PDF, Markdown and text documents into pages, keeping file and page number.

Bad documents (corrupt, encrypted without password, text-less, empty, unsupported)
are reported by name and skipped; the run stops only when nothing usable is left.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runner.artifacts import Ingest
from runner.cache import write_json_atomic
from runner.errors import ConfigError, InputError
from runner.jsonl import write_jsonl
from runner.stage import StageContext, StageResult

log = logging.getLogger(__name__)

_EDGE_LINES = 2  # lines at the top and bottom of a page checked for running headers/footers


@dataclass
class Page:
    source: str
    page: int
    text: str


class DocumentSkipped(Exception):
    """A document cannot be used; the message says why."""


def discover_documents(ingest_cfg: Any, root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand configured files/folders into document paths plus (path, reason) for unsupported files."""
    extensions = {ext.lower() for ext in ingest_cfg.extensions}
    files: list[Path] = []
    unsupported: list[tuple[str, str]] = []
    for entry in ingest_cfg.documents:
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise ConfigError(f"ingest.documents entry {entry!r} does not exist (looked for {path})")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.name.startswith("."):
                continue
            if candidate.suffix.lower() in extensions:
                files.append(candidate)
            else:
                unsupported.append((str(candidate), f"unsupported extension {candidate.suffix or '(none)'}"))
    return files, unsupported


def read_pdf(path: Path, password: str | None, min_chars_per_page: int) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            # many PDFs are "encrypted" with an empty user password: try it before asking for one
            if not reader.decrypt(password or ""):
                hint = "wrong ingest.pdf_password" if password else "set ingest.pdf_password"
                raise DocumentSkipped(f"encrypted PDF ({hint})")
        texts = [page.extract_text() or "" for page in reader.pages]
    except DocumentSkipped:
        raise
    except FileNotDecryptedError:
        raise DocumentSkipped("encrypted PDF (set ingest.pdf_password)") from None
    except (
        PyPdfError,  # PdfReadError, PdfStreamError, LimitReachedError (reference loops), ...
        DependencyError,  # e.g. AES encryption without the cryptography package
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        NotImplementedError,  # a damaged /Filter name
        RecursionError,
    ) as exc:
        raise DocumentSkipped(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    if not texts:
        raise DocumentSkipped("PDF has no pages")
    if all(len(text.strip()) < min_chars_per_page for text in texts):
        raise DocumentSkipped("no extractable text (image-only or scanned PDF? run OCR first)")
    return [Page(str(path), number, text) for number, text in enumerate(texts, start=1)]


def read_text(path: Path) -> tuple[list[Page], str | None]:
    """Read a .md/.txt file as one page; return a warning when it was not UTF-8."""
    data = path.read_bytes()
    warning = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("cp1252", errors="replace")
        warning = f"not UTF-8 (byte {exc.start}); decoded as cp1252"
    return [Page(str(path), 1, text)], warning


def _edge_signature(line: str) -> str:
    """Page numbers change from page to page; compare lines with digits masked."""
    return re.sub(r"\d+", "#", line.strip())


def strip_repeated_lines(pages: list[Page], min_fraction: float) -> tuple[list[Page], list[str]]:
    """Remove lines repeated at the top or bottom of most pages (running headers/footers)."""
    if len(pages) < 3:
        return pages, []
    counts: Counter[str] = Counter()
    for page in pages:
        lines = [line for line in page.text.splitlines() if line.strip()]
        edges = lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]
        counts.update({_edge_signature(line) for line in edges})
    threshold = max(2, int(min_fraction * len(pages) + 0.999))
    repeated = {sig for sig, count in counts.items() if count >= threshold}
    if not repeated:
        return pages, []
    cleaned = []
    for page in pages:
        lines = page.text.splitlines()
        keep = _drop_edge_lines(lines, repeated)
        cleaned.append(Page(page.source, page.page, "\n".join(keep)))
    return cleaned, sorted(repeated)


def _drop_edge_lines(lines: list[str], repeated: set[str]) -> list[str]:
    non_empty = [i for i, line in enumerate(lines) if line.strip()]
    edge_ids = set(non_empty[:_EDGE_LINES] + non_empty[-_EDGE_LINES:])
    return [line for i, line in enumerate(lines) if not (i in edge_ids and _edge_signature(line) in repeated)]


def load_document(path: Path, ingest_cfg: Any) -> tuple[list[Page], list[str]]:
    """Read one document; return its pages and warnings, or raise DocumentSkipped."""
    if path.stat().st_size == 0:
        raise DocumentSkipped("empty file (0 bytes)")
    warnings: list[str] = []
    if path.suffix.lower() == ".pdf":
        pages = read_pdf(path, ingest_cfg.pdf_password, ingest_cfg.min_chars_per_page)
        empty = sum(len(p.text.strip()) < ingest_cfg.min_chars_per_page for p in pages)
        if empty:
            warnings.append(f"{empty} of {len(pages)} pages have no extractable text")
    else:
        pages, warning = read_text(path)
        if warning:
            warnings.append(warning)
        if not pages[0].text.strip():
            raise DocumentSkipped("no text (only whitespace)")
    if ingest_cfg.strip_repeated_lines:
        pages, removed = strip_repeated_lines(pages, ingest_cfg.repeated_line_min_fraction)
        if removed:
            log.info("%s: removed repeated header/footer lines %s", path.name, removed)
    return pages, warnings


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Read every configured document into ``pages.jsonl``; skip bad ones with a reason."""
    files, unsupported = discover_documents(cfg.ingest, ctx.root)
    skipped = [{"file": name, "reason": reason} for name, reason in unsupported]
    for item in skipped:
        log.warning("skipping %s: %s", item["file"], item["reason"])
    records: list[dict[str, Any]] = []
    warnings: list[dict[str, str]] = []
    ingested = 0
    for path in tqdm(files, desc="ingest", unit="doc"):
        try:
            pages, doc_warnings = load_document(path, cfg.ingest)
        except DocumentSkipped as exc:
            log.warning("skipping %s: %s", path, exc)
            skipped.append({"file": str(path), "reason": str(exc)})
            continue
        for warning in doc_warnings:
            log.warning("%s: %s", path, warning)
            warnings.append({"file": str(path), "warning": warning})
        ingested += 1
        doc_id = f"d{ingested:03d}"
        rel_source = _relative(path, ctx.root)
        records.extend(
            {"doc_id": doc_id, "source": rel_source, "page": p.page, "text": p.text}
            for p in pages
            if p.text.strip()
        )
    if not records:
        reasons = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped) or "no documents found"
        raise InputError(f"no usable document in ingest.documents ({reasons})")
    write_jsonl(ctx.work_dir / Ingest.PAGES, records)
    write_json_atomic(ctx.work_dir / Ingest.REPORT, {"skipped": skipped, "warnings": warnings})
    chars = sum(len(r["text"]) for r in records)
    log.info("ingested %d documents, %d pages, %d characters; skipped %d", ingested, len(records), chars, len(skipped))
    return StageResult(
        metrics={
            "documents": ingested,
            "documents_skipped": len(skipped),
            "pages": len(records),
            "characters": chars,
            "warnings": len(warnings),
        },
        artifacts=[Ingest.REPORT],
        summary={"skipped": skipped},
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
