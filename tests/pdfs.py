"""Real PDFs built by the tests (fpdf2, pypdf): a vendor-style manual, a blank one, a scanned one, encrypted copies."""

from __future__ import annotations

import io
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
