"""Headings per page: found in the page text, the path in force at the page top and at any offset."""

from __future__ import annotations

from runner.documents.headings import SourceHeading, heading_path_at, locate_heading, markdown_headings, page_headings

PAGE_ONE = "1 Installation\nRead this first.\n1.1 System requirements\nA node needs 4 GiB.\n"
PAGE_TWO = "and a 64-bit kernel.\n1.2 Network ports\nPort 7463 is for the admin API.\n"


def test_a_title_is_found_on_its_line_with_numbering_lost_spacing_and_quotes_ignored() -> None:
    assert locate_heading(PAGE_ONE, "System requirements") == PAGE_ONE.index("1.1 System")
    assert locate_heading("intro\nThe”$LANG”variable\n", 'The "$LANG" variable') == len("intro\n")
    assert locate_heading("x\nA very long heading that\nwraps onto two lines\nbody", "A very long heading that wraps onto two lines") == 2
    assert locate_heading(PAGE_ONE, "Network ports") is None
    # searching after an earlier heading skips text before it
    assert locate_heading(PAGE_ONE, "Installation", start=1) is None


def test_a_chapter_starts_at_its_chapter_label() -> None:
    """"Chapter 2" above the title: text from the page top on is the new chapter's, not the last section's."""
    page = "Chapter 2\nDebian package management\nNote\nThis chapter is written for Debian 13."
    assert locate_heading(page, "Debian package management") == 0
    assert locate_heading("end of a list.\nDebian package management\n", "Debian package management") == len("end of a list.\n")


def test_pages_get_the_path_at_their_top_and_the_headings_starting_on_them() -> None:
    headings = [SourceHeading(1, 0, "Installation"), SourceHeading(1, 1, "System requirements"), SourceHeading(2, 1, "Network ports")]
    pages = page_headings([(1, PAGE_ONE), (2, PAGE_TWO)], headings, keep_unlocated=True)

    assert pages[1]["heading_path"] == []
    assert [(h["title"], h["offset"], h["path"]) for h in pages[1]["headings"]] == [
        ("Installation", 0, ["Installation"]),
        ("System requirements", PAGE_ONE.index("1.1"), ["Installation", "System requirements"]),
    ]
    assert pages[2]["heading_path"] == ["Installation", "System requirements"]
    assert pages[2]["headings"][0]["path"] == ["Installation", "Network ports"]
    # text before the first heading of page 2 still belongs to the section from page 1
    assert heading_path_at({"text": PAGE_TWO, **pages[2]}, 0) == ["Installation", "System requirements"]
    assert heading_path_at({"text": PAGE_TWO, **pages[2]}, PAGE_TWO.index("Port 7463")) == ["Installation", "Network ports"]


def test_an_outline_heading_missing_from_the_text_is_kept_a_layout_one_dropped() -> None:
    headings = [SourceHeading(1, 0, "Installation"), SourceHeading(1, 0, "Appendix not printed")]
    kept = page_headings([(1, PAGE_ONE)], headings, keep_unlocated=True)[1]["headings"]
    assert [(h["title"], h["in_text"], h["offset"]) for h in kept] == [("Installation", True, 0), ("Appendix not printed", False, 1)]
    dropped = page_headings([(1, PAGE_ONE)], headings, keep_unlocated=False)[1]["headings"]
    assert [h["title"] for h in dropped] == ["Installation"]


def test_markdown_headings_skip_fenced_code() -> None:
    text = "# Guide\n\nIntro.\n\n## Setup\n\n```sh\n# apt-get install relay\n```\n\n### Ports ###\n"
    assert [(h.level, h.title, h.offset) for h in markdown_headings(text)] == [
        (0, "Guide", 0),
        (1, "Setup", text.index("## Setup")),
        (2, "Ports", text.index("### Ports")),
    ]


def test_a_page_record_without_headings_has_none() -> None:
    assert heading_path_at({"text": "old record"}, 5) == []
