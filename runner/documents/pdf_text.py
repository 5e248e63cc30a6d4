"""PDF text: pypdf first, PDFium (pypdfium2) for a document whose pages lost their word spacing.

pypdf infers spaces from glyph positions and loses them on PDFs that place words without
space characters (the Debian Reference reads "grep(1)canbeusedtoperform..." on 256 of 261
pages, also with ``extraction_mode="layout"``); PDFium's text page restores them. A page
has lost its spacing when too many of its letters sit in implausibly long alphabetic runs.
"""

from __future__ import annotations

import logging
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PYPDF = "pypdf"
PDFIUM = "pypdfium2"
_ALPHA_RUN = re.compile(r"[^\W\d_]+")
# a page with fewer letters says too little to judge its spacing (a title page, a figure caption)
_MIN_LETTERS_TO_JUDGE = 200


class PdfUnreadable(Exception):
    """The PDF cannot be read at all; the message says why."""


@dataclass
class PdfText:
    """One text per page (index 0 = page 1), the extractor that produced it and why."""

    texts: list[str]
    extractor: str
    choice: dict[str, Any] = field(default_factory=dict)  # detector numbers, for the ingest report
    unspaced_pages: list[int] = field(default_factory=list)  # 1-based pages still without word spacing


@dataclass(frozen=True)
class SpacingRule:
    max_word_letters: int  # an alphabetic run longer than this is words run together
    max_long_share: float  # a page with a larger share of its letters in such runs has lost its spacing


def long_word_share(text: str, max_word_letters: int) -> float | None:
    """Share of the page's letters in alphabetic runs longer than ``max_word_letters``; None when too short to judge."""
    runs = _ALPHA_RUN.findall(text)
    letters = sum(map(len, runs))
    if letters < _MIN_LETTERS_TO_JUDGE:
        return None
    return sum(len(run) for run in runs if len(run) > max_word_letters) / letters


def unspaced_pages(texts: list[str], rule: SpacingRule) -> tuple[list[int], list[float]]:
    """1-based numbers of the pages that lost their word spacing, and the share of every judged page."""
    shares = [long_word_share(text, rule.max_word_letters) for text in texts]
    bad = [number for number, share in enumerate(shares, start=1) if share is not None and share > rule.max_long_share]
    return bad, [share for share in shares if share is not None]


def read_pdf_text(path: Path, password: str | None, extractor: str, rule: SpacingRule) -> PdfText:
    """Extract every page with ``extractor`` (pypdf, pypdfium2, or auto: pypdf, PDFium when spacing is lost).

    auto reads with pypdf; when any page lost its word spacing it also reads with PDFium and
    keeps whichever has fewer such pages (pypdf on a tie), for the whole document: running
    headers stay identical from page to page, so they are still recognised and stripped.
    """
    first = PDFIUM if extractor == PDFIUM else PYPDF
    texts = read_with_pdfium(path, password) if first == PDFIUM else read_with_pypdf(path, password)
    bad, shares = unspaced_pages(texts, rule)
    choice: dict[str, Any] = {
        "extractor": first,
        "pages_judged": len(shares),
        "unspaced_pages": {first: len(bad)},
        "median_long_word_share": {first: _median(shares)},
    }
    if extractor != "auto" or not bad:
        choice["reason"] = f"ingest.pdf_extractor={extractor}" if extractor != "auto" else "word spacing intact"
        return PdfText(texts, first, choice, bad)
    try:
        fallback = read_with_pdfium(path, password)
    except PdfUnreadable as exc:
        choice["reason"] = f"{PDFIUM} failed ({exc}); kept {PYPDF}"
        return PdfText(texts, PYPDF, choice, bad)
    fallback_bad, fallback_shares = unspaced_pages(fallback, rule)
    choice["unspaced_pages"][PDFIUM] = len(fallback_bad)
    choice["median_long_word_share"][PDFIUM] = _median(fallback_shares)
    if len(fallback_bad) < len(bad):
        choice.update(extractor=PDFIUM, reason=f"{PYPDF} lost word spacing on {len(bad)} of {len(shares)} judged pages")
        return PdfText(fallback, PDFIUM, choice, fallback_bad)
    choice["reason"] = f"{PDFIUM} did not restore word spacing"
    return PdfText(texts, PYPDF, choice, bad)


def _median(shares: list[float]) -> float | None:
    return round(statistics.median(shares), 3) if shares else None


def read_with_pypdf(path: Path, password: str | None) -> list[str]:
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    try:
        reader = open_pypdf(path, password)
        return [page.extract_text() or "" for page in reader.pages]
    except PdfUnreadable:
        raise
    except FileNotDecryptedError:
        raise PdfUnreadable("encrypted PDF (set ingest.pdf_password)") from None
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
        raise PdfUnreadable(f"unreadable PDF ({type(exc).__name__}: {exc})") from None


def open_pypdf(path: Path, password: str | None) -> Any:
    """A decrypted ``PdfReader``; raises PdfUnreadable for a password that does not open it."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    # many PDFs are "encrypted" with an empty user password: try it before asking for one
    if reader.is_encrypted and not reader.decrypt(password or ""):
        hint = "wrong ingest.pdf_password" if password else "set ingest.pdf_password"
        raise PdfUnreadable(f"encrypted PDF ({hint})")
    return reader


def read_with_pdfium(path: Path, password: str | None) -> list[str]:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path), password=password or None)
    except pdfium.PdfiumError as exc:
        raise PdfUnreadable(f"unreadable PDF ({PDFIUM}: {exc})") from None
    try:
        return [_pdfium_page_text(document[index]) for index in range(len(document))]
    finally:
        document.close()


def _pdfium_page_text(page: Any) -> str:
    textpage = page.get_textpage()
    try:
        # get_text_range, not get_text_bounded: a line running past the page edge keeps its last characters
        text = textpage.get_text_range()
    finally:
        textpage.close()
        page.close()
    # PDFium ends lines with CRLF; a hyphen it takes for a word break at a line end becomes U+FFFE and
    # the two lines one ("di<U+FFFE>rectly"): restore the break, text_clean decides whether to join the word
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\ufffe\n", "-\n").replace("\ufffe", "-\n")
