"""Ingest: read PDF, HTML, DOCX, EPUB, Markdown and text documents into pages, keeping file and page number.

Bad documents (corrupt, encrypted without password or DRM-protected, text-less, empty, unsupported,
content not what the extension says) are reported by name and skipped; the run stops only when nothing usable is left.
Text is cleaned the same way for every document (NFKC; in PDFs, words hyphenated
across lines joined) and each page carries the section headings in force on it.
PDF reading is in runner/documents/pdf_text.py and runner/documents/pdf_headings.py; HTML, DOCX and EPUB
become Markdown pages in runner/documents/markup.py; the text repairs in
runner/documents/text_clean.py, where headings fall in a page's text in runner/documents/headings.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runner.core.artifacts import Ingest
from runner.core.cache import write_json_atomic
from runner.documents.files import content_mismatch, discover_documents
from runner.core.errors import InputError
from runner.documents.headings import SourceHeading, markdown_headings, page_headings
from runner.core.jsonl import write_jsonl
from runner.documents.markup import MARKUP_SUFFIXES, NotConvertible, read_markup
from runner.documents.pdf_headings import read_pdf_headings
from runner.documents.pdf_text import PYPDF, PdfText, PdfUnreadable, SpacingRule, read_pdf_text
from runner.core.stage import StageContext, StageResult
from runner.documents.text_clean import (
    join_hyphenated_breaks,
    normalize_unicode,
    strip_running_lines,
)

log = logging.getLogger(__name__)


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
    extraction: dict[str, Any] | None = None  # PDFs: the extractor chosen and the detector's numbers
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
    mismatch = content_mismatch(path)
    if mismatch:
        raise DocumentSkipped(mismatch)
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _load_pdf(path, ingest_cfg)
    if suffix in MARKUP_SUFFIXES:
        return _load_markup(path, ingest_cfg)
    pages, warning = read_text(path)
    if not pages[0].text.strip():
        raise DocumentSkipped("no text (only whitespace)")
    pages = [Page(p.source, p.page, normalize_unicode(p.text)) for p in pages]
    return _with_markdown_headings(LoadedDocument(_strip_running_lines(path, pages, ingest_cfg), [warning] if warning else []))


def _load_markup(path: Path, ingest_cfg: Any) -> LoadedDocument:
    """HTML, DOCX, EPUB as Markdown pages (sections or chapters: running lines are not stripped)."""
    try:
        texts = read_markup(path, ingest_cfg.markup_page_chars)
    except NotConvertible as exc:
        raise DocumentSkipped(str(exc)) from None
    if not any(text.strip() for text in texts):
        raise DocumentSkipped("no text in the main content (only scripts, styles, navigation or images?)")
    return _with_markdown_headings(
        LoadedDocument([Page(str(path), number, normalize_unicode(text)) for number, text in enumerate(texts, start=1)])
    )


def _with_markdown_headings(doc: LoadedDocument) -> LoadedDocument:
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
    pages = _leave_out_unspaced(doc, _strip_running_lines(path, pages, ingest_cfg), pdf, ingest_cfg)
    texts = join_hyphenated_breaks([p.text for p in pages])
    doc.pages = [Page(p.source, p.page, text) for p, text in zip(pages, texts)]
    raw, source = read_pdf_headings(path, ingest_cfg.pdf_password, ingest_cfg.heading_min_font_ratio)
    headings = [SourceHeading(h.page, h.level, normalize_unicode(h.title)) for h in raw]
    # an outline names real sections even where the text does not show the title; a layout line must be there
    doc.headings = page_headings([(p.page, p.text) for p in doc.pages], headings, keep_unlocated=source == "outline")
    doc.extraction["headings"] = source
    return doc


def _leave_out_unspaced(doc: LoadedDocument, pages: list[Page], pdf: PdfText, ingest_cfg: Any) -> list[Page]:
    """Pages the chosen extractor could not space are reported and dropped (after header detection saw them)."""
    if not pdf.unspaced_pages:
        return pages
    reason = f"no word spacing after {pdf.extractor} (ingest.spacing_max_long_share={ingest_cfg.spacing_max_long_share})"
    doc.skipped_pages = [(number, reason) for number in pdf.unspaced_pages]
    doc.warnings.append(f"{len(pdf.unspaced_pages)} of {len(pages)} pages left out: {reason}; pages {_page_list(pdf.unspaced_pages)}")
    unspaced = set(pdf.unspaced_pages)
    kept = [p for p in pages if p.page not in unspaced]
    if not any(p.text.strip() for p in kept):
        raise DocumentSkipped(f"every page with text lost its word spacing ({pdf.choice.get('reason')})")
    return kept


def _strip_running_lines(path: Path, pages: list[Page], ingest_cfg: Any) -> list[Page]:
    if not ingest_cfg.strip_repeated_lines:
        return pages
    texts, removed = strip_running_lines([p.text for p in pages], ingest_cfg.repeated_line_min_fraction)
    if removed:
        log.info("%s: removed repeated header/footer lines %s", path.name, removed)
    return [Page(p.source, p.page, text) for p, text in zip(pages, texts)]


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
    by_format: dict[str, int] = {}
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
        by_format[_format_of(path)] = by_format.get(_format_of(path), 0) + 1
        records.extend(_page_records(doc, f"d{ingested:03d}", _relative(path, ctx.root)))
    if not records:
        reasons = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped) or "no documents found"
        raise InputError(f"no usable document in ingest.documents ({reasons})")
    write_jsonl(ctx.work_dir / Ingest.PAGES, records)
    report = {
        "documents_by_format": by_format,
        "skipped": skipped,
        "warnings": warnings,
        "skipped_pages": skipped_pages,
        "extraction": extraction,
    }
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
            **{f"documents_by_format/{fmt}": count for fmt, count in sorted(by_format.items())},
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


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"htm": "html", "xhtml": "html", "markdown": "md"}.get(suffix, suffix or "none")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
