"""Text repairs a real PDF needs: compatibility characters, running headers and footers, and words
hyphenated across lines.

A line-end hyphen is either a break inside one word ("con-\\ntroller") or a real hyphen
that happened to fall at the line end ("read-\\nonly", "x86-\\n64"). The document decides:
whichever form, joined or hyphenated, occurs more often elsewhere in it wins (the joined
form on a tie). Without evidence, two lower-case parts are joined (justified text breaks
words at syllables far more often than at a hyphen) unless both are words of 3+ letters
found elsewhere ("time-\\nconsuming"); anything else keeps its hyphen: digits, a
capitalised second part, or a first part that already follows a hyphen ("--no-\\ncache").
A hyphen followed by a space in mid-line ("con- troller", as some tools flatten a line
break) is joined only on evidence.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter

_LINE_END_BREAK = re.compile(r"(\w+)-[ \t]*\n[ \t]*(\w+)")
_SPACED_BREAK = re.compile(r"(\w+)- (\w+)")
_SOFT_HYPHEN_BREAK = re.compile(r"(\w)\u00ad[ \t]*\n[ \t]*(\w)")
_WORD = re.compile(r"\w+")
_COMPOUND = re.compile(r"\w+(?:-\w+)+")
_EDGE_LINES = 2  # lines at the top and bottom of a page checked for running headers/footers


def normalize_unicode(text: str) -> str:
    """NFKC: ligatures (U+FB01 'ﬁ' -> 'fi'), no-break and full-width spaces, compatibility forms."""
    return unicodedata.normalize("NFKC", text)


def strip_running_lines(texts: list[str], min_fraction: float) -> tuple[list[str], list[str]]:
    """Remove lines repeated at the top or bottom of most pages (running headers/footers); return them too."""
    if len(texts) < 3:
        return texts, []
    counts: Counter[str] = Counter()
    for text in texts:
        lines = [line for line in text.splitlines() if line.strip()]
        counts.update({_edge_signature(line) for line in lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]})
    threshold = max(2, int(min_fraction * len(texts) + 0.999))
    repeated = {signature for signature, count in counts.items() if count >= threshold}
    if not repeated:
        return texts, []
    return ["\n".join(_drop_edge_lines(text.splitlines(), repeated)) for text in texts], sorted(repeated)


def _edge_signature(line: str) -> str:
    """Page numbers change from page to page; compare lines with digits masked."""
    return re.sub(r"\d+", "#", line.strip())


def _drop_edge_lines(lines: list[str], repeated: set[str]) -> list[str]:
    non_empty = [i for i, line in enumerate(lines) if line.strip()]
    edge_ids = set(non_empty[:_EDGE_LINES] + non_empty[-_EDGE_LINES:])
    return [line for i, line in enumerate(lines) if not (i in edge_ids and _edge_signature(line) in repeated)]


def join_hyphenated_breaks(texts: list[str]) -> list[str]:
    """Join words split by a hyphen at a line end, deciding by the forms used elsewhere in these texts."""
    texts = [_SOFT_HYPHEN_BREAK.sub(r"\1\2", text).replace("\u00ad", "") for text in texts]
    evidence = _WordForms(texts)
    return [_SPACED_BREAK.sub(evidence.join_spaced, _LINE_END_BREAK.sub(evidence.join_line_end, text)) for text in texts]


class _WordForms:
    """How often each word and each hyphenated pair of words occurs (case-insensitive)."""

    def __init__(self, texts: list[str]) -> None:
        self.words: Counter[str] = Counter()
        self.pairs: Counter[str] = Counter()
        for text in texts:
            self.words.update(word.lower() for word in _WORD.findall(text))
            for compound in _COMPOUND.findall(text):
                parts = compound.lower().split("-")
                self.pairs.update(f"{left}-{right}" for left, right in itertools.pairwise(parts))

    def _joined_wins(self, left: str, right: str) -> bool | None:
        """True to join, False to keep the hyphen, None without evidence either way."""
        joined, hyphenated = self.words[(left + right).lower()], self.pairs[f"{left}-{right}".lower()]
        if joined or hyphenated:
            return joined >= hyphenated
        return None

    def _elsewhere(self, part: str) -> bool:
        """A word of 3+ letters found elsewhere too (the split occurrence itself counts once)."""
        return len(part) >= 3 and self.words[part.lower()] > 1

    def join_line_end(self, match: re.Match[str]) -> str:
        left, right = match.groups()
        decision = self._joined_wins(left, right)
        if decision is None:
            in_compound = match.start() > 0 and match.string[match.start() - 1] == "-"
            two_words = self._elsewhere(left) and self._elsewhere(right)
            decision = not in_compound and not two_words and _plain_word(left) and right.isalpha() and right.islower()
        return f"{left}{right}" if decision else f"{left}-{right}"

    def join_spaced(self, match: re.Match[str]) -> str:
        left, right = match.groups()
        return f"{left}{right}" if self._joined_wins(left, right) else match.group()


def _plain_word(part: str) -> bool:
    """Letters only, lower case after an optional capital (a sentence may start with the split word)."""
    return part.isalpha() and part[1:].islower() if len(part) > 1 else part.isalpha() and part.islower()
