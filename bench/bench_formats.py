"""Documents in other formats: which HTML converter keeps a manual best, and does the HTML edition of a
manual give the facts and template questions its PDF edition gives?

    .venv/bin/python bench/bench_formats.py [--skip-cross-format]

1. Converters, on real HTML manuals from Debian packages (fetched with ``apt-get download``, unpacked with
   ``dpkg -x``): the Debian Reference's HTML edition (``debian-reference-en``, DocBook, 15 files) and the
   Bash Reference Manual (``bash-doc``, Texinfo, one 850 kB page). For each converter: seconds, characters
   written, section headings kept (against the ``<h1>``..``<h6>`` of the source), data tables kept (against
   the source's tables with at least two rows of two filled cells, not counting tables of links such as
   an index), navigation left in (``Prev``/``Next:``
   bars, "Table of Contents") and link addresses left in the text. Converters: ours
   (runner/documents/markup.py: BeautifulSoup + markdownify), and markitdown and trafilatura where they
   are installed (``pip install markitdown trafilatura lxml_html_clean``; they are not dependencies).
2. Cross-format, when ``../shared/corpora/debian-reference`` holds the PDF: the pipeline's own ingest and
   chunk stages on the PDF and on the HTML edition, then the generate stage's fact and template selection
   (no model): pages, headings, table records, template questions and facts of each, and how many agree.

Results: ``bench/results/formats.json`` and ``bench/formats.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.documents.headings import markdown_headings  # noqa: E402
from runner.documents.markup import html_to_markdown  # noqa: E402

log = logging.getLogger("bench.formats")
CACHE = Path.home() / ".cache" / "doc2lora" / "debs"
PDF = ROOT.parent / "shared" / "corpora" / "debian-reference" / "debian-reference.en.pdf"
MANUALS = {  # name -> (Debian package, glob of its HTML inside the package)
    "debian-reference (DocBook, 15 files)": ("debian-reference-en", "usr/share/debian-reference/*.html"),
    "bash reference (Texinfo, 1 file)": ("bash-doc", "usr/share/doc/bash/bashref.html"),
}


def package_files(package: str, pattern: str) -> list[Path]:
    """The files of a Debian package matching ``pattern``, downloaded and unpacked once into the cache."""
    target = CACHE / package
    if not target.is_dir():
        if not shutil.which("apt-get") or not shutil.which("dpkg"):
            raise SystemExit(f"skipped: apt-get and dpkg are needed to fetch {package}")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=CACHE, check=True, capture_output=True)
        deb = max(CACHE.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
        subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
    return sorted(target.glob(pattern))


def converters() -> dict[str, Callable[[Path], str]]:
    found: dict[str, Callable[[Path], str]] = {"ours (bs4 + markdownify)": lambda p: html_to_markdown(p.read_bytes())}
    try:
        from markitdown import MarkItDown

        engine = MarkItDown(enable_plugins=False)
        found["markitdown"] = lambda p: engine.convert(str(p)).text_content
    except ImportError:
        log.info("markitdown not installed: not compared")
    try:
        import trafilatura

        found["trafilatura"] = lambda p: trafilatura.extract(
            p.read_text(encoding="utf-8", errors="replace"), output_format="markdown", include_tables=True,
            include_formatting=True, include_links=False, favor_recall=True,
        ) or ""  # fmt: skip
    except ImportError:
        log.info("trafilatura not installed: not compared")
    return found


def source_counts(files: list[Path]) -> dict[str, int]:
    from bs4 import BeautifulSoup

    headings = tables = 0
    for path in files:
        soup = BeautifulSoup(path.read_bytes(), "lxml")
        headings += len(soup.find_all(re.compile(r"^h[1-6]$")))
        for table in soup.find_all("table"):
            text = len(table.get_text(strip=True))
            if text and sum(len(a.get_text(strip=True)) for a in table.find_all("a")) >= 0.6 * text:
                continue  # an index or a "Jump to:" bar: links, not data
            rows = [[c for c in tr.find_all(["td", "th"], recursive=False) if c.get_text(strip=True)] for tr in table.find_all("tr")]
            tables += sum(len(cells) >= 2 for cells in rows) >= 2
    return {"headings": headings, "data_tables": tables}


def output_counts(text: str) -> dict[str, int]:
    return {
        "characters": len(text),
        "headings": len(markdown_headings(text)),
        "tables": len(re.findall(r"(?m)^\s*\|(?:\s*:?-{3,}:?\s*\|)+\s*$", text)),
        "navigation_lines": len(re.findall(r"(?m)^.*(?:\bPrev\b|\bNext:|Table of Contents|\[Contents\]).*$", text)),
        "link_addresses": len(re.findall(r"\]\((?:https?:|[\w./-]+\.html|#)", text)),
    }


def compare_converters() -> dict[str, Any]:
    results: dict[str, Any] = {}
    engines = converters()
    for manual, (package, pattern) in MANUALS.items():
        files = package_files(package, pattern)
        row: dict[str, Any] = {"files": len(files), "source": source_counts(files)}
        for name, convert in engines.items():
            started = time.perf_counter()
            text = "\n\n".join(convert(p) for p in files)
            row[name] = {"seconds": round(time.perf_counter() - started, 2), **output_counts(text)}
        results[manual] = row
        log.info("%s: %s", manual, json.dumps(row))
    return results


def _chunks_and_facts(documents: str, workdir: Path) -> dict[str, Any]:
    from runner.cli.compose import compose_config
    from runner.core.artifacts import Chunk, Ingest
    from runner.core.jsonl import read_jsonl
    from runner.core.schema import validate
    from runner.engine.pipeline import run_pipeline
    from runner.questions.fact_selection import select_facts

    cfg = compose_config(
        [
            f"paths.output_dir={workdir / 'outputs'}",
            f"paths.mlruns_dir={workdir / 'mlruns'}",
            "tracking.experiment=bench-formats",
            f"ingest.documents=[{documents}]",
            "until=chunk",
        ],
        root=ROOT,
    )
    validate(cfg)
    started = time.perf_counter()
    summary = run_pipeline(cfg)
    stage = {n: Path(s["path"]) for n, s in summary["stages"].items()}
    pages = read_jsonl(stage["ingest"] / Ingest.PAGES)
    chunks = read_jsonl(stage["chunk"] / Chunk.CHUNKS)
    facts, questions = select_facts(chunks, chunks, cfg)
    return {
        "seconds_ingest_chunk": round(time.perf_counter() - started, 1),
        "pages": len(pages),
        "headings": sum(len(p["headings"]) for p in pages),
        "chunks": len(chunks),
        "facts": facts,
        "questions": questions,
    }


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def cross_format(workdir: Path) -> dict[str, Any]:
    if not PDF.exists():
        return {"skipped": f"{PDF} not found (only the development machines have ../shared/corpora)"}
    html = package_files(*MANUALS["debian-reference (DocBook, 15 files)"])
    runs = {"pdf": _chunks_and_facts(str(PDF), workdir / "pdf"), "html": _chunks_and_facts(",".join(map(str, html)), workdir / "html")}
    result: dict[str, Any] = {}
    keys: dict[str, dict[str, set[str]]] = {}
    for name, run in runs.items():
        records = [f for f in run["facts"] if f["kind"] == "record"]
        result[name] = {
            "seconds_ingest_chunk": run["seconds_ingest_chunk"],
            "pages": run["pages"],
            "headings": run["headings"],
            "chunks": run["chunks"],
            "facts": len(run["facts"]),
            "facts_by_kind": dict(Counter(f["kind"] for f in run["facts"])),
            "record_facts": len(records),
            "template_questions": len(run["questions"]),
            "template_questions_by_kind": dict(Counter(q["template"] for q in run["questions"])),
        }
        keys[name] = {
            "record facts": {_squash(f["text"]) for f in records},
            "template questions": {_squash(q["question"]) for q in run["questions"]},
            "sentence facts": {_squash(f["text"]) for f in run["facts"] if f["kind"] != "record"},
        }
    result["agreement"] = {
        what: {
            "pdf": len(keys["pdf"][what]),
            "html": len(keys["html"][what]),
            "both": len(keys["pdf"][what] & keys["html"][what]),
            "share_of_pdf_found_from_html": round(len(keys["pdf"][what] & keys["html"][what]) / max(1, len(keys["pdf"][what])), 3),
        }
        for what in ("record facts", "template questions", "sentence facts")
    }
    return result


def report(results: dict[str, Any]) -> str:
    lines = ["# Formats benchmark (bench/bench_formats.py)", ""]
    for manual, row in results["converters"].items():
        source = row["source"]
        lines += [
            f"## {manual}: {row['files']} files, {source['headings']} headings, {source['data_tables']} data tables in the source",
            "",
            "| converter | seconds | characters | headings kept | tables kept | navigation lines | link addresses |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, c in row.items():
            if isinstance(c, dict) and "seconds" in c:
                lines.append(
                    f"| {name} | {c['seconds']} | {c['characters']} | {c['headings']} of {source['headings']} | "
                    f"{c['tables']} of {source['data_tables']} | {c['navigation_lines']} | {c['link_addresses']} |"
                )
        lines.append("")
    cross = results.get("cross_format", {})
    if "skipped" in cross or not cross:
        lines.append(f"Cross-format check skipped: {cross.get('skipped', 'not run')}")
    else:
        lines += ["## Debian Reference, PDF edition vs HTML edition (ingest, chunk, fact and template selection)", ""]
        lines += ["| | PDF | HTML |", "|---|---|---|"]
        for key in ("pages", "headings", "chunks", "facts", "record_facts", "template_questions", "seconds_ingest_chunk"):
            lines.append(f"| {key.replace('_', ' ')} | {cross['pdf'][key]} | {cross['html'][key]} |")
        lines += ["", "| agreement | PDF | HTML | both | share of the PDF's found from the HTML |", "|---|---|---|---|---|"]
        for what, a in cross["agreement"].items():
            lines.append(f"| {what} | {a['pdf']} | {a['html']} | {a['both']} | {a['share_of_pdf_found_from_html']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # a part skipped keeps its last results (the converters may be compared from another environment)
    parser.add_argument("--skip-cross-format", action="store_true")
    parser.add_argument("--skip-converters", action="store_true")
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "bench-formats"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = ROOT / "bench" / "results" / "formats.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"converters": {}}
    if not args.skip_converters:
        results["converters"] = compare_converters()
    if not args.skip_cross_format:
        results["cross_format"] = cross_format(Path(args.workdir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    (ROOT / "bench" / "formats.md").write_text(report(results))
    log.info("wrote %s and bench/formats.md", out)
    return results


if __name__ == "__main__":
    main()
