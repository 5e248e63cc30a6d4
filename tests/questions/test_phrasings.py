"""Phrasings without a model: rewrites of a question, and questions anchored on an identifier only one fact holds."""

from __future__ import annotations

from runner.questions.phrasings import anchor_question, default_value, identifiers, precise_answer, rewrites, unique_anchors


def test_rewrites_name_the_topic_and_section_and_reword_what_and_which() -> None:
    assert rewrites("What is the default value of node.name?", "Quillstream Relay", "7.2 Node settings") == [
        "In Quillstream Relay, what is the default value of node.name?",
        'According to the section "Node settings", what is the default value of node.name?',
        "Tell me the default value of node.name.",
    ]
    assert "Name the command that deletes archived runs older than seven days." in rewrites(
        "Which command deletes archived runs older than seven days?", "Acme", ""
    )


def test_rewrites_keep_meaning_where_a_form_does_not_fit() -> None:
    # "Which port does ..." has an auxiliary, not a verb: no "Name the port that does ..."
    assert not any(q.startswith("Name the") for q in rewrites("Which port does the web console listen on?", "Acme", ""))
    # the topic already named, acronyms kept in capitals, statements not rewritten
    assert rewrites("When does Quillstream Relay return error QSR-5034?", "Quillstream Relay", "") == []
    assert rewrites("QSR-5083 means what?", "Acme", "") == ["In Acme, QSR-5083 means what?"]
    assert rewrites("The relay listens on port 7460.", "Acme", "Ports") == []


def test_identifiers_and_anchors_only_one_fact_names() -> None:
    sentence = "The relay sends at most 256 messages, as set by delivery.prefetch; see /etc/quillstream/relay.toml and --profile."
    assert identifiers(sentence) == ["delivery.prefetch", "/etc/quillstream/relay.toml", "--profile"]
    facts = [
        "Set delivery.prefetch to limit unacknowledged messages.",
        "The key delivery.prefetch defaults to 256 and QSR_PREFETCH overrides it.",
        "Nothing here names an identifier of its own.",
    ]
    assert unique_anchors(facts) == {facts[1]: "QSR_PREFETCH"}  # delivery.prefetch is named twice
    assert anchor_question("QSR_PREFETCH", "Quillstream Relay") == "What does the Quillstream Relay manual say about QSR_PREFETCH?"


def test_fill_in_the_blank_questions_blank_values_and_keys_first_each_once() -> None:
    from runner.questions.phrasings import cloze_questions

    fact = "The Admin API binds to 127.0.0.1:7461 by default and reads /etc/quillstream/admin.token."
    pairs = cloze_questions(fact, "Quillstream Relay", 3)
    assert [term for _, term in pairs] == ["127.0.0.1:7461", "/etc/quillstream/admin.token", "API"]  # "127.0" is inside the first
    question, term = pairs[0]
    assert question == 'Fill in the blank from the Quillstream Relay manual: "The Admin API binds to ___ by default and reads /etc/quillstream/admin.token."'
    assert cloze_questions(fact, "Quillstream Relay", 0) == []


def test_a_default_question_asks_for_the_value_its_key_is_given() -> None:
    sentence = "The key node.data_dir defaults to /var/lib/quillstream, node.name defaults to the host name, and node.shutdown_timeout_s defaults to 30."
    assert default_value(sentence, "node.shutdown_timeout_s") == "30"
    assert default_value(sentence, "node.data_dir") == "/var/lib/quillstream"
    assert default_value("The key limits.max_message_bytes defaults to 1048576 (1 MiB), and it can be raised.", "limits.max_message_bytes") == "1048576"
    assert default_value("The option --y of tool sub defaults to 0.", "--y") == "0"
    assert default_value("The default for the key x.y in /etc/a.conf is 5.", "x.y") == "5"
    assert default_value("The key storage.retention_hours (default: 168) sets it.", "storage.retention_hours") == "168"
    assert default_value("The key a.b accepts any value.", "a.b") is None
    assert precise_answer("default_value", sentence, "node.name") == "the host name"
    assert precise_answer("error_code", sentence, "node.name") is None  # a cause is the whole sentence
