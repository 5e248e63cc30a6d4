"""Text repairs: NFKC, running headers/footers, and words hyphenated across lines, decided by the forms the
document itself uses."""

from __future__ import annotations

from runner.documents.text_clean import join_hyphenated_breaks, normalize_unicode, strip_running_lines


def test_nfkc_unfolds_ligatures_and_compatibility_spaces() -> None:
    assert normalize_unicode("con\ufb01gure the \ufb02ow\u00a0of \ufb00ort") == "configure the flow of ffort"


def test_a_word_split_at_a_line_end_is_joined_when_the_document_uses_it_whole() -> None:
    text = "The con-\ntroller restarts.\nEvery controller has a log."
    assert join_hyphenated_breaks([text]) == ["The controller restarts.\nEvery controller has a log."]


def test_a_real_hyphen_at_a_line_end_stays_when_the_document_hyphenates_that_word() -> None:
    pages = ["Mount it read-\nonly before the check.", "A read-only mount keeps the journal."]
    assert join_hyphenated_breaks(pages)[0] == "Mount it read-only before the check."


def test_evidence_on_another_page_decides_and_more_occurrences_win() -> None:
    pages = ["The e-\nmail goes out.", "Send an email.", "One e-mail, another e-mail."]
    assert join_hyphenated_breaks(pages)[0] == "The e-mail goes out."


def test_without_evidence_syllables_join_and_identifiers_keep_their_hyphen() -> None:
    text = (
        "It is repre-\nsentable.\n"  # two fragments: a word broken at a syllable
        "Build for x86-\n64 only.\n"  # digits: an identifier
        "Pass --no-\ncache to it.\n"  # already inside a hyphenated option
        "A Linux-\nBased system.\n"  # capitalised second part
        "It is time-\nconsuming; time is consuming."  # both parts are words used elsewhere
    )
    assert join_hyphenated_breaks([text]) == [
        "It is representable.\nBuild for x86-64 only.\nPass --no-cache to it.\nA Linux-Based system.\n"
        "It is time-consuming; time is consuming."
    ]


def test_a_hyphen_before_a_space_is_joined_only_on_evidence() -> None:
    text = "The con- troller and pre- and post-processing; each controller."
    assert join_hyphenated_breaks([text]) == ["The controller and pre- and post-processing; each controller."]


def test_soft_hyphens_are_always_a_break() -> None:
    assert join_hyphenated_breaks(["di\u00ad\nrectly and in\u00adline"]) == ["directly and inline"]


def test_a_hyphen_at_the_end_of_a_paragraph_is_left_alone() -> None:
    text = "Options end with a dash -\n\n- a list item follows"
    assert join_hyphenated_breaks([text]) == [text]


def test_running_headers_and_footers_are_stripped_with_page_numbers_masked() -> None:
    topics = ["alpha", "bravo", "charlie", "delta"]
    pages = [f"Relay Guide\nThe {t} valve opens first.\nThe {t} line drains.\nPage {n} of 9" for n, t in enumerate(topics, 1)]
    texts, removed = strip_running_lines(pages, 0.5)
    assert removed == ["Page # of #", "Relay Guide"]
    assert texts[1] == "The bravo valve opens first.\nThe bravo line drains."
    assert strip_running_lines(pages[:2], 0.5) == (pages[:2], [])  # two pages: too few to tell
