"""Deterministic questions about the identifiers a manual explains: a config key's default value,
the cause of an error or warning code, what an environment variable is for.

A small model garbles questions about exactly these details ("What is the QSR-W510's name?"),
while the sentence that defines the identifier answers a fixed question about it every time.
A question is written only when one sentence of the whole corpus explains the identifier that
way, so the sentence is the complete answer (``generate.templates`` picks the kinds; [] = none).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

_KEY = r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+"
# "The key node.id is an integer between 1 and 65535 and defaults to 1": the key, then its default
_DEFAULT = re.compile(rf"`?\b({_KEY})\b`?(?:(?!\b{_KEY}\b)[^.;]){{0,60}}?\bdefaults? to\b")
_CODE = re.compile(r"\b(error|warning) ([A-Z]{2,}-W?\d+)\b")
_ENV_VAR = re.compile(r"\benvironment variables? `?([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b")

KINDS = ("default_value", "error_code", "env_var")
# a sentence that leans on the one before it ("Without it, the request fails ...") is no complete answer
_DEPENDENT = re.compile(r"^(?:It|Its|This|These|They|Their|Without it|With it|In that case)\b")


@dataclass(frozen=True)
class TemplateQuestion:
    kind: str
    identifier: str
    question: str
    sentence: str


def _candidates(sentence: str, topic: str) -> Iterable[TemplateQuestion]:
    for match in _DEFAULT.finditer(sentence):
        key = match.group(1)
        yield TemplateQuestion("default_value", key, f"What is the default value of {key}?", sentence)
    for match in _CODE.finditer(sentence):
        kind, code = match.groups()
        verb = "return" if kind == "error" else "log"
        yield TemplateQuestion("error_code", code, f"When does {topic} {verb} {kind} {code}?", sentence)
    for match in _ENV_VAR.finditer(sentence):
        var = match.group(1)
        yield TemplateQuestion("env_var", var, f"What is the environment variable {var} used for?", sentence)


def template_questions(sentences: Iterable[str], topic: str, kinds: Iterable[str]) -> dict[str, list[TemplateQuestion]]:
    """{sentence: its template questions}, for identifiers that exactly one distinct sentence explains.

    ``sentences`` are the clean sentences of the whole corpus (repeats from chunk overlap are fine)."""
    wanted = set(kinds)
    by_identifier: dict[tuple[str, str], set[str]] = defaultdict(set)
    found: list[TemplateQuestion] = []
    for sentence in dict.fromkeys(sentences):
        if _DEPENDENT.match(sentence):
            continue
        for candidate in _candidates(sentence, topic):
            if candidate.kind in wanted:
                by_identifier[(candidate.kind, candidate.identifier)].add(sentence)
                found.append(candidate)
    by_sentence: dict[str, list[TemplateQuestion]] = defaultdict(list)
    for candidate in found:
        if len(by_identifier[(candidate.kind, candidate.identifier)]) == 1:
            by_sentence[candidate.sentence].append(candidate)
    return dict(by_sentence)
