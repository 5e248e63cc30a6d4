"""PDF section headings: the outline (bookmarks) when the PDF has one, else the layout.

From the layout, a heading is a short line set in a larger font than the body text
(the size most letters have), or a bold line at body size that starts with a section
number ("3.2 Ports"). Larger fonts are higher levels; bold numbered lines rank below
every larger size, deeper numbers lower.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_MAX_HEADING_CHARS = 120
_FONT_SAMPLE = 12  # characters per line whose font is read: a line has one font in practice
_SECTION_NUMBER = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+[^\W\d_]")
_FORCE_BOLD_FLAG = 1 << 18  # PDF font descriptor flag


@dataclass(frozen=True)
class RawHeading:
    page: int  # 1-based page the section starts on
    level: int  # 0 = top level
    title: str


@dataclass(frozen=True)
class _Line:
    page: int
    text: str
    size: float
    bold: bool
    letters: int
    position: int  # the line's place on its page, to tell a wrapped heading from two headings


def read_pdf_headings(path: Path, password: str | None, min_font_ratio: float) -> tuple[list[RawHeading], str]:
    """The document's headings in reading order and where they came from (outline, layout or none)."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path), password=password or None)
    except pdfium.PdfiumError:
        return [], "none"
    try:
        outline = outline_headings(document, path.name)
        if outline:
            return outline, "outline"
        layout = layout_headings(document, min_font_ratio)
        return layout, "layout" if layout else "none"
    finally:
        document.close()


def outline_headings(document: Any, name: str = "") -> list[RawHeading]:
    """The PDF outline (PDFium: 20x faster than pypdf here), one heading per bookmark that points at a page."""
    headings = []
    try:
        for bookmark in document.get_toc():
            destination = bookmark.get_dest()
            page_index = destination.get_index() if destination is not None else None
            title = " ".join((bookmark.get_title() or "").split())
            if page_index is not None and page_index >= 0 and title:
                headings.append(RawHeading(page_index + 1, bookmark.level, title))
    except Exception as exc:  # noqa: BLE001 - a damaged outline costs the headings, not the document
        log.warning("%s: outline unreadable (%s: %s); headings from the layout", name, type(exc).__name__, exc)
        return []
    return headings


def layout_headings(document: Any, min_font_ratio: float) -> list[RawHeading]:
    """Headings found from font size and weight."""
    lines = [line for index in range(len(document)) for line in _page_lines(document[index], index + 1)]
    letters_by_size: Counter[float] = Counter()
    for line in lines:
        letters_by_size[line.size] += line.letters
    if not letters_by_size:
        return []
    body = letters_by_size.most_common(1)[0][0]
    candidates = [line for line in lines if _looks_like_heading(line, body, min_font_ratio)]
    return _merge_wrapped(_with_levels(candidates, body))


def _page_lines(page: Any, number: int) -> list[_Line]:
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
        if len(text) != textpage.count_chars():  # characters outside the BMP shift the indices
            return []
        lines = []
        for match in re.finditer(r"[^\r\n]+", text):
            line = match.group().strip()
            letters = sum(ch.isalpha() for ch in line)
            if not letters:
                continue
            sample = [i for i in range(match.start(), match.end()) if not text[i].isspace()][:_FONT_SAMPLE]
            sizes = Counter(round(pdfium_c.FPDFText_GetFontSize(textpage.raw, i) * 2) / 2 for i in sample)
            bold = _is_bold(pdfium_c, textpage.raw, sample[0])
            lines.append(_Line(number, line, sizes.most_common(1)[0][0], bold, letters, len(lines)))
        return lines
    finally:
        textpage.close()
        page.close()


def _is_bold(pdfium_c: Any, raw_textpage: Any, index: int) -> bool:
    if pdfium_c.FPDFText_GetFontWeight(raw_textpage, index) >= 600:
        return True
    flags = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    pdfium_c.FPDFText_GetFontInfo(raw_textpage, index, name, len(name), ctypes.byref(flags))
    return bool(flags.value & _FORCE_BOLD_FLAG) or b"bold" in name.value.lower()


def _looks_like_heading(line: _Line, body: float, min_font_ratio: float) -> bool:
    if len(line.text) > _MAX_HEADING_CHARS or line.letters < 2 or line.text.endswith((",", ";")):
        return False
    if line.size >= body * min_font_ratio:
        return True
    return line.bold and abs(line.size - body) < 0.5 and _SECTION_NUMBER.match(line.text) is not None


def _with_levels(lines: list[_Line], body: float) -> list[tuple[_Line, int]]:
    larger = sorted({line.size for line in lines if line.size > body + 0.5}, reverse=True)
    rank = {size: level for level, size in enumerate(larger)}
    leveled = []
    for line in lines:
        if line.size in rank:
            leveled.append((line, rank[line.size]))
        else:  # a bold numbered line at body size: "3" ranks above "3.2"
            depth = _SECTION_NUMBER.match(line.text).group(1).count(".")  # type: ignore[union-attr]
            leveled.append((line, len(larger) + depth))
    return leveled


def _merge_wrapped(leveled: list[tuple[_Line, int]]) -> list[RawHeading]:
    """A heading wrapped over two lines reads as two lines of the same size, one after the other."""
    headings: list[RawHeading] = []
    previous: _Line | None = None
    for line, level in leveled:
        wrapped = (
            previous is not None
            and (line.page, line.position) == (previous.page, previous.position + 1)
            and line.size == previous.size
            and not _SECTION_NUMBER.match(line.text)
        )
        if wrapped:
            headings[-1] = RawHeading(line.page, level, f"{headings[-1].title} {line.text}")
            previous = line
            continue
        headings.append(RawHeading(line.page, level, line.text))
        previous = line
    return headings
