"""Ingest: real PDFs (built with fpdf2 / pypdf) and text files; page numbers, running headers and footers,
document discovery; the defects real PDFs bring (ligatures, hyphenated line breaks, lost word spacing) and
section headings. The bad documents users actually have are in tests/reliability/test_bad_documents.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig
from pypdf import PdfReader, PdfWriter

from pdfs import FOOTER, HEADER, TOPICS, build_manual_pdf, build_sectioned_pdf, build_text_pdf, build_unspaced_pdf
from runner.documents.files import discover_documents


@pytest.fixture
def manual_pdf(repo_root: Path, tmp_path: Path) -> Path:
    """The bundled sample manual, or (while someone rebuilds it) a built stand-in."""
    sample = repo_root / "data" / "sample" / "manual.pdf"
    try:
        if len(PdfReader(str(sample)).pages) >= 3:
            return sample
    except Exception:  # noqa: BLE001 - missing or half-written: use a built one
        pass
    return build_manual_pdf(tmp_path / "manual.pdf", TOPICS * 2)


def test_manual_keeps_page_numbers_and_strips_running_header_and_footer(manual_pdf: Path, run_ingest) -> None:
    raw = [page.extract_text() or "" for page in PdfReader(str(manual_pdf)).pages]
    # what the PDF repeats: the first and last line of a middle page
    middle = [line.strip() for line in raw[len(raw) // 2].splitlines() if line.strip()]
    header, footer = middle[0], middle[-1]
    footer_pattern = re.compile(re.escape(re.sub(r"\d+", "#", footer)).replace("\\#", r"\d+"))
    assert sum(footer_pattern.fullmatch(line.strip()) is not None for text in raw for line in text.splitlines()) >= 3

    records, report, metrics = run_ingest([manual_pdf])

    assert [r["page"] for r in records] == list(range(1, len(raw) + 1))
    assert metrics["pages"] == len(raw) and metrics["documents"] == 1
    assert report["skipped"] == [] and report["warnings"] == [] and report["skipped_pages"] == []
    assert [(e["extractor"], e["reason"], e["unspaced_pages"]) for e in report["extraction"]] == [
        ("pypdf", "word spacing intact", {"pypdf": 0})
    ]
    for record in records:
        lines = [line.strip() for line in record["text"].splitlines()]
        assert header not in lines, f"header left on page {record['page']}"
        assert not any(footer_pattern.fullmatch(line) for line in lines), f"footer left on page {record['page']}"
        assert len(record["text"].strip()) > 50  # the body is still there
    # body text stays on its own page: the text right after the header on the middle page
    assert middle[1] in records[len(raw) // 2]["text"]


def test_built_manual_body_survives_and_only_edges_are_stripped(tmp_path: Path, run_ingest) -> None:
    pdf = build_manual_pdf(tmp_path / "handbook.pdf")
    records, _, _ = run_ingest([pdf])
    assert [r["page"] for r in records] == [1, 2, 3, 4, 5]
    for record, topic in zip(records, TOPICS):
        assert HEADER not in record["text"]
        assert "Norrland Widgets AB" not in record["text"]
        assert f"{topic} valve section" in record["text"]
        assert f"Set {topic}.pressure" in " ".join(record["text"].split())
        assert record["source"] == str(pdf)  # outside the repo root: kept absolute
        assert record["doc_id"] == "d001"


def test_header_and_footer_are_kept_when_stripping_is_off(tmp_path: Path, run_ingest) -> None:
    pdf = build_manual_pdf(tmp_path / "handbook.pdf")
    records, _, _ = run_ingest([pdf], "ingest.strip_repeated_lines=false")
    assert all(HEADER in r["text"] for r in records)
    assert FOOTER.format(page=3) in records[2]["text"]


def test_discovery_is_recursive_sorted_case_insensitive_and_skips_hidden(
    tmp_path: Path, composed_cfg: Callable[..., DictConfig], repo_root: Path
) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/deep/z.TXT", "b/a.md", "a.PDF", ".secret.md", "b/.cache.txt", "notes.rtf"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    cfg = composed_cfg([f"ingest.documents=[{tmp_path}]"])
    files, unsupported = discover_documents(cfg.ingest, repo_root)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.PDF", "b/a.md", "b/deep/z.TXT"]
    assert unsupported == [(str(tmp_path / "notes.rtf"), "unsupported extension .rtf")]


def test_relative_document_paths_are_taken_from_paths_root(
    composed_cfg: Callable[..., DictConfig], repo_root: Path
) -> None:
    cfg = composed_cfg(["ingest.documents=[tests/conftest.py]", "ingest.extensions=[.py]"])
    files, _ = discover_documents(cfg.ingest, repo_root)
    assert files == [repo_root / "tests" / "conftest.py"]


# ---- defects real PDFs bring (issue 17): each reproduced in a built PDF, then the real Debian Reference

def test_ligature_glyphs_become_plain_letters(tmp_path: Path, run_ingest) -> None:
    pdf = build_text_pdf(tmp_path / "ligatures.pdf", ["The con\ufb01guration \ufb01le sets the \ufb02ow limit."], unicode_font=True)
    assert "\ufb01" in (PdfReader(str(pdf)).pages[0].extract_text() or "")  # the defect is in the PDF

    records, _, _ = run_ingest([pdf])

    assert records[0]["text"] == "The configuration file sets the flow limit."


def test_words_split_at_line_ends_are_joined_and_real_hyphens_kept(tmp_path: Path, run_ingest) -> None:
    pages = [
        "The con-\ntroller mounts the journal read-\nonly and builds for x86-\n64 hosts.",
        "Each controller is read-only for clients.",
    ]
    records, _, _ = run_ingest([build_text_pdf(tmp_path / "hyphens.pdf", pages)])
    assert records[0]["text"] == "The controller mounts the journal read-only and builds for x86-64 hosts."
    assert [r["page"] for r in records] == [1, 2]


def test_outline_headings_go_with_each_page(tmp_path: Path, run_ingest) -> None:
    body = "The relay keeps its journal on local disk and rotates it every night. " * 5
    sections = [(1, 0, "Installation", body), (1, 1, "System requirements", body), (2, 1, "Network ports", body), (3, 0, "Security", body)]
    records, report, _ = run_ingest([build_sectioned_pdf(tmp_path / "guide.pdf", sections)])

    assert report["extraction"][0]["headings"] == "outline"
    assert [r["heading_path"] for r in records] == [[], ["Installation", "System requirements"], ["Installation", "Network ports"]]
    assert [[(h["title"], h["level"], h["in_text"]) for h in r["headings"]] for r in records] == [
        [("Installation", 0, True), ("System requirements", 1, True)],
        [("Network ports", 1, True)],
        [("Security", 0, True)],
    ]
    first = records[0]
    assert first["text"][first["headings"][1]["offset"] :].startswith("System requirements")


def test_markdown_headings_come_from_hash_lines(tiny_doc: Path, run_ingest) -> None:
    records, report, _ = run_ingest([tiny_doc])
    assert report["extraction"] == []  # not a PDF
    assert [h["path"] for h in records[0]["headings"]] == [
        ["Tiny manual"],
        ["Tiny manual", "Harbour settings"],
        ["Tiny manual", "Lantern cache"],
        ["Tiny manual", "Upgrade notes"],
    ]


def test_lost_word_spacing_falls_back_to_pdfium_and_is_reported(tmp_path: Path, run_ingest) -> None:
    pages = [
        f"The {name} relay daemon rotates its journal every night and keeps seven archives before deleting the oldest. " * 3
        for name in ("alpha", "bravo", "charlie")  # different on every page: no line repeats as a running header
    ]
    pdf = build_unspaced_pdf(tmp_path / "unspaced.pdf", pages, word_gap=[250, 250, 0])

    records, report, metrics = run_ingest([pdf])

    assert [r["page"] for r in records] == [1, 2]  # page 3 runs its words together whatever reads it
    assert all("relay daemon rotates its journal every night" in r["text"] for r in records)
    [choice] = report["extraction"]
    assert (choice["extractor"], choice["unspaced_pages"]) == ("pypdfium2", {"pypdf": 3, "pypdfium2": 1})
    assert report["skipped_pages"] == [
        {"file": str(pdf), "page": 3, "reason": "no word spacing after pypdfium2 (ingest.spacing_max_long_share=0.05)"}
    ]
    assert report["warnings"] == [{"file": str(pdf), "warning": "1 of 3 pages left out: no word spacing after pypdfium2 "
                                   "(ingest.spacing_max_long_share=0.05); pages 3"}]
    assert (metrics["pages_skipped"], metrics["pdf_fallback_documents"]) == (1, 1)


def test_a_pdf_whose_every_page_lost_its_spacing_is_skipped(tmp_path: Path, run_ingest) -> None:
    prose = "The relay daemon rotates its journal every night and keeps seven archives before deleting the oldest. " * 3
    pdf = build_unspaced_pdf(tmp_path / "unspaced.pdf", [prose], word_gap=[0])
    (tmp_path / "ok.md").write_text("A usable note about the relay.", encoding="utf-8")
    records, report, _ = run_ingest([pdf, tmp_path / "ok.md"])
    assert [r["source"] for r in records] == [str(tmp_path / "ok.md")]
    assert report["skipped"][0]["file"] == str(pdf)
    assert report["skipped"][0]["reason"].startswith("every page with text lost its word spacing")


DEBIAN_REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "debian-reference" / "debian-reference.en.pdf"


@pytest.mark.skipif(not DEBIAN_REFERENCE.is_file(), reason=f"real corpus not here ({DEBIAN_REFERENCE}): a clone has no ../shared/")
def test_debian_reference_excerpt_reads_with_word_spacing_and_headings(tmp_path: Path, run_ingest) -> None:
    excerpt, reference = PdfWriter(), PdfReader(str(DEBIAN_REFERENCE))
    for index in range(30, 34):  # section 1.1.4 to 1.2: prose, a table of key bindings, shell examples
        excerpt.add_page(reference.pages[index])
    pdf = tmp_path / "debian-reference-excerpt.pdf"
    with open(pdf, "wb") as handle:
        excerpt.write(handle)
    assert "gaintherootshellprompt" in "".join((PdfReader(str(pdf)).pages[0].extract_text() or "").split(" "))

    records, report, _ = run_ingest([pdf])

    assert report["extraction"][0]["extractor"] == "pypdfium2"
    assert report["extraction"][0]["unspaced_pages"] == {"pypdf": 4, "pypdfium2": 0}
    assert report["extraction"][0]["headings"] == "layout"  # the excerpt has no outline
    assert "Here are a few basic methods to gain the root shell prompt by using the root password." in records[0]["text"]
    assert "start the command shell directly on the Linux host" in records[0]["text"]  # "di-\nrectly" joined
    assert records[0]["headings"][0]["title"] == "1.1.4 The root shell prompt"
    assert "Debian Reference" not in records[1]["text"].splitlines()[0]  # running header stripped
