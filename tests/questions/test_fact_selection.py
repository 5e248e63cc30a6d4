"""Fact selection: prose sentences, records of reference layouts and template sentences, each fact once."""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

from runner.questions.fact_selection import fact_id, select_facts

# a reference layout (pve-docs' qm.conf style) above prose, as a real manual prints it
OPTION_TABLE = """pveceph pool create <name> [OPTIONS]
Create a Ceph pool.
--min_size <integer> (1 - 7) (default = 2)
Minimum number of replicas per object.
--pg_autoscale_mode <off | on | warn> (default = warn)
The automatic PG scaling mode of the pool.

A pool with fewer than min_size replicas stops accepting writes after 30 seconds, which protects the data."""


def _chunk(cid: str, text: str, heading: str = "Ceph pools") -> dict:
    return {"chunk_id": cid, "doc_id": "d001", "source": "guide.pdf", "page": 3, "text": text, "heading": heading}


def test_records_and_prose_become_facts_with_their_heading(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg(["generate.topic=Proxmox VE"])
    chunks = [_chunk("c0", OPTION_TABLE)]
    facts, questions = select_facts(chunks, chunks, cfg)
    records = [f for f in facts if f["kind"] == "record"]
    prose = [f for f in facts if f["kind"] == "sentence"]
    assert any("--min_size" in f["text"] and "defaults to 2" in f["text"] for f in records)
    # the table lines are not read as prose; the sentence below the table is a prose fact
    assert [f["text"] for f in prose] == ["A pool with fewer than min_size replicas stops accepting writes after 30 seconds, which protects the data."]
    assert all(f["heading"] == "Ceph pools" and f["page"] == 3 and f["fact_id"] == fact_id(f["text"]) for f in facts)
    asked = {q["question"] for q in questions}
    assert "What is the default value of the option --min_size of pveceph pool create?" in asked
    assert all(q["strategy"] == "template" and q["fact_id"] in {f["fact_id"] for f in facts} for q in questions)


def test_overlapping_chunks_give_each_fact_once(composed_cfg: Callable[..., DictConfig]) -> None:
    sentence = "The relay listens on TCP port 7460 for the Quillstream Protocol by default."
    chunks = [_chunk("c0", f"Intro text that is long enough to be a sentence here. {sentence}"), _chunk("c1", f"{sentence} More about ports.")]
    facts, _ = select_facts(chunks, chunks, composed_cfg())
    assert [f["chunk_id"] for f in facts if f["text"] == sentence] == ["c0"]


def test_template_sentences_are_facts_even_when_not_among_the_chosen(composed_cfg: Callable[..., DictConfig]) -> None:
    text = (
        "The relay listens on port 7460 and the admin API on port 7461 with TLS 1.3 by default.\n"
        "A reload with an unknown key fails with error QSR-4022 and nothing changes."
    )
    cfg = composed_cfg(["generate.max_facts_per_chunk=1", "generate.chars_per_question=null", "generate.questions_per_chunk=1"])
    chunks = [_chunk("c0", text)]
    facts, questions = select_facts(chunks, chunks, cfg)
    assert {f["text"] for f in facts} == set(text.splitlines())
    assert [q["question"] for q in questions] == ["When does Quillstream Relay return error QSR-4022?"]


def test_a_fact_below_a_heading_that_starts_mid_chunk_gets_that_heading(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg(["generate.topic=Proxmox VE"])
    text = OPTION_TABLE + "\nCeph monitors\nA cluster needs at least 3 monitors for quorum, and 5 tolerate 2 failed ones."
    inner = text.index("Ceph monitors")
    chunks = [{**_chunk("c0", text), "headings": [{"offset": inner, "title": "Ceph monitors"}]}]
    facts, _ = select_facts(chunks, chunks, cfg)
    heading = {f["text"]: f["heading"] for f in facts}
    assert heading["A cluster needs at least 3 monitors for quorum, and 5 tolerate 2 failed ones."] == "Ceph monitors"
    assert {h for t, h in heading.items() if "--min_size" in t} == {"Ceph pools"}  # the table rows above it
