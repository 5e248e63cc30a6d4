"""HTML, DOCX and EPUB to Markdown pages, on the Debian Reference's chapter 8 in each format (tests/documents/data)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from runner.documents.files import content_mismatch
from runner.documents.headings import markdown_headings
from runner.documents.markup import NotConvertible, html_to_markdown, markup_title, split_long
from runner.documents.markup import read_docx as _read_docx
from runner.documents.markup import read_epub as _read_epub
from runner.documents.markup import read_html as _read_html
from runner.documents.text_clean import normalize_unicode

DATA = Path(__file__).parent / "data"
HTML = DATA / "debian-reference-ch08.html"
DOCX = DATA / "debian-reference-ch08.docx"
EPUB = DATA / "debian-reference-ch08.epub"
SECTIONS = ["8.1. The locale", "8.2. The keyboard input", "8.3. The display output", "8.4. East Asian Ambiguous Character Width Characters"]


# the pages as ingest keeps them: NFKC, so DocBook's no-break spaces ("8.1.\xa0The locale") are spaces
def read_html(path: Path, max_page_chars: int) -> list[str]:
    return [normalize_unicode(page) for page in _read_html(path, max_page_chars)]


def read_docx(path: Path, max_page_chars: int) -> list[str]:
    return [normalize_unicode(page) for page in _read_docx(path, max_page_chars)]


def read_epub(path: Path) -> list[str]:
    return [normalize_unicode(page) for page in _read_epub(path)]


def _titles(text: str) -> list[str]:
    return [h.title for h in markdown_headings(text)]


def test_a_docs_page_keeps_its_main_content_and_drops_the_furniture() -> None:
    page = """<html><head><title>Relay docs</title><style>p {color: red}</style><script>track()</script></head><body>
      <header><a href="/">Home</a> | <a href="/docs">Docs</a></header>
      <nav class="sidebar"><ul><li><a href="/a">Install</a></li></ul></nav>
      <div id="cookie-banner">We use cookies. <button>Accept</button></div>
      <main><h1>Relay configuration</h1>
        <p>The relay listens on <a href="/ports">port 7460</a> by default.</p>
        <h2>Limits</h2>
        <table><caption>Table 3: Relay limits</caption>
          <tr><th>key</th><th>default</th></tr><tr><td>max_batch</td><td>500</td></tr></table>
        <pre><code>relay --check /etc/relay.conf</code></pre>
      </main>
      <footer>Copyright 2026 Example Corp</footer></body></html>"""
    markdown = html_to_markdown(page)
    assert _titles(markdown) == ["Relay configuration", "Limits"]
    assert "The relay listens on port 7460 by default." in markdown  # the link's text, not its address
    assert "Table 3: Relay limits\n\n| key | default |\n| --- | --- |\n| max_batch | 500 |" in markdown
    assert "```\nrelay --check /etc/relay.conf\n```" in markdown
    for furniture in ("Home", "Install", "cookies", "Accept", "Copyright", "track()", "color", "/ports"):
        assert furniture not in markdown, furniture


def test_a_page_of_scripts_and_navigation_has_no_text() -> None:
    assert html_to_markdown("<html><body><nav><a href='/'>Home</a></nav><script>app()</script></body></html>") == ""
    assert html_to_markdown(b"") == ""


def test_the_real_html_chapter_keeps_every_heading_and_table_and_no_navigation() -> None:
    html = HTML.read_text(encoding="utf-8")
    (page,) = read_html(HTML, max_page_chars=100_000)
    titles = _titles(page)
    assert len(titles) == len(re.findall(r"<h[1-6][ >]", html))  # every section heading of the chapter
    assert titles[0] == "Chapter 8. I18N and L10N" and all(s in titles for s in SECTIONS)
    assert "Table 8.1. List of IBus and its engine packages\n\n| package | popcon | size | supported locale |" in page
    assert "| ibus-mozc | V:2, I:3 | 935 | Japanese |" in page
    assert "Table of Contents" not in page and "Prev" not in page  # DocBook's contents and navigation bars
    assert "| Tip |" not in page and "\nTip\n" in page  # a note's layout table becomes its text
    assert markup_title(HTML) == "Chapter 8. I18N and L10N"


def test_a_long_html_file_is_split_at_its_top_level_sections_and_a_long_section_at_its_subsections() -> None:
    (whole,) = read_html(HTML, max_page_chars=100_000)  # 14 000 characters; section 8.1 has 7 700
    pages = read_html(HTML, max_page_chars=8000)
    assert [_titles(p)[0] for p in pages] == ["Chapter 8. I18N and L10N", *SECTIONS]
    assert re.sub(r"\s+", "", "".join(pages)) == re.sub(r"\s+", "", whole)  # nothing lost at the cuts
    finer = read_html(HTML, max_page_chars=3000)
    assert [_titles(p)[0] for p in finer][:4] == ["Chapter 8. I18N and L10N", "8.1. The locale", "8.1.1. Rationale for UTF-8 locale", "8.1.2. The reconfiguration of the locale"]
    assert all(len(p) <= 3000 or len(_titles(p)) == 1 for p in finer)  # too long only where no subsection is left
    assert re.sub(r"\s+", "", "".join(finer)) == re.sub(r"\s+", "", whole)
    assert split_long("short text", 3) == ["short text"]  # no heading to cut at: one page


def test_a_word_file_keeps_headings_tables_and_lists_in_document_order() -> None:
    (page,) = read_docx(DOCX, max_page_chars=100_000)
    titles = _titles(page)
    assert titles[0] == "Chapter 8. I18N and L10N"
    assert [titles.index(s) for s in SECTIONS] == sorted(titles.index(s) for s in SECTIONS)
    assert "| package | popcon | size | supported locale |" in page
    assert "- Internationalization (I18N): To make a software potentially handle multiple locales." in page
    assert "```\n# dpkg-reconfigure locales\n```" in page  # a code paragraph style: a root prompt, no heading
    assert markup_title(DOCX) == "Debian Reference, Chapter 8"


def test_an_epub_chapter_is_a_page() -> None:
    pages = read_epub(EPUB)
    assert len(pages) == 6  # title page, chapter opening, four sections
    assert [_titles(p)[0] for p in pages[2:]] == SECTIONS
    assert markup_title(EPUB) == "Debian Reference, Chapter 8: I18N and L10N"


def test_a_docx_that_is_no_zip_and_a_zip_that_is_no_docx_are_named(tmp_path: Path) -> None:
    fake = tmp_path / "old.docx"
    fake.write_bytes(b"\xd0\xcf\x11\xe0 a Word 97 file")
    with pytest.raises(NotConvertible, match="not a DOCX: not a zip archive"):
        read_docx(fake, 1000)
    other = tmp_path / "other.docx"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("content.xml", "<x/>")
    with pytest.raises(NotConvertible, match="no word/document.xml"):
        read_docx(other, 1000)


def _epub_with_encryption(source: Path, target: Path, algorithm: str) -> Path:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            copy.writestr(item, original.read(item.filename))
        copy.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><EncryptedData>'
            f'<EncryptionMethod Algorithm="{algorithm}"/></EncryptedData></encryption>',
        )
    return target


def test_a_drm_protected_epub_is_refused_and_font_obfuscation_is_not_drm(tmp_path: Path) -> None:
    locked = _epub_with_encryption(EPUB, tmp_path / "locked.epub", "http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    with pytest.raises(NotConvertible, match=r"DRM-protected EPUB .*aes128-cbc"):
        read_epub(locked)
    fonts = _epub_with_encryption(EPUB, tmp_path / "fonts.epub", "http://www.idpf.org/2008/embedding")
    assert len(read_epub(fonts)) == 6


def test_content_that_is_not_what_the_extension_says(tmp_path: Path) -> None:
    cases = {
        "logo.html": (b"\x89PNG\r\n\x1a\n....", "not HTML: the content is a PNG image"),
        "report.docx": (b"%PDF-1.7\n...", "not a DOCX: the content is a PDF"),
        "book.epub": (b"<html></html>", "not a EPUB: the content is not a zip archive"),
        "manual.pdf": (b"PK\x03\x04...", "not a PDF: the content is a zip archive (DOCX, EPUB, ODT, ...)"),
        "notes.txt": (b"abc\x00\x01", "not TXT: the content is binary"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert content_mismatch(tmp_path / name) == reason, name
    for good in (HTML, DOCX, EPUB):
        assert content_mismatch(good) is None
    (tmp_path / "garbage.pdf").write_bytes(b"not a pdf at all")
    assert content_mismatch(tmp_path / "garbage.pdf") is None  # left to the PDF reader, which names its error
