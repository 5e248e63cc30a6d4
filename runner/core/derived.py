"""Config defaults derived from the documents (OmegaConf resolvers, registered with the schema).

- ``generate.topic``, what the documents are about, for prompts and template questions ("the {topic}
  manual"): unless set, the first PDF's title metadata, else the title an HTML, EPUB or DOCX file
  declares (a site's index page first), else the first document's first heading, else its file name, with version numbers and words such as "Administrator Guide" removed
  ("Quillstream Relay 3.4 Administrator Guide" -> "Quillstream Relay").
- ``eval.probes``: the bundled hand-written probes, but only when the documents are the bundled sample
  (they ask about the sample, not about your documents); for the Debian Reference PDF alone, its 45
  hand-written probes in ``bench/``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Optional

_GENERIC_TAIL = re.compile(
    r"[\s:,-]*\b(?:(?:the\s+)?(?:administrator'?s?|administration|admin|system|user'?s?|installation|install|"
    r"programmer'?s?|developer'?s?|operator'?s?|operations|configuration|reference|quick\s?start|getting\s+started)\s+)?"
    r"(?:guide|manual|reference|handbook|documentation|docs|book)\s*$",
    re.IGNORECASE,
)
_VERSION = re.compile(r"\s*\b(?:v|version\s+|release\s+)?\d+(?:\.\d+)+[a-z]?\b|\s*\b(?:version|release)\s+\d+\b", re.IGNORECASE)
_JUNK_TITLE = re.compile(r"\.(?:docx?|pdf|odt|tex|md)\b|^untitled|^microsoft word|^document\d*$", re.IGNORECASE)
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")

log = logging.getLogger(__name__)


def clean_topic(title: str) -> str:
    """A product-like name from a document title; the title itself when nothing would be left."""
    text = re.sub(r"\s+", " ", title).strip().strip("\"'")
    stripped = _GENERIC_TAIL.sub("", text)
    stripped = _VERSION.sub("", stripped)
    stripped = re.sub(r"^the\s+", "", stripped, flags=re.IGNORECASE).strip(" -:,;")
    return stripped or text


def _pdf_title(path: Path, password: Optional[str]) -> Optional[str]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(password or ""):
            return None
        title = (reader.metadata or {}).get("/Title")
    except Exception:  # noqa: BLE001 - a broken PDF is reported by the ingest stage, not here
        return None
    title = str(title).strip() if title else ""
    return title if title and not _JUNK_TITLE.search(title) else None


def _first_heading(path: Path) -> Optional[str]:
    if path.suffix.lower() not in (".md", ".txt", ".markdown", ".rst"):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for _, line in zip(range(200), handle):
                found = _MARKDOWN_HEADING.match(line.strip())
                if found:
                    return found.group(1)
    except OSError:
        return None
    return None


def derive_topic(files: Iterable[Path], pdf_password: Optional[str] = None) -> tuple[str, str]:
    """(topic, where it came from) for the documents, in the order given."""
    files = list(files)
    for path in files:
        if path.suffix.lower() == ".pdf":
            title = _pdf_title(path, pdf_password)
            if title:
                return clean_topic(title), f"PDF title of {path.name}: {title!r}"
    from runner.documents.markup import MARKUP_SUFFIXES, markup_title

    markup = sorted((p for p in files if p.suffix.lower() in MARKUP_SUFFIXES), key=lambda p: not p.stem.startswith("index"))
    for path in markup:
        title = markup_title(path)
        if title and not _JUNK_TITLE.search(title):
            return clean_topic(title), f"title of {path.name}: {title!r}"
    for path in files:
        heading = _first_heading(path)
        if heading:
            return clean_topic(heading), f"first heading of {path.name}: {heading!r}"
    if files:
        name = re.sub(r"[_-]+", " ", files[0].stem).strip()
        return clean_topic(name) or name, f"file name {files[0].name}"
    return "the documents", "no document"


_TOPICS: dict[tuple[str, ...], str] = {}


def topic_from_documents(documents: Iterable[str], extensions: Iterable[str], root: str, password: Optional[str] = None) -> str:
    """The ``generate.topic`` default (an OmegaConf resolver): derived once per process and logged."""
    from runner.documents.files import existing_documents

    key = (*map(str, documents), "|", *map(str, extensions), "|", str(root))
    if key not in _TOPICS:
        topic, source = derive_topic(existing_documents(documents, extensions, Path(root)), password)
        _TOPICS[key] = topic
        log.info("generate.topic = %r (%s; set generate.topic to choose another)", topic, source)
    return _TOPICS[key]


SAMPLE_DOCUMENTS = ("data/sample/manual.pdf",)
SAMPLE_PROBES = "data/sample/probes.jsonl"
# hand-written probes kept with the benchmarks, for a real manual trained alone (matched by file name)
MANUAL_PROBES = {"debian-reference.en.pdf": "bench/probes_debian-reference.jsonl"}


def sample_probes(documents: Iterable[str]) -> Optional[str]:
    """The ``eval.probes`` default (an OmegaConf resolver): the sample's probes for the sample, a real
    manual's hand-written probes for that manual alone, else none."""
    documents = tuple(map(str, documents))
    if documents == SAMPLE_DOCUMENTS:
        return SAMPLE_PROBES
    return MANUAL_PROBES.get(Path(documents[0]).name) if len(documents) == 1 else None


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("topic_from_documents", topic_from_documents, replace=True)
    OmegaConf.register_new_resolver("sample_probes", sample_probes, replace=True)
