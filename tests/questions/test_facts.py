"""Facts: salient sentences from hand-written passages (headings, tables and fragments rejected), key terms, numbers."""

from __future__ import annotations

from runner.questions.facts import (
    answer_span,
    comparable_terms,
    content_terms,
    extract_facts,
    fallback_facts,
    is_readable_text,
    key_terms,
    numbers_in,
    split_sentences,
)

# What PDF extraction gives: a numbered heading, hard-wrapped lines, a table without blank lines around it.
MANUAL_PAGE = """7.2 The QFL Filter Language
Routes select messages with QFL, a small filter language. A QFL expression is limited to 4,096
characters and may reference at most 32 header fields.
Port | Role | Default
7460 | client | enabled
The Admin API listens on port 7461 and requires a bearer token for every request.
The relay is easy to operate and well documented.
Set node.shutdown_timeout_s to change the shutdown timeout, which defaults to 30 seconds."""

# A chunk cut out of a longer text: it starts and ends mid-sentence (chunk overlap).
OVERLAP_CHUNK = """and it retries a failed delivery 5 times with exponential backoff before parking the message.
Each cohort may hold up to 64 members; a 65th subscriber that joins is rejected with error QSR-3002.
Lane recovery scans every segment written since the last checkpoint, which takes at most"""

# Markdown heading directly above its text, a hard-wrapped sentence whose lines look like titles, bullets.
MARKDOWN = """## Lantern cache
The lantern cache keeps at most 64 fennel entries before evicting the oldest one.

The relay listens on port 7460 and
Quillstream Relay nodes use port 7461 for the
admin API by default.
Lantern Settings
The lantern daemon writes 12 journals to /var/lib/lantern every hour.
- A node supports at most 5,000 channels by default.
- Every channel has between 1 and 256 lanes."""


def _texts(facts) -> list[str]:
    return [f.text for f in facts]


def test_manual_page_keeps_the_checkable_sentences_and_rejects_heading_and_table() -> None:
    assert _texts(extract_facts(MANUAL_PAGE, max_facts=5)) == [
        "A QFL expression is limited to 4,096 characters and may reference at most 32 header fields.",
        "The Admin API listens on port 7461 and requires a bearer token for every request.",
        "Set node.shutdown_timeout_s to change the shutdown timeout, which defaults to 30 seconds.",
    ]
    # the heading is dropped, the table rows stay separate units (never glued to the next sentence)
    units = split_sentences(MANUAL_PAGE)
    assert "7.2 The QFL Filter Language" not in " ".join(units)
    assert "Port | Role | Default" in units and "7460 | client | enabled" in units
    assert "The Admin API listens on port 7461 and requires a bearer token for every request." in units


def test_max_facts_keeps_the_highest_scores_in_reading_order() -> None:
    # scores: QFL sentence 2*2 numbers + 1.5 (QFL) + 0.5 ("at most") = 6.0;
    # Admin API 2 + 1.5 (API) + 1.0 (listens, port) = 4.5; shutdown 2 + 1.5 (identifier) + 1.0 (timeout, defaults) = 4.5
    # a tie goes to the earlier sentence
    facts = extract_facts(MANUAL_PAGE, max_facts=2)
    assert _texts(facts) == [
        "A QFL expression is limited to 4,096 characters and may reference at most 32 header fields.",
        "The Admin API listens on port 7461 and requires a bearer token for every request.",
    ]
    assert [f.score for f in facts] == [6.0, 4.5]
    assert [f.position for f in facts] == sorted(f.position for f in facts)


def test_fragments_from_chunk_overlap_are_rejected() -> None:
    assert _texts(extract_facts(OVERLAP_CHUNK, max_facts=5)) == [
        "Each cohort may hold up to 64 members; a 65th subscriber that joins is rejected with error QSR-3002.",
    ]


def test_markdown_headings_wrapped_lines_and_bullets() -> None:
    assert _texts(extract_facts(MARKDOWN, max_facts=10)) == [
        "The lantern cache keeps at most 64 fennel entries before evicting the oldest one.",
        "The relay listens on port 7460 and Quillstream Relay nodes use port 7461 for the admin API by default.",
        "The lantern daemon writes 12 journals to /var/lib/lantern every hour.",
        "A node supports at most 5,000 channels by default.",
        "Every channel has between 1 and 256 lanes.",
    ]
    assert not any("Lantern Settings" in unit or unit.startswith("#") for unit in split_sentences(MARKDOWN))


def test_table_debris_alone_gives_no_fact() -> None:
    table = "Port | Role | Default 7460 | client | QSP 7461 | admin | HTTPS"
    assert extract_facts(table, max_facts=3) == []
    assert fallback_facts(table, max_facts=3) == []


def test_fallback_facts_take_the_longest_clean_sentences_when_nothing_is_checkable() -> None:
    text = (
        "The relay is easy to operate and well documented for administrators.\n"
        "Short sentence here.\n"
        "Operators usually appreciate how quietly the relay keeps running through the night shift."
    )
    assert extract_facts(text, max_facts=2) == []
    facts = fallback_facts(text, max_facts=1)
    assert _texts(facts) == ["Operators usually appreciate how quietly the relay keeps running through the night shift."]
    assert facts[0].score == 0.0


def test_key_terms_are_numbers_identifiers_flags_and_paths() -> None:
    text = (
        "Run qsctl channel create --lanes 8 to create a channel; the file /etc/quillstream/relay.toml "
        "holds node.data_dir, and error QSR-5083 appears after 14 days over QSP."
    )
    assert key_terms(text) == {
        "--lanes", "8", "/etc/quillstream/relay.toml", "node.data_dir", "qsr-5083", "5083", "14 days", "14", "qsp",
    }
    # 0 and 1 alone are too common to check; plain words are never key terms
    assert key_terms("Set retries between 0 and 1 for the relay.") == set()
    assert key_terms("maxConnections is 1,024 MiB") == {"maxconnections", "1,024 mib", "1024"}
    assert comparable_terms("maxConnections is 1,024 MiB") == {"maxconnections", "1024 mib", "1024"}


def test_numbers_in_strips_thousands_separators() -> None:
    text = "It handles 1,024 MiB, version 3.4.2 and 1.2 million msgs at 0.5 s on port 7460, document HS-QSR-ADM-34, v2."
    # "3.4.2" keeps its first two parts (the same on both sides of a comparison); "v2" is part of a word
    assert numbers_in(text) == ["1024", "3.4", "1.2", "0.5", "7460", "34"]
    assert numbers_in("no digits here") == []


def test_content_terms_drop_stopwords_and_short_words() -> None:
    assert content_terms("What is the default port of the QSP listener?") == {"default", "port", "qsp", "listener"}


def test_answer_span_picks_the_most_checkable_detail() -> None:
    cases = {
        "Creating a channel whose name already exists fails with error QSR-4090.": "QSR-4090",
        "A lane is one ordered partition of a channel; every channel has between 1 and 256 lanes.": "between 1 and 256",
        "The minimum number of in-sync replicas is set by cluster.min_insync and defaults to 2.": "2",
        "The size-based limit is retention.max_bytes_per_lane, which defaults to 10 GiB per lane.": "10 GiB",
        "The lane count can be increased with qsctl channel alter orders --lanes 16.": "--lanes",
        "The QSP protocol runs over TCP port 7460 by default.": "port 7460",
        "A file sink rotates the file when it reaches 512 MiB.": "512 MiB",
        "The Enterprise Edition is activated by placing a license file at /etc/quillstream/license.qsl.": "/etc/quillstream/license.qsl",
        "The retention check is controlled by retention.check_interval.": "retention.check_interval",
        "The relay is easy to operate and well documented.": None,
    }
    for fact, span in cases.items():
        assert answer_span(fact) == span, fact


def test_a_sentence_that_leans_on_the_one_before_is_taken_with_it() -> None:
    text = (
        "The swapsize option sets the size of the swap volume in GB.\n"
        "The default is the size of the installed memory, minimum 4 GB and maximum 8 GB.\n\n"
        "It defaults to 30 seconds when unset.\n"
    )
    facts = _texts(extract_facts(text, max_facts=5))
    # the default's subject is in the sentence before: the fact carries both
    assert facts[0] == (
        "The swapsize option sets the size of the swap volume in GB. "
        "The default is the size of the installed memory, minimum 4 GB and maximum 8 GB."
    )
    # "It" with nothing usable before it (the sentence before leans back itself) is no fact
    assert not any(f.startswith("It defaults") for f in facts)


def test_a_leaning_sentence_at_the_start_of_a_chunk_is_no_fact() -> None:
    assert extract_facts("This tap device is added to a bridge, by default vmbr0.", max_facts=3) == []


def test_the_default_with_no_subject_leans_on_the_sentence_before() -> None:
    from runner.questions.facts import leans_on_before

    assert leans_on_before("The default changed in release 3.3; earlier releases used 128 MiB segments.")
    assert leans_on_before("The default is the size of the installed memory.")
    assert not leans_on_before("The default profile is core, and the profile is selected with node.profile.")
    assert not leans_on_before("The default value of node.id is 1.")


def test_contents_lines_and_sentences_pointing_at_a_lost_listing_are_no_facts() -> None:
    # from the Debian Reference PDF: a table-of-contents line and a sentence whose listing the PDF keeps apart
    text = (
        "9.5 System maintenance tips . . . . . . . . . . . . . . . . . . . . 150 9.5.1 Who is on the system? . . . . . . 150\n"
        "You can disassemble binary code with objdump(1) by the following.\n"
        "The relay listens on port 7460 for client connections by default."
    )
    assert [f.text for f in extract_facts(text, 5)] == ["The relay listens on port 7460 for client connections by default."]
    assert fallback_facts("9.5 System maintenance tips . . . . . . . . . . . . . . . 150", 2) == []
    assert is_readable_text("The relay listens on port 7460.") and not is_readable_text("4.2 Precedence . . . . . . . . . . 12")


def test_a_sentence_ends_before_a_closing_bracket_or_quote() -> None:
    text = '(It has undel command to recover deleted files.) The mkfs(8) and fsck(8) commands come with e2fsprogs. He wrote "Stop." Then he left. Use e.g. foo.'
    assert split_sentences(text) == [
        "(It has undel command to recover deleted files.)",
        "The mkfs(8) and fsck(8) commands come with e2fsprogs.",
        'He wrote "Stop."',
        "Then he left.",
        "Use e.g. foo.",
    ]
