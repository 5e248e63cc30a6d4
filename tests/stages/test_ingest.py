"""Ingest: real PDFs (built with fpdf2 / pypdf), text files and the bad documents users actually have."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Callable

import pytest
from fpdf import FPDF
from omegaconf import DictConfig
from PIL import Image
from pypdf import PdfReader, PdfWriter

from runner.errors import ConfigError, InputError
from runner.stage import StageContext
from runner.stages import ingest
from runner.stages.ingest import PAGES_FILE, REPORT_FILE, discover_documents

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


@pytest.fixture
def run_ingest(composed_cfg: Callable[..., DictConfig], repo_root: Path, tmp_path: Path):
    """Run the ingest stage on the given documents; return (records, report, metrics)."""

    def _run(documents: list[Path], *overrides: str):
        cfg = composed_cfg([f"ingest.documents=[{','.join(str(d) for d in documents)}]", *overrides])
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        ctx = StageContext(name="ingest", cfg=cfg, root=repo_root, work_dir=work, inputs={})
        result = ingest.run(cfg, ctx)
        records = [json.loads(line) for line in (work / PAGES_FILE).read_text(encoding="utf-8").splitlines()]
        report = json.loads((work / REPORT_FILE).read_text())
        return records, report, result.metrics

    return _run


def _warnings_naming(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and name in r.getMessage()]


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
    assert report == {"skipped": [], "warnings": []}
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


def test_bad_documents_are_skipped_by_name_while_good_ones_ingest(
    tmp_path: Path, run_ingest, caplog: pytest.LogCaptureFixture
) -> None:
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    good_pdf = build_manual_pdf(docs / "good.pdf")
    (docs / "notes.md").write_text("# Notes\n\nThe gizmo port is 4410.\n", encoding="utf-8")
    (docs / "nested" / "legacy.txt").write_bytes("Caf\xe9 menu: cr\xe8me br\xfbl\xe9e costs 5 \x80.".encode("latin-1"))
    data = good_pdf.read_bytes()
    (docs / "truncated.pdf").write_bytes(data[: len(data) // 2])
    (docs / "garbage.pdf").write_bytes(b"this is not a PDF at all\n" * 20)
    encrypt_pdf(good_pdf, docs / "locked.pdf", user_password="s3cret")
    build_blank_pdf(docs / "blank.pdf")
    build_image_only_pdf(docs / "scan.pdf")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "spaces.md").write_text("   \n\n  \n", encoding="utf-8")
    (docs / "slides.pptx").write_bytes(b"PK\x03\x04 not really")
    (docs / ".hidden.md").write_text("never read", encoding="utf-8")

    caplog.set_level(logging.WARNING, logger="runner.stages.ingest")
    records, report, metrics = run_ingest([docs])

    sources = {Path(r["source"]).name for r in records}
    assert sources == {"good.pdf", "notes.md", "legacy.txt"}
    legacy = next(r for r in records if r["source"].endswith("legacy.txt"))
    assert "Café menu: crème brûlée costs 5 €." in legacy["text"]  # decoded as cp1252

    expected_skips = {
        "truncated.pdf": "unreadable PDF",
        "garbage.pdf": "unreadable PDF",
        "locked.pdf": "ingest.pdf_password",
        "blank.pdf": "no extractable text",
        "scan.pdf": "no extractable text",
        "empty.txt": "empty file",
        "spaces.md": "no text",
        "slides.pptx": "unsupported extension .pptx",
    }
    skipped = {Path(item["file"]).name: item["reason"] for item in report["skipped"]}
    assert set(skipped) == set(expected_skips)
    for name, reason in expected_skips.items():
        assert reason in skipped[name]
        assert any(reason in message for message in _warnings_naming(caplog, name)), name
    assert any("not UTF-8" in m for m in _warnings_naming(caplog, "legacy.txt"))
    assert report["warnings"] == [{"file": str(docs / "nested" / "legacy.txt"), "warning": report["warnings"][0]["warning"]}]
    assert metrics == {
        "documents": 3,
        "documents_skipped": len(expected_skips),
        "pages": 5 + 1 + 1,
        "characters": sum(len(r["text"]) for r in records),
        "warnings": 1,
    }
    assert not _warnings_naming(caplog, ".hidden.md")


def test_encrypted_pdf_is_ingested_with_the_right_password(tmp_path: Path, run_ingest) -> None:
    locked = encrypt_pdf(build_manual_pdf(tmp_path / "plain.pdf"), tmp_path / "locked.pdf", user_password="s3cret")
    records, report, _ = run_ingest([locked], "ingest.pdf_password=s3cret")
    assert [r["page"] for r in records] == [1, 2, 3, 4, 5]
    assert "alpha valve section" in records[0]["text"]
    assert report["skipped"] == []


def test_encrypted_pdf_with_a_wrong_password_is_skipped_with_a_hint(tmp_path: Path, run_ingest) -> None:
    locked = encrypt_pdf(build_manual_pdf(tmp_path / "plain.pdf"), tmp_path / "locked.pdf", user_password="s3cret")
    (tmp_path / "other.md").write_text("Other document with enough text to count.", encoding="utf-8")
    _, report, _ = run_ingest([locked, tmp_path / "other.md"], "ingest.pdf_password=guess")
    assert report["skipped"] == [{"file": str(locked), "reason": "encrypted PDF (wrong ingest.pdf_password)"}]


def test_pdf_encrypted_with_an_empty_user_password_needs_no_password(tmp_path: Path, run_ingest) -> None:
    locked = encrypt_pdf(build_manual_pdf(tmp_path / "plain.pdf"), tmp_path / "owner_only.pdf", user_password="")
    assert PdfReader(str(locked)).is_encrypted
    records, _, _ = run_ingest([locked])
    assert len(records) == 5


def test_pdf_with_some_text_less_pages_warns_and_keeps_the_text_pages(
    tmp_path: Path, run_ingest, caplog: pytest.LogCaptureFixture
) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "The only page with text describes the sprocket calibration routine in detail.")
    pdf.add_page()  # blank
    pdf.add_page()
    pdf.image(Image.new("RGB", (60, 60), (200, 10, 10)), x=20, y=20, w=60)  # image only
    path = tmp_path / "mixed.pdf"
    path.write_bytes(bytes(pdf.output()))

    caplog.set_level(logging.WARNING, logger="runner.stages.ingest")
    records, report, _ = run_ingest([path])
    assert [r["page"] for r in records] == [1]  # text-less pages are not emitted, numbering kept
    assert report["warnings"] == [{"file": str(path), "warning": "2 of 3 pages have no extractable text"}]
    assert _warnings_naming(caplog, "mixed.pdf")


def test_folder_with_nothing_usable_raises_input_error_naming_each_file(tmp_path: Path, run_ingest) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    build_blank_pdf(docs / "blank.pdf")
    (docs / "empty.md").write_bytes(b"")
    (docs / "table.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError) as excinfo:
        run_ingest([docs])
    message = str(excinfo.value)
    for name in ("blank.pdf", "empty.md", "table.xlsx"):
        assert name in message


def test_empty_folder_raises_input_error(tmp_path: Path, run_ingest) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no documents found"):
        run_ingest([tmp_path / "empty"])


def test_missing_path_raises_config_error(tmp_path: Path, run_ingest) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.documents entry .*nowhere\.pdf.* does not exist"):
        run_ingest([tmp_path / "nowhere.pdf"])


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


def test_pdf_with_a_damaged_stream_filter_is_skipped_not_crashing(tmp_path: Path, run_ingest) -> None:
    # pypdf raises NotImplementedError for an unknown /Filter; it used to escape the stage
    data = build_manual_pdf(tmp_path / "good.pdf").read_bytes()
    assert b"/FlateDecode" in data
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(data.replace(b"/FlateDecode", b"/FlateDeco$e"))  # same length: offsets stay valid
    (tmp_path / "ok.md").write_text("A readable note about the impeller.", encoding="utf-8")
    records, report, _ = run_ingest([damaged, tmp_path / "ok.md"])
    assert [Path(r["source"]).name for r in records] == ["ok.md"]
    assert report["skipped"][0]["file"] == str(damaged)
    assert report["skipped"][0]["reason"].startswith("unreadable PDF (NotImplementedError")
