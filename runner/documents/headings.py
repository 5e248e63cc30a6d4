"""Section headings per page: where each one starts in the page text and the path in force.

A document's headings come as (page, level, title) from the PDF outline or layout, or
with their offset from Markdown ``#`` lines. Each page gets the heading path in force at
its top and the headings that start on it, each with its character offset in the page
text and its full path, so a chunk finds its heading from its own offset alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
# "2.1 ", "A.3 ", "Chapter 4 ": numbering a heading line may carry that its outline title lacks
_NUMBERING = re.compile(r"^(?:(?:chapter|section|part|appendix)\s+)?(?:\d+|[A-Z])(?:\.\d+)*\.?\s+", re.IGNORECASE)
_LINE = re.compile(r"[^\n]*")
# "Chapter 2" on its own line above the chapter's title: the chapter starts there (a PDF writes both)
_CHAPTER_LABEL = re.compile(r"^\s*(?:chapter|appendix|part)\s+(?:\d+|[A-Z]|[IVXLC]+)\.?\s*$", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class SourceHeading:
    page: int  # 1-based page the section starts on
    level: int  # 0 = top level
    title: str
    offset: int | None = None  # character offset in the page text when known (Markdown)


def markdown_headings(text: str, page: int = 1) -> list[SourceHeading]:
    """ATX ``#`` heading lines outside fenced code blocks (where '# ' is a shell prompt or a comment)."""
    headings = []
    in_fence = False
    for match in _LINE.finditer(text):
        line = match.group()
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        heading = None if in_fence else _MARKDOWN_HEADING.match(line)
        if heading:
            headings.append(SourceHeading(page, len(heading.group(1)) - 1, heading.group(2).strip(), match.start()))
    return headings


def page_headings(
    pages: list[tuple[int, str]], headings: list[SourceHeading], keep_unlocated: bool
) -> dict[int, dict[str, Any]]:
    """Page number -> {"heading_path": [...], "headings": [{title, level, offset, in_text, path}]}.

    A heading that cannot be found in its page's text is kept at the position of the heading
    before it on that page (just after it, or at the page top) when ``keep_unlocated`` (an outline names real
    sections), else dropped (a layout line that was stripped as a running header).
    """
    by_page: dict[int, list[SourceHeading]] = {}
    for heading in headings:
        by_page.setdefault(heading.page, []).append(heading)
    texts = dict(pages)
    stack: list[tuple[int, str]] = []
    result: dict[int, dict[str, Any]] = {}
    for number in sorted(set(texts) | set(by_page)):
        top_path = [title for _, title in stack]
        starting = []
        position = 0  # headings on a page are in reading order: search each after the one before
        for heading in by_page.get(number, []):
            found = heading.offset if heading.offset is not None else locate_heading(texts.get(number, ""), heading.title, position)
            if found is None and not keep_unlocated:
                continue
            in_text = found is not None
            offset = found if found is not None else position
            position = offset + 1 if in_text else position
            while stack and stack[-1][0] >= heading.level:
                stack.pop()
            stack.append((heading.level, heading.title))
            starting.append(
                {"title": heading.title, "level": heading.level, "offset": offset, "in_text": in_text, "path": [t for _, t in stack]}
            )
        result[number] = {"heading_path": top_path, "headings": starting}
    return result


def locate_heading(text: str, title: str, start: int = 0) -> int | None:
    """Offset of the line at or after ``start`` that holds ``title`` (spacing and case ignored, numbering allowed)."""
    wanted = _squash(title)
    if not wanted:
        return None
    lines = [(m.start(), m.group()) for m in _LINE.finditer(text) if m.start() >= start and m.group().strip()]
    for index, (offset, line) in enumerate(lines):
        following = _squash(lines[index + 1][1]) if index + 1 < len(lines) else ""
        for candidate in {_squash(line), _squash(_NUMBERING.sub("", line.strip()))}:
            # the title on its line, or a heading wrapped over two lines
            if candidate == wanted or (len(candidate) >= 3 and wanted.startswith(candidate) and (candidate + following).startswith(wanted)):
                return lines[index - 1][0] if index and _CHAPTER_LABEL.match(lines[index - 1][1]) else offset
    return None


def heading_path_at(page: dict[str, Any], offset: int) -> list[str]:
    """The heading path in force at ``offset`` of a page record (an ingest record without headings: none)."""
    path = list(page.get("heading_path") or [])
    for heading in page.get("headings") or []:
        if heading["offset"] <= offset:
            path = heading["path"]
    return path


def heading_at(chunk: dict[str, Any], position: int) -> str:
    """The heading in force at ``position`` of a chunk's text: the last heading starting in the chunk before it,
    else the one in force where the chunk starts (a fact below a mid-chunk heading belongs to that heading)."""
    heading = chunk.get("heading") or ""
    for inner in chunk.get("headings") or []:
        if inner["offset"] <= position:
            heading = inner["title"]
    return heading


def _squash(text: str) -> str:
    """Letters and digits only: spacing an extractor lost, quotes an outline writes straight, case."""
    return "".join(_NOT_WORD.split(text)).casefold()
