from __future__ import annotations

from runner.templates import template_questions

TOPIC = "Quillstream Relay"
KINDS = ["default_value", "error_code", "env_var"]


def _questions(sentences: list[str], kinds: list[str] = KINDS) -> dict[str, list[str]]:
    return {s: [t.question for t in found] for s, found in template_questions(sentences, TOPIC, kinds).items()}


def test_each_kind_asks_about_the_identifier_its_sentence_explains() -> None:
    sentences = [
        "The minimum number of in-sync replicas, including the leader, is set by cluster.min_insync and defaults to 2.",
        "The key node.data_dir defaults to /var/lib/quillstream, node.name defaults to the host name, and node.shutdown_timeout_s defaults to 30.",
        "Creating a channel whose name already exists fails with error QSR-4090.",
        "Circuit state changes are logged with warning QSR-W420.",
        "The profile is selected with the environment variable QSR_PROFILE, which defaults to core in the image.",
        "The relay is easy to operate and well documented.",
    ]
    assert _questions(sentences) == {
        sentences[0]: ["What is the default value of cluster.min_insync?"],
        sentences[1]: [
            "What is the default value of node.data_dir?",
            "What is the default value of node.name?",
            "What is the default value of node.shutdown_timeout_s?",
        ],
        sentences[2]: ["When does Quillstream Relay return error QSR-4090?"],
        sentences[3]: ["When does Quillstream Relay log warning QSR-W420?"],
        sentences[4]: ["What is the environment variable QSR_PROFILE used for?"],
    }


def test_an_identifier_explained_by_two_sentences_gets_no_question() -> None:
    """Either sentence alone would be an incomplete answer; repeats of one sentence (chunk overlap) are fine."""
    twice = [
        "A reload with an unknown key fails with error QSR-4022.",
        "A token with a longer --ttl is rejected with error QSR-4022.",
        "An operation that is denied by the ACLs fails with error QSR-4009.",
        "An operation that is denied by the ACLs fails with error QSR-4009.",
    ]
    assert _questions(twice) == {twice[2]: ["When does Quillstream Relay return error QSR-4009?"]}


def test_a_sentence_leaning_on_the_one_before_is_skipped_and_kinds_can_be_turned_off() -> None:
    dependent = "Without it, the request fails with error QSR-4091, which protects against accidental deletion."
    assert _questions([dependent]) == {}
    codes_only = "Unknown keys are reported as error QSR-4030, and retention.hours defaults to 72."
    assert _questions([codes_only], ["error_code"]) == {codes_only: ["When does Quillstream Relay return error QSR-4030?"]}
    assert _questions([codes_only], []) == {}


def test_generate_adds_template_records_for_selected_chunks_only(composed_cfg) -> None:
    from runner.stages.generate import template_records

    def chunk(cid: str, text: str) -> dict:
        return {"chunk_id": cid, "doc_id": "d", "source": "manual.md", "page": 1, "text": text}

    corpus = [
        chunk("c0", "Creating a channel whose name already exists fails with error QSR-4090.\n\nThe relay is easy to operate."),
        chunk("c1", "A reload with an unknown key fails with error QSR-4022 and nothing changes."),
        chunk("c2", "A token with a longer --ttl than allowed is rejected with error QSR-4022."),
    ]
    cfg = composed_cfg()
    records = template_records(corpus[:2], corpus, cfg)  # c2 is not selected, but it makes QSR-4022 ambiguous
    assert [(r["qid"], r["question"]) for r in records] == [("c0-t0", "When does Quillstream Relay return error QSR-4090?")]
    assert records[0]["fact"] == "Creating a channel whose name already exists fails with error QSR-4090."
    assert records[0]["strategy"] == "template" and records[0]["fact_is_sentence"] and records[0]["answer_hint"] == "QSR-4090"
    assert template_records(corpus, corpus, composed_cfg(["generate.templates=[]"])) == []
    assert template_records(corpus, corpus, composed_cfg(["generate.strategy=free"])) == []
