"""Answer metrics against hand-computed values: token F1, ROUGE-L, fact recall; the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runner.evaluation.metrics import fact_recall, new_term_recall, normalize_answer, paired_delta, rouge_l, token_f1


def test_normalize_answer_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("The relay listens on  Port 7460!") == "relay listens on port 7460"


def test_token_f1_by_hand() -> None:
    # prediction -> [relay, listens, on, port, 7460] (5 tokens, "the" dropped)
    # reference  -> [it, listens, on, tcp, port, 7460, by, default] (8 tokens)
    # common: listens, on, port, 7460 = 4; P = 4/5, R = 4/8; F1 = 2PR/(P+R) = 0.8/1.3
    value = token_f1("The relay listens on port 7460", "It listens on TCP port 7460 by default")
    assert value == pytest.approx(0.8 / 1.3)  # 0.6154

    # repeated tokens count at most as often as on the other side:
    # pred {port: 2, 7460: 1}, ref {port: 1, 7460: 2} -> common 1 + 1 = 2; P = R = 2/3; F1 = 2/3
    assert token_f1("port port 7460", "port 7460 7460") == pytest.approx(2 / 3)
    assert token_f1("Port 7460!", "port 7460") == 1.0
    assert token_f1("no overlap here", "port 7460") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "port") == 0.0 and token_f1("the", "port") == 0.0


def test_rouge_l_by_hand() -> None:
    # tokens (lower case, Porter stems): pred [the, relay, listen, on, port, 7460] (6)
    # ref [the, relay, alway, listen, on, tcp, port, 7460] (8); LCS = 6 (pred is a subsequence)
    # P = 6/6, R = 6/8; F = 2 * 1 * 0.75 / 1.75 = 0.857142...
    assert rouge_l("the relay listens on port 7460", "the relay always listens on TCP port 7460") == pytest.approx(1.5 / 1.75)

    # order matters: the reversed prediction shares a longest common subsequence of 1 token
    # P = 1/6, R = 1/8; F = 2 * (1/48) / (1/6 + 1/8) = (1/24) / (7/24) = 1/7
    assert rouge_l("7460 port on listens relay the", "the relay always listens on tcp port 7460") == pytest.approx(1 / 7)

    # stemming: relays/relay and listening/listens share stems, so the match is complete
    assert rouge_l("Relays listening", "relay listens") == pytest.approx(1.0)
    assert rouge_l("completely different", "port 7460") == 0.0


def test_fact_recall_by_hand() -> None:
    reference = "A community cluster has at most 3 nodes and listens on port 7460."
    # key terms of the reference: {"3", "7460"}
    assert fact_recall("It has 3 nodes.", reference) == 0.5  # 1 of 2
    assert fact_recall("Up to 3 nodes, on port 7460.", reference) == 1.0  # 2 of 2
    # whole terms, not substrings: "3" is neither in "7311" nor in "32", "7460" not in "74600"
    assert fact_recall("Port 7311 with 32 nodes and 74600 messages.", reference) == 0.0


def test_fact_recall_normalises_separators_and_counts_units() -> None:
    # "5,000" and its bare number are one term after removing the separator: {"5000"}
    assert fact_recall("It allows 5000 channels.", "A node supports at most 5,000 channels.") == 1.0
    # {"qsr-5083", "5083"}: the bare code alone is half of it
    assert fact_recall("QSR-5083", "The relay returns error QSR-5083.") == 1.0
    assert fact_recall("error 5083", "The relay returns error QSR-5083.") == 0.5
    # {"90 minutes", "90"}; "90 min" gives {"90 min", "90"}: 1 of 2
    assert fact_recall("after 90 min", "Tokens expire after 90 minutes.") == 0.5


def test_fact_recall_without_key_terms_is_nan() -> None:
    assert math.isnan(fact_recall("anything", "The relay is reliable."))


def test_fact_recall_of_a_text_against_itself_is_one() -> None:
    text = (
        "Install quillstream-relay=3.4.2-1, bind 127.0.0.1, use the 10.0.0.0/24 network, keep 64-bit keys in "
        "/etc/quillstream/keys/token-signing.key and pass --ttl 24h; logs go to x.jsonl.gz."
    )
    assert fact_recall(text, text) == 1.0


def test_paired_delta_of_identical_scores_is_zero_with_a_zero_interval() -> None:
    scores = [0.0, 0.25, 1.0, 0.5, 0.75]
    stats = paired_delta(scores, scores, samples=1000, seed=0)
    assert stats["base"] == stats["tuned"] == pytest.approx(0.5)
    assert (stats["delta"], stats["delta_ci_low"], stats["delta_ci_high"]) == (0.0, 0.0, 0.0)
    assert stats["n"] == 5


def test_paired_delta_of_a_constant_improvement_has_its_interval_at_that_constant() -> None:
    # every question gains exactly 0.25, so every resample's mean gain is 0.25, however it draws;
    # the base scores differ widely, which an unpaired interval would count as noise
    base = [0.0, 0.5, 0.25, 0.75, 0.125, 0.375]
    tuned = [b + 0.25 for b in base]
    stats = paired_delta(base, tuned, samples=500, seed=3)
    assert stats["delta"] == pytest.approx(0.25)
    assert stats["delta_ci_low"] == pytest.approx(0.25) and stats["delta_ci_high"] == pytest.approx(0.25)


def test_paired_delta_interval_is_seeded_and_contains_the_delta() -> None:
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, 40)
    tuned = np.clip(base + rng.normal(0.1, 0.2, 40), 0, 1)
    first, again = paired_delta(base, tuned, 1000, seed=11), paired_delta(base, tuned, 1000, seed=11)
    assert first == again
    other = paired_delta(base, tuned, 1000, seed=12)
    assert other["delta"] == first["delta"] and other["delta_ci_low"] != first["delta_ci_low"]
    assert first["delta_ci_low"] < first["delta"] < first["delta_ci_high"]
    # the percentile interval of 40 paired differences: about mean +- 1.96 standard errors
    differences = tuned - base
    standard_error = differences.std(ddof=1) / math.sqrt(len(differences))
    assert first["delta_ci_high"] - first["delta_ci_low"] == pytest.approx(2 * 1.96 * standard_error, rel=0.2)


def test_paired_delta_leaves_out_pairs_with_a_nan_and_is_nan_without_pairs() -> None:
    nan = float("nan")
    # the pair (nan, 1.0) is left out on both sides: base mean 0.5, tuned mean 0.75 over 2 pairs
    stats = paired_delta([0.0, nan, 1.0], [0.5, 1.0, 1.0], samples=200, seed=0)
    assert stats["n"] == 2 and stats["base"] == 0.5 and stats["tuned"] == 0.75 and stats["delta"] == 0.25
    empty = paired_delta([nan], [nan], samples=200, seed=0)
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("base", "tuned", "delta", "delta_ci_low", "delta_ci_high"))
    assert paired_delta([], [], samples=200, seed=0)["n"] == 0


def test_an_answer_that_only_repeats_the_question_adds_no_new_term() -> None:
    question = "What is the default value of node.shutdown_timeout_s?"
    reference = "The default value of node.shutdown_timeout_s is 30."
    assert fact_recall(question, reference) == 0.5  # fact recall credits the echoed key name
    assert new_term_recall(question, reference, question) == 0.0
    assert new_term_recall("node.shutdown_timeout_s defaults to 30.", reference, question) == 1.0
    assert math.isnan(new_term_recall("yes", "Port 7460 is the default.", "Is port 7460 the default?"))  # nothing to add


def test_new_term_recall_takes_a_probes_own_key_terms() -> None:
    question = "What umask value makes new files writable by my group?"
    reference = "A umask of 0002 creates files as -rw-rw-r--, writable by the group."
    assert new_term_recall("Use 0002.", reference, question, key_terms=["0002"]) == 1.0
    assert new_term_recall("Use 0002.", reference, question) == 0.5  # without them: -rw-rw-r-- counts too
