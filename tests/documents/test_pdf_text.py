"""PDF text: the lost-spacing detector and the per-document choice between pypdf and PDFium, on built PDFs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfReader

from pdfs import build_text_pdf, build_unspaced_pdf
from runner.documents.pdf_text import PDFIUM, PYPDF, SpacingRule, long_word_share, read_pdf_text

RULE = SpacingRule(max_word_letters=20, max_long_share=0.05)
PROSE = " ".join(["The relay daemon rotates its journal every night and keeps seven archives before deleting the oldest one."] * 3)


def test_long_word_share_separates_spaced_from_run_together_text() -> None:
    assert long_word_share(PROSE, 20) == 0.0
    run_together = PROSE.replace(" ", "").replace(".", ". ")
    assert long_word_share(run_together, 20) > 0.9
    assert long_word_share("Too short to judge.", 20) is None


def test_pypdf_loses_the_spacing_and_pdfium_restores_it(tmp_path: Path) -> None:
    pdf = build_unspaced_pdf(tmp_path / "unspaced.pdf", [PROSE, PROSE])
    assert "Therelaydaemonrotates" in (PdfReader(str(pdf)).pages[0].extract_text() or "")  # the defect is real

    result = read_pdf_text(pdf, None, "auto", RULE)

    assert result.extractor == PDFIUM
    assert result.unspaced_pages == []
    assert all("The relay daemon rotates its journal" in text for text in result.texts)
    assert result.choice["unspaced_pages"] == {PYPDF: 2, PDFIUM: 0}
    assert result.choice["pages_judged"] == 2
    assert result.choice["median_long_word_share"][PYPDF] > RULE.max_long_share
    assert result.choice["reason"] == "pypdf lost word spacing on 2 of 2 judged pages"


def test_a_page_no_extractor_can_space_is_reported(tmp_path: Path) -> None:
    # page 2 has no gap at all between its words: nothing can tell them apart
    pdf = build_unspaced_pdf(tmp_path / "unspaced.pdf", [PROSE, PROSE], word_gap=[250, 0])
    result = read_pdf_text(pdf, None, "auto", RULE)
    assert result.extractor == PDFIUM
    assert result.unspaced_pages == [2]
    assert result.choice["unspaced_pages"] == {PYPDF: 2, PDFIUM: 1}


def test_a_spaced_pdf_stays_with_pypdf_without_trying_pdfium(tmp_path: Path) -> None:
    pdf = build_text_pdf(tmp_path / "plain.pdf", [PROSE[:90] + "\n" + PROSE[90:180] + "\n" + PROSE[180:]])
    result = read_pdf_text(pdf, None, "auto", RULE)
    assert result.extractor == PYPDF
    assert result.choice == {
        "extractor": PYPDF,
        "pages_judged": 1,
        "unspaced_pages": {PYPDF: 0},
        "median_long_word_share": {PYPDF: 0.0},
        "reason": "word spacing intact",
    }


@pytest.mark.parametrize("extractor", [PYPDF, PDFIUM])
def test_a_forced_extractor_is_used_as_is(tmp_path: Path, extractor: str) -> None:
    pdf = build_unspaced_pdf(tmp_path / "unspaced.pdf", [PROSE])
    result = read_pdf_text(pdf, None, extractor, RULE)
    assert result.extractor == extractor
    assert result.choice["reason"] == f"ingest.pdf_extractor={extractor}"
    assert result.unspaced_pages == ([1] if extractor == PYPDF else [])
