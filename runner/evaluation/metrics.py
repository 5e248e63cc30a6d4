"""Answer-quality metrics against a reference answer (new-term recall, fact recall, token F1, ROUGE-L),
and the paired bootstrap interval of a base-vs-tuned difference."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from runner.questions.facts import comparable_terms

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between normalised answers."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


_ROUGE = None


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (Google's rouge-score, with stemming)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _ROUGE.score(reference, prediction)["rougeL"].fmeasure


def fact_recall(prediction: str, reference: str) -> float:
    """Share of the reference's key terms (numbers, identifiers, commands) that are also key terms of the prediction."""
    terms = comparable_terms(reference)
    if not terms:
        return float("nan")
    return len(terms & comparable_terms(prediction)) / len(terms)


def new_terms(reference: str, question: str, key_terms: Sequence[str] | None = None) -> set[str]:
    """The key terms an answer adds to the question: the reference's (or ``key_terms``) the question lacks."""
    terms = comparable_terms(" ".join(key_terms)) if key_terms else comparable_terms(reference)
    return terms - comparable_terms(question)


def new_term_recall(prediction: str, reference: str, question: str, key_terms: Sequence[str] | None = None) -> float:
    """Share of the reference's key terms that the question does not hold and the prediction does.

    What an answer adds: a model that repeats the question scores 0. ``key_terms`` (a probe's own
    list) replaces the terms read from the reference. NaN when the question leaves no term to add."""
    new = new_terms(reference, question, key_terms)
    if not new:
        return float("nan")
    return len(new & comparable_terms(prediction)) / len(new)


def paired_delta(base: Sequence[float], tuned: Sequence[float], samples: int, seed: int, confidence: float = 0.95) -> dict[str, float]:
    """Means of base and tuned, their delta and its paired bootstrap percentile interval.

    Questions are resampled with replacement ``samples`` times, the same draw for both models (a
    question's two scores stay together); pairs where either score is NaN are left out. Returns
    {"base", "tuned", "delta", "delta_ci_low", "delta_ci_high", "n"}, all NaN when no pair is left.
    """
    pairs = np.column_stack([np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)]) if len(base) else np.empty((0, 2))
    pairs = pairs[~np.isnan(pairs).any(axis=1)]
    if not len(pairs):
        return dict.fromkeys(("base", "tuned", "delta", "delta_ci_low", "delta_ci_high"), float("nan")) | {"n": 0}
    differences = pairs[:, 1] - pairs[:, 0]
    draws = np.random.default_rng(seed).integers(0, len(differences), size=(samples, len(differences)))
    resampled = differences[draws].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return {
        "base": float(pairs[:, 0].mean()),
        "tuned": float(pairs[:, 1].mean()),
        "delta": float(differences.mean()),
        "delta_ci_low": float(low),
        "delta_ci_high": float(high),
        "n": len(differences),
    }
