"""Real PDFs built by the tests (fpdf2, pypdf): a vendor-style manual, a blank one, a scanned one, encrypted copies,
and the defects real PDFs bring: ligature glyphs, hyphenated line breaks, sections with or without an outline,
words placed without space characters."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from fpdf import FPDF
from PIL import Image
from pypdf import PdfWriter

HEADER = "Widget Fleet Operator Handbook"
FOOTER = "Norrland Widgets AB - Internal - Page {page}"
TOPICS = ["alpha", "bravo", "charlie", "delta", "echo"]


class _ManualPDF(FPDF):
    """A vendor-style PDF: running header and footer with the page number on every page."""

    def header(self) -> None:
        self.set_font("Helvetica", size=9)
        self.cell(0, 8, HEADER)
        self.ln(10)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", size=9)
        self.cell(0, 8, FOOTER.format(page=self.page_no()))


def _body(topic: str) -> str:
    return (
        f"The {topic} valve section explains how the {topic} valve is tuned. "
        f"Set {topic}.pressure to a value below the rated limit before opening the {topic} line."
    )


def build_manual_pdf(path: Path, topics: list[str] = TOPICS) -> Path:
    pdf = _ManualPDF()
    for topic in topics:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, _body(topic))
    path.write_bytes(bytes(pdf.output()))
    return path


def build_blank_pdf(path: Path, pages: int = 2) -> Path:
    pdf = FPDF()
    for _ in range(pages):
        pdf.add_page()
    path.write_bytes(bytes(pdf.output()))
    return path


def build_image_only_pdf(path: Path) -> Path:
    """A 'scanned' page: one raster image, no text layer."""
    pdf = FPDF()
    pdf.add_page()
    pdf.image(Image.new("RGB", (120, 80), (30, 90, 160)), x=20, y=20, w=120)
    path.write_bytes(bytes(pdf.output()))
    return path


def encrypt_pdf(source: Path, target: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=io.BytesIO(source.read_bytes()))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    with open(target, "wb") as handle:
        writer.write(handle)
    return target


def _unicode_font(pdf: FPDF) -> str:
    """DejaVu Sans, shipped with matplotlib (a project dependency): a TrueType font with ligature glyphs."""
    import matplotlib

    pdf.add_font("dejavu", fname=str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"))
    return "dejavu"


def build_text_pdf(path: Path, pages: list[str], unicode_font: bool = False) -> Path:
    """One page per text, lines broken where the text has newlines (as a typesetter broke them)."""
    pdf = FPDF()
    family = _unicode_font(pdf) if unicode_font else "Helvetica"
    for text in pages:
        pdf.add_page()
        pdf.set_font(family, size=11)
        for line in text.split("\n"):
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    path.write_bytes(bytes(pdf.output()))
    return path


def build_sectioned_pdf(path: Path, sections: list[tuple[int, int, str, str]], outline: bool = True) -> Path:
    """Sections (page, level, title, body): titles set larger than the body (18, 14, 12 pt by level),
    with a PDF outline entry each when ``outline``; a page number opens a new page when it changes."""
    pdf = FPDF()
    current_page = 0
    for page, level, title, body in sections:
        while current_page < page:
            pdf.add_page()
            current_page += 1
        pdf.set_font("Helvetica", style="B", size=(18, 14, 12)[level])
        if outline:
            pdf.start_section(title, level=level)
        pdf.multi_cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 5, body, new_x="LMARGIN", new_y="NEXT")
    path.write_bytes(bytes(pdf.output()))
    return path


def build_unspaced_pdf(path: Path, pages: list[str], word_gap: list[int] | None = None) -> Path:
    """Words placed without space characters, as LaTeX-made PDFs do (the Debian Reference): each line is one
    TJ array of words separated by a negative offset (``word_gap`` thousandths of an em per page, 250 by
    default), in a font that declares a space wider than that gap (the Debian Reference's serif: 564). pypdf
    then finds no word gap and runs the words together; PDFium measures the gaps and keeps them."""
    from pypdf.generic import ArrayObject, ContentStream, NameObject, NumberObject

    pdf = FPDF()
    family = _unicode_font(pdf)
    for text in pages:  # one Tj per word: the font subset gets each glyph, the stream each word's codes
        pdf.add_page()
        pdf.set_font(family, size=10)
        for word in text.split():
            pdf.text(10, 10, word)
    writer = PdfWriter(clone_from=io.BytesIO(bytes(pdf.output())))
    for number, (page, text) in enumerate(zip(writer.pages, pages)):
        codes = [ops[0].original_bytes for ops, op in ContentStream(page.get_contents(), writer).operations if op == b"Tj"]
        gap = b" -%d " % (word_gap[number] if word_gap else 250)
        lines = []
        for line in textwrap.wrap(text, 80, break_long_words=False, break_on_hyphens=False):
            words, codes = codes[: len(line.split())], codes[len(line.split()) :]
            lines.append(b"[" + gap.join(b"<" + word.hex().encode() + b">" for word in words) + b"] TJ T*")
        stream = ContentStream(None, writer)
        stream.set_data(b"BT /F1 10 Tf 56 780 Td 14 TL " + b" ".join(lines) + b" ET")
        page.replace_contents(stream)
    font = writer.pages[0]["/Resources"]["/Font"]["/F1"].get_object()["/DescendantFonts"][0].get_object()
    widths = font["/W"]  # [first code, [widths...], 32, 32, space width]: fpdf2 always declares the space last
    font[NameObject("/W")] = ArrayObject([*widths[:-3], NumberObject(32), NumberObject(32), NumberObject(600)])
    with open(path, "wb") as handle:
        writer.write(handle)
    return path
