"""Ingest: read PDF, Markdown and text documents into pages, keeping file and page number.

Bad documents (corrupt, encrypted without password, text-less, empty, unsupported)
are reported by name and skipped; the run stops only when nothing usable is left.
Text is cleaned the same way for every document (NFKC; in PDFs, words hyphenated
across lines joined) and each page carries the section headings in force on it.
PDF reading is in runner/pdf_text.py and runner/pdf_headings.py.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from runner.artifacts import Ingest
from runner.cache import write_json_atomic
from runner.errors import InputError
from runner.headings import SourceHeading, markdown_headings, page_headings
from runner.jsonl import write_jsonl
from runner.documents import discover_documents
from runner.pdf_headings import read_pdf_headings
from runner.pdf_text import PYPDF, PdfText, PdfUnreadable, SpacingRule, read_pdf_text
from runner.stage import StageContext, StageResult
from runner.text_clean import join_hyphenated_breaks, normalize_unicode

log = logging.getLogger(__name__)

_EDGE_LINES = 2  # lines at the top and bottom of a page checked for running headers/footers


@dataclass
class Page:
    source: str
    page: int
    text: str


@dataclass
class LoadedDocument:
    pages: list[Page]
    warnings: list[str] = field(default_factory=list)
    skipped_pages: list[tuple[int, str]] = field(default_factory=list)  # (page, reason)
    extraction: Optional[dict[str, Any]] = None  # PDFs: the extractor chosen and the detector's numbers
    headings: dict[int, dict[str, Any]] = field(default_factory=dict)  # page -> heading_path, headings


class DocumentSkipped(Exception):
    """A document cannot be used; the message says why."""


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


def read_pdf(path: Path, ingest_cfg: Any) -> tuple[list[Page], PdfText]:
    rule = SpacingRule(ingest_cfg.spacing_max_word_letters, ingest_cfg.spacing_max_long_share)
    try:
        pdf = read_pdf_text(path, ingest_cfg.pdf_password, ingest_cfg.pdf_extractor, rule)
    except PdfUnreadable as exc:
        raise DocumentSkipped(str(exc)) from None
    if not pdf.texts:
        raise DocumentSkipped("PDF has no pages")
    if all(len(text.strip()) < ingest_cfg.min_chars_per_page for text in pdf.texts):
        raise DocumentSkipped("no extractable text (image-only or scanned PDF? run OCR first)")
    return [Page(str(path), number, normalize_unicode(text)) for number, text in enumerate(pdf.texts, start=1)], pdf


def load_document(path: Path, ingest_cfg: Any) -> LoadedDocument:
    """Read and clean one document: its pages, warnings, left-out pages and headings; or raise DocumentSkipped."""
    if path.stat().st_size == 0:
        raise DocumentSkipped("empty file (0 bytes)")
    if path.suffix.lower() == ".pdf":
        return _load_pdf(path, ingest_cfg)
    pages, warning = read_text(path)
    if not pages[0].text.strip():
        raise DocumentSkipped("no text (only whitespace)")
    pages = [Page(p.source, p.page, normalize_unicode(p.text)) for p in pages]
    doc = LoadedDocument(_strip_running_lines(path, pages, ingest_cfg), [warning] if warning else [])
    headings = [h for page in doc.pages for h in markdown_headings(page.text, page.page)]
    doc.headings = page_headings([(p.page, p.text) for p in doc.pages], headings, keep_unlocated=True)
    return doc


def _load_pdf(path: Path, ingest_cfg: Any) -> LoadedDocument:
    pages, pdf = read_pdf(path, ingest_cfg)
    log.info("%s: %s, %s (detector: %s)", path.name, pdf.extractor, pdf.choice.get("reason"), _detector_numbers(pdf.choice))
    doc = LoadedDocument(pages, extraction={"file": str(path), **pdf.choice})
    empty = sum(len(p.text.strip()) < ingest_cfg.min_chars_per_page for p in pages)
    if empty:
        doc.warnings.append(f"{empty} of {len(pages)} pages have no extractable text")
    pages = _strip_running_lines(path, pages, ingest_cfg)
    texts = join_hyphenated_breaks([p.text for p in pages])
    pages = [Page(p.source, p.page, text) for p, text in zip(pages, texts)]
    if pdf.unspaced_pages:
        reason = f"no word spacing after {pdf.extractor} (ingest.spacing_max_long_share={ingest_cfg.spacing_max_long_share})"
        doc.skipped_pages = [(number, reason) for number in pdf.unspaced_pages]
        doc.warnings.append(f"{len(pdf.unspaced_pages)} of {len(pages)} pages left out: {reason}; pages {_page_list(pdf.unspaced_pages)}")
        pages = [p for p in pages if p.page not in set(pdf.unspaced_pages)]
        if not any(p.text.strip() for p in pages):
            raise DocumentSkipped(f"every page with text lost its word spacing ({pdf.choice.get('reason')})")
    raw, source = read_pdf_headings(path, ingest_cfg.pdf_password, ingest_cfg.heading_min_font_ratio)
    headings = [SourceHeading(h.page, h.level, normalize_unicode(h.title)) for h in raw]
    # an outline names real sections even where the text does not show the title; a layout line must be there
    doc.headings = page_headings([(p.page, p.text) for p in pages], headings, keep_unlocated=source == "outline")
    doc.extraction["headings"] = source
    doc.pages = pages
    return doc


def _strip_running_lines(path: Path, pages: list[Page], ingest_cfg: Any) -> list[Page]:
    if not ingest_cfg.strip_repeated_lines:
        return pages
    pages, removed = strip_repeated_lines(pages, ingest_cfg.repeated_line_min_fraction)
    if removed:
        log.info("%s: removed repeated header/footer lines %s", path.name, removed)
    return pages


def _detector_numbers(choice: dict[str, Any]) -> str:
    unspaced = choice.get("unspaced_pages", {})
    judged = choice.get("pages_judged")
    return ", ".join(f"{name} {count} of {judged} judged pages unspaced" for name, count in unspaced.items()) or "not run"


def _page_list(numbers: list[int], shown: int = 20) -> str:
    listed = ", ".join(map(str, numbers[:shown]))
    return listed + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


def run(cfg: Any, ctx: StageContext) -> StageResult:
    """Read every configured document into ``pages.jsonl``; skip bad ones (and unreadable pages) with a reason."""
    files, unsupported = discover_documents(cfg.ingest, ctx.root)
    skipped = [{"file": name, "reason": reason} for name, reason in unsupported]
    for item in skipped:
        log.warning("skipping %s: %s", item["file"], item["reason"])
    records: list[dict[str, Any]] = []
    warnings: list[dict[str, str]] = []
    skipped_pages: list[dict[str, Any]] = []
    extraction: list[dict[str, Any]] = []
    ingested = 0
    for path in tqdm(files, desc="ingest", unit="doc"):
        try:
            doc = load_document(path, cfg.ingest)
        except DocumentSkipped as exc:
            log.warning("skipping %s: %s", path, exc)
            skipped.append({"file": str(path), "reason": str(exc)})
            continue
        for warning in doc.warnings:
            log.warning("%s: %s", path, warning)
            warnings.append({"file": str(path), "warning": warning})
        skipped_pages.extend({"file": str(path), "page": number, "reason": reason} for number, reason in doc.skipped_pages)
        if doc.extraction:
            extraction.append(doc.extraction)
        ingested += 1
        records.extend(_page_records(doc, f"d{ingested:03d}", _relative(path, ctx.root)))
    if not records:
        reasons = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped) or "no documents found"
        raise InputError(f"no usable document in ingest.documents ({reasons})")
    write_jsonl(ctx.work_dir / Ingest.PAGES, records)
    report = {"skipped": skipped, "warnings": warnings, "skipped_pages": skipped_pages, "extraction": extraction}
    write_json_atomic(ctx.work_dir / Ingest.REPORT, report)
    chars = sum(len(r["text"]) for r in records)
    log.info("ingested %d documents, %d pages, %d characters; skipped %d", ingested, len(records), chars, len(skipped))
    return StageResult(
        metrics={
            "documents": ingested,
            "documents_skipped": len(skipped),
            "pages": len(records),
            "pages_skipped": len(skipped_pages),
            "characters": chars,
            "warnings": len(warnings),
            "pdf_fallback_documents": sum(e["extractor"] != PYPDF for e in extraction),
        },
        artifacts=[Ingest.REPORT],
        summary={"skipped": skipped},
    )


def _page_records(doc: LoadedDocument, doc_id: str, source: str) -> list[dict[str, Any]]:
    no_headings = {"heading_path": [], "headings": []}
    return [
        {"doc_id": doc_id, "source": source, "page": p.page, "text": p.text, **doc.headings.get(p.page, no_headings)}
        for p in doc.pages
        if p.text.strip()
    ]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
