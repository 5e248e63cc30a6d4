"""Item 1, bad documents: each is skipped with a warning naming the file and the reason, the other
documents are still processed, the counts reach MLflow, and a run with nothing usable stops before
generation with one line (in a sweep, that job fails and the others finish).

The documents are real: PDFs built with fpdf2 and pypdf (truncated, garbage, encrypted, blank,
scanned, damaged stream filter), a cp1252 text file, empty and whitespace-only files, an unsupported
extension.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import pytest
from fpdf import FPDF
from omegaconf import DictConfig
from PIL import Image
from pypdf import PdfReader

from pdfs import build_blank_pdf, build_image_only_pdf, build_manual_pdf, encrypt_pdf
from runner.core.errors import ConfigError, InputError
from runner.documents.headings import heading_path_at
from runner.engine.pipeline import run_pipeline

ITEM = "bad documents"


def _warnings_naming(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and name in r.getMessage()]


def _bad_folder(docs: Path) -> dict[str, str]:
    """Write one of each bad document users have into ``docs``; return file name -> expected skip reason."""
    (docs / "nested").mkdir(parents=True, exist_ok=True)
    good_pdf = build_manual_pdf(docs / "good.pdf")
    data = good_pdf.read_bytes()
    (docs / "truncated.pdf").write_bytes(data[: len(data) // 2])
    (docs / "garbage.pdf").write_bytes(b"this is not a PDF at all\n" * 20)
    encrypt_pdf(good_pdf, docs / "locked.pdf", user_password="s3cret")
    build_blank_pdf(docs / "blank.pdf")
    build_image_only_pdf(docs / "scan.pdf")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "spaces.md").write_text("   \n\n  \n", encoding="utf-8")
    (docs / "slides.pptx").write_bytes(b"PK\x03\x04 not really")
    return {
        "truncated.pdf": "unreadable PDF",
        "garbage.pdf": "unreadable PDF",
        "locked.pdf": "ingest.pdf_password",
        "blank.pdf": "no extractable text",
        "scan.pdf": "no extractable text",
        "empty.txt": "empty file",
        "spaces.md": "no text",
        "slides.pptx": "unsupported extension .pptx",
    }


def test_bad_documents_are_skipped_by_name_and_counted_in_mlflow_while_good_ones_ingest(
    tmp_path: Path, composed_cfg: Callable[..., DictConfig], mlflow_client, caplog: pytest.LogCaptureFixture, reliability_report
) -> None:
    docs = tmp_path / "docs"
    expected_skips = _bad_folder(docs)
    (docs / "notes.md").write_text("# Notes\n\nThe gizmo port is 4410.\n", encoding="utf-8")
    (docs / "nested" / "legacy.txt").write_bytes("Caf\xe9 menu: cr\xe8me br\xfbl\xe9e costs 5 \x80.".encode("latin-1"))
    (docs / ".hidden.md").write_text("never read", encoding="utf-8")
    good = {"good.pdf", "notes.md", "legacy.txt"}

    caplog.set_level(logging.WARNING, logger="runner.stages.ingest")
    summary = run_pipeline(composed_cfg(["until=ingest", f"ingest.documents=[{docs}]"]))
    stage = Path(summary["stages"]["ingest"]["path"])
    records = [json.loads(line) for line in (stage / "pages.jsonl").read_text(encoding="utf-8").splitlines()]
    report = json.loads((stage / "ingest_report.json").read_text())

    sources = {Path(r["source"]).name for r in records}
    assert sources == good
    legacy = next(r for r in records if r["source"].endswith("legacy.txt"))
    assert "Café menu: crème brûlée costs 5 €." in legacy["text"]  # decoded as cp1252

    skipped = {Path(item["file"]).name: item["reason"] for item in report["skipped"]}
    assert set(skipped) == set(expected_skips)
    for name, reason in expected_skips.items():
        assert reason in skipped[name]
        assert any(reason in message for message in _warnings_naming(caplog, name)), name
    assert any("not UTF-8" in m for m in _warnings_naming(caplog, "legacy.txt"))
    assert report["warnings"] == [{"file": str(docs / "nested" / "legacy.txt"), "warning": report["warnings"][0]["warning"]}]
    expected_metrics = {
        "documents": 3,
        "documents_skipped": len(expected_skips),
        "pages": 5 + 1 + 1,
        "characters": sum(len(r["text"]) for r in records),
        "warnings": 1,
    }
    assert {k: summary["metrics"][f"ingest/{k}"] for k in expected_metrics} == expected_metrics
    assert not _warnings_naming(caplog, ".hidden.md")
    # the summary counts and the per-file reasons are in the MLflow run
    run = mlflow_client.get_run(summary["run_id"])
    assert {k: run.data.metrics[f"ingest/{k}"] for k in expected_metrics} == expected_metrics
    assert [a.path for a in mlflow_client.list_artifacts(summary["run_id"], "ingest")] == ["ingest/ingest_report.json"]

    lost = len(good - sources) + len(set(expected_skips) - set(skipped))
    assert lost == 0
    reliability_report.record(
        item=ITEM,
        case=f"one folder: {', '.join(sorted(expected_skips))}, a cp1252 .txt, a hidden file, 2 good documents",
        outcome=f"{len(sources)} usable documents ingested; {len(skipped)} skipped, each with a warning naming file and reason; "
        f"MLflow ingest/documents_skipped={run.data.metrics['ingest/documents_skipped']:.0f} and ingest_report.json",
        items_lost=lost,
    )


def test_encrypted_pdf_is_ingested_with_the_right_password(tmp_path: Path, run_ingest, reliability_report) -> None:
    locked = encrypt_pdf(build_manual_pdf(tmp_path / "plain.pdf"), tmp_path / "locked.pdf", user_password="s3cret")
    records, report, _ = run_ingest([locked], "ingest.pdf_password=s3cret")
    assert [r["page"] for r in records] == [1, 2, 3, 4, 5]
    assert "alpha valve section" in records[0]["text"]
    assert report["skipped"] == []
    reliability_report.record(
        item=ITEM, case="AES-128 encrypted PDF with the right ingest.pdf_password", outcome="all 5 pages ingested",
        items_lost=5 - len(records),
    )


def test_encrypted_pdf_with_a_wrong_password_is_skipped_with_a_hint(tmp_path: Path, run_ingest, reliability_report) -> None:
    locked = encrypt_pdf(build_manual_pdf(tmp_path / "plain.pdf"), tmp_path / "locked.pdf", user_password="s3cret")
    (tmp_path / "other.md").write_text("Other document with enough text to count.", encoding="utf-8")
    records, report, _ = run_ingest([locked, tmp_path / "other.md"], "ingest.pdf_password=guess")
    assert report["skipped"] == [{"file": str(locked), "reason": "encrypted PDF (wrong ingest.pdf_password)"}]
    assert [Path(r["source"]).name for r in records] == ["other.md"]
    reliability_report.record(
        item=ITEM, case="encrypted PDF with a wrong ingest.pdf_password (and without one: first test)",
        outcome=f"skipped: {report['skipped'][0]['reason']}; the other document ingested", items_lost=1 - len(records),
    )


def test_pdf_encrypted_with_an_empty_user_password_needs_no_password(tmp_path: Path, run_ingest, reliability_report) -> None:
    locked = encrypt_pdf(build_manual_pdf(tmp_path / "plain.pdf"), tmp_path / "owner_only.pdf", user_password="")
    assert PdfReader(str(locked)).is_encrypted
    records, _, _ = run_ingest([locked])
    assert len(records) == 5
    reliability_report.record(
        item=ITEM, case="PDF encrypted with an owner password only (empty user password), no password configured",
        outcome="all 5 pages ingested", items_lost=5 - len(records),
    )


def test_pdf_with_some_text_less_pages_warns_and_keeps_the_text_pages(
    tmp_path: Path, run_ingest, caplog: pytest.LogCaptureFixture, reliability_report
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
    reliability_report.record(
        item=ITEM, case="PDF with a text page, a blank page and a scanned page",
        outcome="the text page ingested with its page number; warning: 2 of 3 pages have no extractable text",
        items_lost=1 - len(records),
    )


def test_folder_with_nothing_usable_raises_input_error_naming_each_file(tmp_path: Path, run_ingest, reliability_report) -> None:
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
    reliability_report.record(item=ITEM, case="folder of a blank PDF, an empty .md, an .xlsx", outcome=f"InputError: {message}")


def test_empty_folder_raises_input_error(tmp_path: Path, run_ingest, reliability_report) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no documents found") as excinfo:
        run_ingest([tmp_path / "empty"])
    reliability_report.record(item=ITEM, case="an empty folder", outcome=f"InputError: {excinfo.value}")


def test_missing_path_raises_config_error(tmp_path: Path, run_ingest, reliability_report) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.documents entry .*nowhere\.pdf.* does not exist") as excinfo:
        run_ingest([tmp_path / "nowhere.pdf"])
    reliability_report.record(item=ITEM, case="a document path that does not exist", outcome=f"ConfigError: {str(excinfo.value).replace(str(tmp_path), '<tmp>')}")


def test_pdf_with_a_damaged_stream_filter_is_skipped_not_crashing(tmp_path: Path, run_ingest, reliability_report) -> None:
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
    reliability_report.record(
        item=ITEM, case="PDF whose stream filter name is damaged (pypdf raises NotImplementedError)",
        outcome=f"skipped: {report['skipped'][0]['reason'][:60]}...; the other document ingested", items_lost=1 - len(records),
    )


# ---------------------------------------------------------------- the real CLI


def _unusable_folder(docs: Path) -> list[str]:
    docs.mkdir(parents=True)
    build_blank_pdf(docs / "blank.pdf")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "garbage.pdf").write_bytes(b"%PDF-1.7 and then nothing\n")
    (docs / "slides.pptx").write_bytes(b"PK\x03\x04")
    return ["blank.pdf", "empty.txt", "garbage.pdf", "slides.pptx"]


def test_a_run_with_nothing_usable_stops_before_generation_with_one_line(tmp_path: Path, runner_cli, reliability_report) -> None:
    names = _unusable_folder(tmp_path / "docs")
    proc = runner_cli.run("until=generate", f"ingest.documents=[{tmp_path / 'docs'}]")

    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no usable document in ingest.documents"), proc.stderr[-3000:]
    assert all(name in errors[0] for name in names)
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in runner_cli.cache.iterdir()) == ["ingest"]  # stopped before chunking, let alone generation
    (run,) = runner_cli.runs()
    assert run.info.status == "FAILED" and run.data.tags["error"] == errors[0].removeprefix("error: ")
    reliability_report.record(
        item=ITEM, case=f"CLI run until=generate on a folder with nothing usable ({', '.join(names)})",
        outcome="exit 2 before chunking, one stderr line naming each file and its reason; MLflow run FAILED with the error as a tag",
    )


def test_a_sweep_job_with_unusable_documents_fails_alone_and_the_sweep_finishes(tmp_path: Path, runner_cli, reliability_report) -> None:
    """Hydra multirun: a job with a user error ends its own MLflow run FAILED and the others still run;
    the parent run ends FAILED (not RUNNING) and the process exits 2 naming the failed jobs."""
    good, unusable, missing = tmp_path / "good", tmp_path / "unusable", tmp_path / "missing"
    good.mkdir()
    (good / "notes.md").write_text("# Notes\n\nThe gizmo relay listens on port 4410.\n", encoding="utf-8")
    _unusable_folder(unusable)
    # job0 is fine, job1 fails inside its ingest stage, job2 fails the start-up check before its run begins
    proc = runner_cli.run("-m", "until=ingest", f"ingest.documents=[{good}],[{unusable}],[{missing}]")

    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, proc.stderr[-3000:]
    assert errors[0].startswith("error: job1 (") and "no usable document in ingest.documents" in errors[0]
    assert errors[1].startswith("error: job2 (") and f"ingest.documents entry '{missing}' does not exist" in errors[1]
    assert errors[2].startswith("error: 2 of 3 sweep jobs failed (job1, job2)")

    runs = runner_cli.runs()
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert parent.info.status == "FAILED"
    assert (parent.data.metrics["sweep/jobs"], parent.data.metrics["sweep/failed_jobs"]) == (3, 2)
    assert {name: run.info.status for name, run in children.items()} == {"job0": "FINISHED", "job1": "FAILED", "job2": "FAILED"}
    assert "no usable document" in children["job1"].data.tags["error"]
    assert "does not exist" in children["job2"].data.tags["error"]
    assert children["job0"].data.metrics["ingest/documents"] == 1
    assert len(list((runner_cli.cache / "ingest").glob("*/_stage.json"))) == 1  # the good job's work is kept

    lost = len({"job0", "job1", "job2"} - set(children))
    assert lost == 0
    reliability_report.record(
        item=ITEM, case="3-job multirun over ingest.documents: good folder, unusable folder, missing path",
        outcome="job0 FINISHED; job1 (fails in its stage) and job2 (fails at start-up) FAILED with one line each; "
        "parent FAILED with sweep/failed_jobs=2; exit 2 naming both",
        items_lost=lost,
    )


FORMATS = Path(__file__).parents[1] / "documents" / "data"


def test_a_mixed_folder_ingests_every_good_format_and_names_every_bad_file(tmp_path: Path, run_ingest, reliability_report) -> None:
    import shutil
    import zipfile

    docs = tmp_path / "mixed"
    docs.mkdir()
    build_manual_pdf(docs / "manual.pdf")
    for suffix in ("html", "docx", "epub"):
        shutil.copy(FORMATS / f"debian-reference-ch08.{suffix}", docs / f"ch08.{suffix}")
    (docs / "notes.md").write_text("# Notes\n\nThe gizmo port is 4410.\n", encoding="utf-8")
    (docs / "logo.html").write_bytes(_png_bytes())
    (docs / "app.html").write_text("<html><head><script>boot()</script></head><body><noscript>Enable JS</noscript></body></html>")
    (docs / "legacy.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64)
    (docs / "typed.docx").write_text("this was saved as plain text", encoding="utf-8")
    with zipfile.ZipFile(FORMATS / "debian-reference-ch08.epub") as original, zipfile.ZipFile(docs / "locked.epub", "w") as copy:
        for item in original.infolist():
            copy.writestr(item, original.read(item.filename))
        copy.writestr("META-INF/rights.xml", "<rights/>")
    expected_skips = {
        "logo.html": "not HTML: the content is a PNG image",
        "app.html": "no text in the main content",
        "legacy.docx": "not a DOCX: the content is an OLE2 file (Word 97-2003 .doc",
        "typed.docx": "not a DOCX: the content is not a zip archive",
        "locked.epub": "DRM-protected EPUB",
    }

    records, report, metrics = run_ingest([docs])
    skipped = {Path(item["file"]).name: item["reason"] for item in report["skipped"]}
    assert set(skipped) == set(expected_skips)
    for name, reason in expected_skips.items():
        assert reason in skipped[name], (name, skipped[name])
    pages = {}
    for record in records:
        pages.setdefault(Path(record["source"]).name, []).append(record)
    assert set(pages) == {"manual.pdf", "ch08.html", "ch08.docx", "ch08.epub", "notes.md"}
    assert len(pages["ch08.epub"]) == 6 and len(pages["ch08.html"]) == 1  # a chapter a page; a short file a page
    for name in ("ch08.html", "ch08.docx", "ch08.epub"):
        (page,) = [r for r in pages[name] if "Table 8.1." in r["text"]]
        path = heading_path_at(page, page["text"].index("Table 8.1."))
        assert path[0] == "Chapter 8. I18N and L10N" and path[1:] == ["8.2. The keyboard input", "8.2.3. The input method support with IBus"], (name, path)
    assert report["documents_by_format"] == {"pdf": 1, "html": 1, "docx": 1, "epub": 1, "md": 1}
    assert {k: metrics[f"documents_by_format/{k}"] for k in ("pdf", "html", "docx", "epub", "md")} == report["documents_by_format"]
    reliability_report.record(
        item=ITEM,
        case="one folder of PDF, HTML, DOCX, EPUB and Markdown plus a PNG named .html, a script-only page, "
        "a Word 97 file and a text file named .docx, a DRM-protected EPUB",
        outcome=f"{len(pages)} good documents ingested ({len(records)} pages); {len(skipped)} skipped with their reasons",
        items_lost=5 - len(pages),
    )


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()
