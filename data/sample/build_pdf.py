"""Render the sample manual (manual.md) into manual.pdf with fpdf2.

The sample corpus is a fictional vendor manual for "Quillstream Relay", a
product that does not exist, so no language model can already know its facts.
This script turns the Markdown source into a PDF that looks like a typical
vendor document: every page carries a running header and a page footer (which
the ingest stage is expected to strip), headings are larger and bold, list
items start with a dash, tables are written as simple text rows and inline
code is set in Courier.

Only the small Markdown subset used by manual.md is supported: ``#``/``##``/
``###`` headings, paragraphs, ``- `` bullet lists, pipe tables and inline code
in backticks. The core PDF fonts are latin-1 only, so the source must not
contain other characters.

The output is deterministic: the creation date and all metadata are fixed, so
rebuilding with the same fpdf2 version yields identical bytes.

Usage (from the repository root):

    python data/sample/build_pdf.py
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "manual.md"
TARGET = HERE / "manual.pdf"

RUNNING_HEADER = "Quillstream Relay 3.4 Administrator Guide"
FOOTER_TEMPLATE = "Halvorsen Systems - Confidential - Page {page}"
FIXED_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)

BODY_FONT = "Helvetica"
CODE_FONT = "Courier"
BODY_SIZE = 10
LINE_H = 5.0


class ManualPDF(FPDF):
    """FPDF with the manual's running header and footer."""

    def header(self) -> None:
        self.set_font(BODY_FONT, "I", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, RUNNING_HEADER, align="R")
        self.ln(6)
        self.set_draw_color(160, 160, 160)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(4)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font(BODY_FONT, "I", 8)
        self.set_text_color(90, 90, 90)
        self.cell(0, 8, FOOTER_TEMPLATE.format(page=self.page_no()), align="C")
        self.set_text_color(0, 0, 0)


def _words(text: str) -> list[list[tuple[bool, str]]]:
    """Split text into words; each word is a list of (is_code, piece) runs.

    A word is a run of non-space characters (with its leading whitespace) and
    may span a font change, e.g. "`relay.toml`," is one word made of a code
    piece and a "," piece, so the punctuation never wraps away from the code.
    """
    words: list[list[tuple[bool, str]]] = []
    current: list[tuple[bool, str]] = []
    for i, part in enumerate(text.split("`")):
        is_code = bool(i % 2)
        for chunk in re.findall(r"\s+|\S+", part):
            if chunk.isspace():
                if current:
                    words.append(current)
                current = [(is_code, " ")]
            else:
                current.append((is_code, chunk))
    if current:
        words.append(current)
    return words


def write_inline(pdf: FPDF, text: str, style: str = "", size: float = BODY_SIZE) -> None:
    """Write flowing text, switching to Courier for `inline code` spans.

    Words are placed one at a time so that a long unbroken token (a path, a
    config key) moves to the next line as a whole instead of being split
    mid-word by FPDF.write(), which would corrupt it in the extracted text.
    """

    def use(is_code: bool) -> None:
        if is_code:
            pdf.set_font(CODE_FONT, "", size)
        else:
            pdf.set_font(BODY_FONT, style, size)

    def width(runs: list[tuple[bool, str]]) -> float:
        total = 0.0
        for is_code, piece in runs:
            use(is_code)
            total += pdf.get_string_width(piece)
        return total

    right = pdf.w - pdf.r_margin - 2 * pdf.c_margin - 0.5
    for runs in _words(text):
        if pdf.get_x() + width(runs) > right and pdf.get_x() > pdf.l_margin + 0.5:
            pdf.ln(LINE_H)
            if runs and runs[0][1] == " ":
                runs = runs[1:]
        elif pdf.get_x() <= pdf.l_margin + 0.5 and runs and runs[0][1] == " ":
            runs = runs[1:]
        for is_code, piece in runs:
            use(is_code)
            pdf.write(LINE_H, piece)
    use(False)


def ensure_space(pdf: FPDF, needed: float) -> None:
    """Start a new page if less than `needed` mm are left (avoids orphan headings)."""
    if pdf.get_y() + needed > pdf.page_break_trigger:
        pdf.add_page()


def render_heading(pdf: FPDF, level: int, text: str, first_section: bool) -> None:
    if level == 1:
        pdf.ln(20)
        pdf.set_font(BODY_FONT, "B", 22)
        pdf.multi_cell(0, 10, text)
        pdf.ln(2)
        pdf.set_font(BODY_FONT, "", 12)
        pdf.multi_cell(0, 6, "Halvorsen Systems - Document HS-QSR-ADM-34, revision C")
        pdf.ln(8)
    elif level == 2:
        if not first_section:
            pdf.add_page()
        else:
            ensure_space(pdf, 40)
            pdf.ln(4)
        pdf.set_font(BODY_FONT, "B", 16)
        pdf.multi_cell(0, 8, text)
        pdf.ln(3)
    else:
        ensure_space(pdf, 25)
        pdf.ln(2)
        pdf.set_font(BODY_FONT, "B", 12)
        pdf.multi_cell(0, 6, text.replace("`", ""))
        pdf.ln(1)
    pdf.set_font(BODY_FONT, "", BODY_SIZE)


def render_paragraph(pdf: FPDF, text: str) -> None:
    pdf.set_x(pdf.l_margin)
    write_inline(pdf, text)
    pdf.ln(LINE_H)
    pdf.ln(2.5)


def render_list(pdf: FPDF, items: list[str]) -> None:
    base = pdf.l_margin
    for item in items:
        pdf.set_x(base + 3)
        pdf.set_font(BODY_FONT, "", BODY_SIZE)
        pdf.write(LINE_H, "-")
        pdf.set_left_margin(base + 8)
        pdf.set_x(base + 8)
        write_inline(pdf, item)
        pdf.ln(LINE_H)
        pdf.set_left_margin(base)
        pdf.ln(1)
    pdf.ln(1.5)


def split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def render_table(pdf: FPDF, rows: list[str]) -> None:
    cells = [split_row(r) for r in rows]
    # Drop the Markdown separator row (| --- | --- |).
    cells = [c for c in cells if not all(set(x) <= set("-: ") for x in c)]
    base = pdf.l_margin
    pdf.set_left_margin(base + 3)
    for idx, row in enumerate(cells):
        pdf.set_x(base + 3)
        style = "B" if idx == 0 else ""
        write_inline(pdf, " | ".join(row), style=style, size=9)
        pdf.ln(LINE_H)
        if idx == 0:
            pdf.set_draw_color(160, 160, 160)
            pdf.line(base + 3, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
            pdf.ln(1)
    pdf.set_left_margin(base)
    pdf.set_font(BODY_FONT, "", BODY_SIZE)
    pdf.ln(3)


def parse_blocks(markdown: str) -> list[tuple[str, object]]:
    """Split the Markdown into (kind, payload) blocks."""
    blocks: list[tuple[str, object]] = []
    para: list[str] = []
    items: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(("para", " ".join(para)))
            para.clear()
        if items:
            blocks.append(("list", list(items)))
            items.clear()
        if table:
            blocks.append(("table", list(table)))
            table.clear()

    for raw in markdown.splitlines():
        line = raw.rstrip()
        if not line.strip():
            flush()
        elif line.startswith("#"):
            flush()
            level = len(line) - len(line.lstrip("#"))
            blocks.append(("heading", (level, line[level:].strip())))
        elif line.startswith("- "):
            if para or table:
                flush()
            items.append(line[2:].strip())
        elif line.startswith("|"):
            if para or items:
                flush()
            table.append(line)
        elif items and raw.startswith("  "):
            items[-1] += " " + line.strip()  # continuation of a list item
        else:
            if items or table:
                flush()
            para.append(line.strip())
    flush()
    return blocks


def build(source: Path = SOURCE, target: Path = TARGET) -> int:
    """Render `source` to `target`; return the number of pages."""
    text = source.read_text(encoding="utf-8")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise SystemExit(f"{source}: non latin-1 character at offset {exc.start}") from exc

    pdf = ManualPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(RUNNING_HEADER)
    pdf.set_author("Halvorsen Systems")
    pdf.set_subject("Quillstream Relay 3.4 - installation, configuration and operation")
    pdf.set_creator("doc2lora data/sample/build_pdf.py")
    pdf.set_producer("fpdf2")
    pdf.set_lang("en")
    pdf.add_page()
    pdf.set_font(BODY_FONT, "", BODY_SIZE)

    seen_section = False
    for kind, payload in parse_blocks(text):
        if kind == "heading":
            level, title = payload  # type: ignore[misc]
            render_heading(pdf, level, title, first_section=(level == 2 and not seen_section))
            if level == 2:
                seen_section = True
        elif kind == "para":
            render_paragraph(pdf, payload)  # type: ignore[arg-type]
        elif kind == "list":
            render_list(pdf, payload)  # type: ignore[arg-type]
        elif kind == "table":
            render_table(pdf, payload)  # type: ignore[arg-type]

    pdf.output(str(target))
    return pdf.page_no()


def main() -> None:
    pages = build()
    print(f"wrote {TARGET} ({pages} pages)")


if __name__ == "__main__":
    main()
