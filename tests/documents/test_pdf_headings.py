"""PDF headings: from the outline when there is one, else from font sizes and bold numbered lines."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

from pdfs import build_sectioned_pdf
from runner.documents.pdf_headings import RawHeading, read_pdf_headings

BODY = "The relay keeps its journal on local disk and rotates it every night. " * 6
SECTIONS = [
    (1, 0, "Installation", BODY),
    (1, 1, "System requirements", BODY),
    (2, 1, "Network ports", BODY),
    (3, 0, "Security", BODY),
]
EXPECTED = [RawHeading(1, 0, "Installation"), RawHeading(1, 1, "System requirements"), RawHeading(2, 1, "Network ports"), RawHeading(3, 0, "Security")]


def test_the_outline_gives_titles_levels_and_pages(tmp_path: Path) -> None:
    pdf = build_sectioned_pdf(tmp_path / "outline.pdf", SECTIONS)
    assert read_pdf_headings(pdf, None, 1.15) == (EXPECTED, "outline")


def test_without_an_outline_larger_lines_are_headings_ranked_by_size(tmp_path: Path) -> None:
    pdf = build_sectioned_pdf(tmp_path / "plain.pdf", SECTIONS, outline=False)
    assert read_pdf_headings(pdf, None, 1.15) == (EXPECTED, "layout")


def test_bold_numbered_lines_at_body_size_are_headings_deeper_numbers_lower(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    for title, body in [("3 Configuration", BODY), ("3.1 Files", BODY), ("Note that 3 files are read.", BODY)]:
        pdf.set_font("Helvetica", style="B" if title[0] == "3" else "", size=10)
        pdf.cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 5, body, new_x="LMARGIN", new_y="NEXT")
    path = tmp_path / "bold.pdf"
    path.write_bytes(bytes(pdf.output()))
    assert read_pdf_headings(path, None, 1.15) == ([RawHeading(1, 0, "3 Configuration"), RawHeading(1, 1, "3.1 Files")], "layout")


def test_a_pdf_in_one_font_size_has_no_headings(tmp_path: Path) -> None:
    pdf = build_sectioned_pdf(tmp_path / "flat.pdf", [(1, 0, "x", BODY)], outline=False)
    # the only larger line is a one-letter title: too short to be a heading
    assert read_pdf_headings(pdf, None, 1.15) == ([], "none")
