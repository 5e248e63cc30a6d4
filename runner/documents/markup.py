"""HTML, DOCX and EPUB read as Markdown pages, so headings, tables and code reach the later stages.

HTML is reduced to its main content (scripts, styles, navigation, headers, footers, tables of contents,
cookie banners dropped) with BeautifulSoup, then written as Markdown by markdownify: ATX ``#`` headings,
pipe tables, fenced code blocks, links as their text. A DOCX goes through mammoth (Word heading styles to
``<h1>``..``<h6>``, tables, lists, code styles to code blocks) and an EPUB's chapters are read in reading
order from its package's spine, both into the same HTML path. Why these and not markitdown or trafilatura: ``bench/bench_converters.py``.

Pages: an EPUB chapter is a page; an HTML or DOCX file is one page unless its Markdown is longer than
``max_page_chars``, when it is split at its top-level sections, and a section still too long at its
subsections, so that ``page`` still points a reader at a section.
"""

from __future__ import annotations

import html
import posixpath
import re
import unicodedata
import warnings
import zipfile
from pathlib import Path
from urllib.parse import unquote
from xml.etree.ElementTree import ParseError

from runner.documents.headings import markdown_headings

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
MARKUP_SUFFIXES = (*HTML_SUFFIXES, ".docx", ".epub")

_DROPPED_TAGS = (
    "script", "style", "noscript", "template", "iframe", "svg", "canvas", "nav", "header", "footer",
    "aside", "form", "button", "input", "select", "textarea", "link", "meta",
)  # fmt: skip
_DROPPED_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary", "dialog"}
# class or id words that mark page furniture: site navigation, tables of contents, cookie notices
_FURNITURE = re.compile(
    r"(?:^|[-_\s])(?:nav|navbar|navheader|navfooter|navigation|breadcrumbs?|sidebar|menu|toc|"
    r"footer|cookies?|consent|gdpr|skip-?link|share|social|related-?links|printindex|index-[a-z]{2})(?:$|[-_\s])",
    re.IGNORECASE,
)
# Texinfo's navigation bar above each node ("Next: ..., Up: ...") and its table of contents
_FURNITURE_CLASSES = {"header", "contents", "shortcontents"}
_PERMALINKS = {"\u00b6", "#", "\u00a7", "\U0001f517", ""}  # the pilcrow and other anchors beside headings
_MAIN_SELECTORS = ("main", "[role=main]", "article", "#content", "#main-content", ".content", ".document")
# "Table 1.1. List of ...": a DocBook/Sphinx table title; kept as its own line above the table
_TABLE_TITLE_CLASSES = {"title", "caption", "table-title"}
# Word's code paragraph styles (pandoc writes "Source Code"): kept as code blocks, where "# apt install"
# is a root prompt, not a heading
_DOCX_CODE_STYLES = "\n".join(
    f"p[style-name='{name}'] => pre:separator('\\n')"
    for name in ("Source Code", "Code", "HTML Preformatted", "Plain Text", "Macro Text")
)
# font obfuscation is not DRM: the text stays readable
_FONT_OBFUSCATION = ("http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC")


class NotConvertible(Exception):
    """The file cannot be read as its extension says; the message says why."""


def html_to_markdown(page: str | bytes) -> str:
    """The main content of an HTML page as Markdown ("" when nothing but furniture and scripts is there)."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from markdownify import markdownify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML (DocBook, EPUB) reads fine as HTML
        soup = BeautifulSoup(page, "lxml")
    _drop_furniture(soup)
    _unwrap_layout_tables(soup)
    _lift_table_titles(soup)
    content = _main_content(soup)
    if content is None:
        return ""
    markdown = markdownify(
        str(content),
        heading_style="ATX",
        bullets="-",
        strip=["a", "img"],
        table_infer_header=True,
        escape_underscores=False,
        escape_asterisks=False,
        escape_misc=False,
    )
    return _tidy(markdown)


def read_html(path: Path, max_page_chars: int) -> list[str]:
    return split_long(html_to_markdown(path.read_bytes()), max_page_chars)


def read_docx(path: Path, max_page_chars: int) -> list[str]:
    import mammoth

    if not zipfile.is_zipfile(path):
        raise NotConvertible("not a DOCX: not a zip archive (a Word 97-2003 .doc? save it as .docx)")
    with zipfile.ZipFile(path) as archive:
        if "word/document.xml" not in archive.namelist():
            raise NotConvertible("not a DOCX: the zip archive has no word/document.xml")
    with open(path, "rb") as handle:
        try:
            converted = mammoth.convert_to_html(handle, style_map=_DOCX_CODE_STYLES).value
        except Exception as exc:  # noqa: BLE001 - a broken archive member, bad XML: named, then skipped
            raise NotConvertible(f"DOCX unreadable ({type(exc).__name__}: {exc})") from None
    return split_long(html_to_markdown(converted), max_page_chars)


def read_epub(path: Path) -> list[str]:
    """One Markdown page per chapter with text, in reading (spine) order."""
    if not zipfile.is_zipfile(path):
        raise NotConvertible("not an EPUB: not a zip archive")
    drm = _drm_reason(path)
    if drm:
        raise NotConvertible(drm)
    with zipfile.ZipFile(path) as archive:
        try:
            chapters = [html_to_markdown(archive.read(name)) for name in _spine(archive)]
        except (KeyError, ValueError, ParseError, zipfile.BadZipFile) as exc:
            raise NotConvertible(f"EPUB unreadable ({type(exc).__name__}: {exc})") from None
    return [text for text in chapters if text.strip()]


def _spine(archive: zipfile.ZipFile) -> list[str]:
    """The archive paths of an EPUB's XHTML documents in reading order (container.xml -> package -> spine).

    The EPUB container is a fixed standard, read here with the standard library: EbookLib, the one
    library for it, is AGPL-3.0, which a company running this tool on its own documents may not accept."""
    from xml.etree import ElementTree  # the archive is the user's own file; XXE needs a DTD, which ElementTree does not fetch

    container = ElementTree.fromstring(archive.read("META-INF/container.xml"))
    rootfile = next((e.get("full-path") for e in container.iter() if e.tag.endswith("rootfile")), None)
    if not rootfile:
        raise ValueError("META-INF/container.xml names no package document")
    package = ElementTree.fromstring(archive.read(rootfile))
    base = rootfile.rsplit("/", 1)[0] + "/" if "/" in rootfile else ""
    manifest = {e.get("id"): e for e in package.iter() if e.tag.endswith("}item")}
    documents = []
    for itemref in (e for e in package.iter() if e.tag.endswith("}itemref")):
        item = manifest.get(itemref.get("idref"))
        if item is not None and item.get("media-type") in ("application/xhtml+xml", "text/html"):
            documents.append(posixpath.normpath(base + unquote(item.get("href"))))
    return documents


def read_markup(path: Path, max_page_chars: int) -> list[str]:
    """The Markdown pages of an HTML, DOCX or EPUB file; raises NotConvertible with the reason."""
    suffix = path.suffix.lower()
    if suffix == ".docx":
        return read_docx(path, max_page_chars)
    if suffix == ".epub":
        return read_epub(path)
    return read_html(path, max_page_chars)


def markup_title(path: Path) -> str | None:
    """The title the file declares (HTML ``<title>``, EPUB ``dc:title``, DOCX core title), if any."""
    title = _declared_title(path)
    return unicodedata.normalize("NFKC", html.unescape(title)).strip() or None if title else None


def _declared_title(path: Path) -> str | None:
    try:
        suffix = path.suffix.lower()
        if suffix in HTML_SUFFIXES:
            found = re.search(rb"<title[^>]*>(.*?)</title>", path.read_bytes()[:65536], re.IGNORECASE | re.DOTALL)
            return found.group(1).decode("utf-8", "replace").strip() or None if found else None
        if suffix in (".docx", ".epub") and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n == "docProps/core.xml" or n.endswith(".opf")]
                for name in names:
                    found = re.search(rb"<dc:title[^>]*>(.*?)</dc:title>", archive.read(name), re.DOTALL)
                    if found and found.group(1).strip():
                        return found.group(1).decode("utf-8", "replace").strip()
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def split_long(markdown: str, max_page_chars: int) -> list[str]:
    """``markdown`` as one page or, when longer than the limit, cut before each of its top-level headings,
    and each part still too long cut again before its own next-level headings."""
    if len(markdown) <= max_page_chars:
        return [markdown] if markdown.strip() else []
    inner = [h for h in markdown_headings(markdown) if h.offset]  # the heading that opens the text stays with it
    if not inner:
        return [markdown]
    top = min(h.level for h in inner)
    bounds = [0, *(h.offset for h in inner if h.level == top), len(markdown)]
    parts = [markdown[a:b].strip("\n") + "\n" for a, b in zip(bounds, bounds[1:])]
    return [page for part in parts if part.strip() for page in split_long(part, max_page_chars)]


def _drop_furniture(soup) -> None:
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed or tag.attrs is None:
            continue
        words = " ".join([*tag.get("class", []), tag.get("id", "") or ""])
        hidden = tag.get("hidden") is not None or tag.get("aria-hidden") == "true"
        furniture = bool(words and _FURNITURE.search(words)) or bool(_FURNITURE_CLASSES & set(tag.get("class", [])))
        permalink = tag.name == "a" and tag.get_text(strip=True) in _PERMALINKS and not tag.find("img")
        if hidden or furniture or permalink or tag.get("role") in _DROPPED_ROLES or _is_jump_table(tag):
            tag.decompose()


def _is_jump_table(tag) -> bool:
    """A table of in-page links ("Jump to: A B C" above an index): navigation, not content."""
    if tag.name != "table":
        return False
    text = len(tag.get_text(strip=True))
    linked = sum(len(a.get_text(strip=True)) for a in tag.find_all("a", href=re.compile(r"^#")))
    return text > 0 and linked >= 0.6 * text


def _unwrap_layout_tables(soup) -> None:
    """A table that lays out a note or a figure (at most one non-empty cell per row, or a short box whose
    first row is its title: "[Tip] | Tip" above the text) has its cells written as blocks."""
    for table in reversed(soup.find_all("table")):
        rows = table.find_all("tr")
        filled = [[c for c in row.find_all(["td", "th"], recursive=False) if c.get_text(strip=True)] for row in rows]
        titled_box = 1 < len(rows) <= 3 and all(len(cells) <= 1 for cells in filled[1:])
        if rows and (titled_box or all(len(cells) <= 1 for cells in filled)):
            block = soup.new_tag("div")
            for cells in filled:
                for cell in cells:
                    cell.name = "div"
                    block.append(cell.extract())
            table.replace_with(block)


def _lift_table_titles(soup) -> None:
    """A table's title (``<caption>``, DocBook's ``<p class="title">``) as a plain paragraph above it."""
    for caption in soup.find_all("caption"):
        caption.name = "p"
        table = caption.find_parent("table")
        if table is not None:
            table.insert_before(caption.extract())
    for title in soup.find_all("p", class_=lambda c: c in _TABLE_TITLE_CLASSES):
        if "table" in (title.parent.get("class") or []):
            title.string = title.get_text(" ", strip=True)


def _main_content(soup):
    for selector in _MAIN_SELECTORS:
        found = soup.select(selector)
        if len(found) == 1 and found[0].get_text(strip=True):
            return found[0]
    body = soup.body or soup
    return body if body.get_text(strip=True) else None


def _tidy(markdown: str) -> str:
    # a definition (markdownify writes ":   text" under its term) indented instead, so a code block in it
    # opens with a fence at the start of its line
    lines = [re.sub(r"^:   ", "    ", line.rstrip()) for line in markdown.splitlines()]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n" if text.strip() else ""


def _drm_reason(path: Path) -> str | None:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "META-INF/rights.xml" in names:
            return "DRM-protected EPUB (META-INF/rights.xml: Adobe ADEPT or similar); remove the DRM to use it"
        if "META-INF/encryption.xml" not in names:
            return None
        algorithms = re.findall(rb'Algorithm="([^"]+)"', archive.read("META-INF/encryption.xml"))
    encrypted = [a.decode() for a in algorithms if a.decode() not in _FONT_OBFUSCATION and b"xmldsig" not in a]
    if encrypted:
        return f"DRM-protected EPUB (META-INF/encryption.xml encrypts content with {sorted(set(encrypted))[0]})"
    return None
