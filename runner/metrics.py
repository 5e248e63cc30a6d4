"""Answer-quality metrics against a reference answer (token F1, ROUGE-L, fact recall)."""

from __future__ import annotations

import re
import string
from collections import Counter

from runner.facts import comparable_terms

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
