"""Deterministic text analysis shared by generation, curation, answering and evaluation.

- ``split_sentences`` / ``extract_facts``: pick salient, self-contained sentences from a chunk
  (numbers, identifiers, commands, paths, defaults, limits), rejecting headings and table debris.
- ``key_terms``: the checkable tokens of a text (numbers, identifiers, commands), used for
  the answer grounding check and the probe fact-recall metric.
- ``content_terms``: lower-cased content words, used by the specificity gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHARS_PER_TOKEN = 4  # a budget estimate; exact token counts depend on the model's tokenizer

# a sentence ends at . ! ? and at those followed by a closing bracket or quote: "(It has undel command to recover
# deleted files.) The mkfs(8) ..." is two sentences, the first one a parenthesis the second does not need
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][)\]\"'\u201d\u2019]))\s+(?=[A-Z0-9`\"'(])")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_NUMBER = re.compile(r"\b\d+(?:[.,:]\d+)*(?:\s?(?:%|ms|s|MB|MiB|GB|GiB|KB|KiB|h|min|days?|hours?|seconds?|minutes?))?\b")
# tokens carrying a digit, an inner separator, CamelCase or an upper-case code: QSR-4012, max_conn, /etc/x.conf, --profile
_IDENTIFIER = re.compile(
    r"(?:--?[a-z][\w-]*)"
    r"|(?:/[\w.-]+(?:/[\w.-]+)+)"
    r"|(?:\b[A-Za-z]+[\w]*[-_.][\w.-]*\w\b)"
    r"|(?:\b[A-Z]{2,}[A-Z0-9]*\b)"
    r"|(?:\b[a-z]+[A-Z]\w*\b)"
)
# numbered section headings ("7.2 The QFL Filter Language") and Markdown headings ("## Limits")
_HEADING = re.compile(r"^(?:\d+(?:\.\d+)*\.?\s+[A-Z][^.!?]{0,70}|#{1,6}\s.*)$")
# short title-like lines ("Lantern cache"); a wrapped line of a sentence can look the same (see _is_heading)
_TITLE = re.compile(r"^[A-Z][A-Za-z0-9 ,/&()-]{0,60}[A-Za-z)]$")
# a line ending with one of these words is the first part of a wrapped sentence, never a title
_CONNECTIVES = frozenset("a an the and or but nor of to in on at by for with from as is are was were than that".split())
_FACT_CUES = re.compile(
    r"\b(default|defaults|maximum|minimum|max|min|limit|at most|at least|up to|must|required|"
    r"listens|port|timeout|retries|retry|version|introduced|deprecated|changed|error|code|command|"
    r"flag|option|environment variable|path|file|directory|set to|between|exceeds|only)\b",
    re.IGNORECASE,
)
_STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from as is are was were be been being it its this
    that these those there their what which who whom whose when where why how do does did can could should would will
    shall may might must not no yes than too very so such into over under about after before between through during
    any each every all both few more most other some own same only just also you your we our they them he she his her
    i me my use used using set sets get gets does list is there many much""".split()
)


@dataclass(frozen=True)
class Fact:
    text: str
    score: float
    position: int  # order in the chunk


def normalize_whitespace(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of a chunk; bullet items and blank-line blocks are their own units."""
    units: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if block:
            units.extend(s.strip() for s in _SENTENCE_END.split(normalize_whitespace(" ".join(block))) if s.strip())
            block.clear()

    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.strip():
            flush()
        elif _is_heading(line.strip(), lines[index + 1] if index + 1 < len(lines) else ""):
            flush()  # a heading is never part of the sentence that follows it
        elif line.count("|") >= 2:
            flush()  # a table row is its own (debris) unit, never glued to the sentence after it
            units.append(normalize_whitespace(line))
        elif _BULLET.match(line):
            flush()
            block.append(_BULLET.sub("", line))
        else:
            block.append(line)
    flush()
    return units


def _is_heading(line: str, next_line: str) -> bool:
    """A numbered or Markdown heading, or a title-like line that is not part of a hard-wrapped sentence."""
    if _HEADING.match(line):
        return True
    if not _TITLE.match(line):
        return False
    # PDF text is hard-wrapped: "The relay listens on port 7460 and" is the start of a sentence, not a title
    wrapped = line.rsplit(None, 1)[-1].lower() in _CONNECTIVES or next_line.strip()[:1].islower()
    return not wrapped


def key_terms(text: str) -> set[str]:
    """Numbers and identifiers in ``text``, lower-cased, trailing punctuation removed."""
    terms = {m.group(0) for m in _NUMBER.finditer(text)}
    terms |= {m.group(0) for m in _IDENTIFIER.finditer(text)}
    terms |= set(numbers_in(text))
    cleaned = {t.strip(".,;:()'\"`").lower() for t in terms}
    return {t for t in cleaned if len(t) >= 1 and t not in _STOPWORDS and not (t.isdigit() and len(t) == 1 and t in "01")}


def comparable_terms(text: str) -> set[str]:
    """``key_terms`` with thousands separators removed, for comparing two texts' terms.

    Compare term sets, not substrings: "3" (nodes) must not count as present in "port 7311".
    """
    return {term.replace(",", "") for term in key_terms(text)}


def numbers_in(text: str) -> list[str]:
    """Bare numbers with thousands separators removed: "1,024 MiB" -> ["1024"]."""
    return [n.replace(",", "") for n in re.findall(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?", text)]


def words(text: str) -> set[str]:
    """Lower-cased tokens (identifiers and numbers kept whole) without stopwords or edge punctuation."""
    tokens = {t.strip(".,;:()'\"`?!") for t in re.findall(r"[\w.,/:=-]+", text.lower())}
    return {t.replace(",", "") if re.fullmatch(r"[\d,]+", t) else t for t in tokens if t and t not in _STOPWORDS}


def content_terms(text: str) -> set[str]:
    words = re.findall(r"[A-Za-z][\w-]*|\d[\w.-]*", text.lower())
    return {w for w in words if w not in _STOPWORDS and len(w) > 2}


# a table of contents' dot leaders ("9.5 System maintenance tips . . . . . 150")
_DOT_LEADERS = re.compile(r"(?:\.\s?){5,}")
# a sentence that introduces what follows it ("... with objdump(1) by the following."): the listing it points to
# is not part of it (a PDF keeps it as a separate block, often code), so alone it states nothing
_POINTS_AHEAD = re.compile(r"\b(?:the following|as follows|below)\s*[.:]?$|:$")


def is_readable_text(text: str) -> bool:
    """Prose rather than a table of contents, a table or a code dump: enough letters, no dot leaders."""
    return sum(ch.isalpha() for ch in text) >= 0.55 * len(text) and not _DOT_LEADERS.search(text)


def _is_debris(sentence: str) -> bool:
    if not is_readable_text(sentence):
        return True  # tables, numbers-only rows, code dumps, contents pages
    if _POINTS_AHEAD.search(sentence.rstrip()):
        return True
    if sentence.count("|") >= 2 or "  " in sentence.strip():
        return True
    if not sentence.rstrip().endswith((".", "!", ")", '"', "'")):
        return True  # headings, captions and cut-off fragments carry no closing punctuation
    if not (sentence[0].isupper() or sentence[0] in "`\"'("):
        return True  # starts mid-sentence ("1 voter and ..."): the chunk overlap or a split cut it
    words = sentence.split()
    if len(words) < 6:
        return True
    return False


def fact_score(sentence: str) -> float:
    """How checkable a sentence is: numbers and identifiers count most, cue words a little."""
    numbers = len(_NUMBER.findall(sentence))
    identifiers = len(_IDENTIFIER.findall(sentence))
    cues = len(_FACT_CUES.findall(sentence))
    return 2.0 * min(numbers, 3) + 1.5 * min(identifiers, 3) + 0.5 * min(cues, 3)


def clean_sentences(text: str, min_chars: int = 40, max_chars: int = 320) -> list[tuple[int, str]]:
    """(position, sentence) for the sentences of ``text`` that are whole and not debris."""
    return [
        (position, sentence)
        for position, sentence in enumerate(split_sentences(text))
        if min_chars <= len(sentence) <= max_chars and not _is_debris(sentence)
    ]


# a sentence whose subject is in the sentence before it ("This tap device is added to a bridge",
# "The default is the size of the installed memory"): alone it is no complete fact
_LEANS_ON_BEFORE = re.compile(
    r"^(?:It|Its|This|These|That|Those|They|Their|Such|Otherwise|However|Instead|Likewise|Similarly|Also|"
    r"In (?:that|this|such a) case|Without (?:it|this|them)|With (?:it|this|them)|The same|"
    r"The default(?: value| setting)? (?:is|was|changed|changes|depends|applies|remains|can|may|will)|By default,? (?:it|this|they))\b"
)


def leans_on_before(sentence: str) -> bool:
    return bool(_LEANS_ON_BEFORE.match(sentence))


def extract_facts(text: str, max_facts: int, min_chars: int = 40, max_chars: int = 320) -> list[Fact]:
    """The ``max_facts`` most checkable sentences of ``text``, in reading order, each complete on its own.

    A sentence that leans on the one before ("It defaults to 30 seconds.") is taken together with that
    sentence when it is a clean sentence of the same text; without one it is no fact (its subject is
    unknown, so neither a question nor an answer could name it)."""
    units = split_sentences(text)
    candidates = []
    for position, sentence in enumerate(units):
        if not (min_chars <= len(sentence) <= max_chars) or _is_debris(sentence):
            continue
        score = fact_score(sentence)
        if score < 2.0:
            continue
        if leans_on_before(sentence):
            before = units[position - 1] if position else ""
            if not before or _is_debris(before) or leans_on_before(before) or len(before) > max_chars:
                continue
            sentence = f"{before} {sentence}"
        candidates.append(Fact(sentence, score, position))
    # a sentence taken into the one after it is no fact of its own as well
    joined = {f.position - 1 for f in candidates if leans_on_before(units[f.position])}
    candidates = [f for f in candidates if f.position not in joined]
    best = sorted(candidates, key=lambda f: (-f.score, f.position))[:max_facts]
    return sorted(best, key=lambda f: f.position)


def fallback_facts(text: str, max_facts: int) -> list[Fact]:
    """When no sentence is checkable, the longest clean sentences still anchor a question."""
    sentences = [sentence for _, sentence in clean_sentences(text)]
    ranked = sorted(enumerate(sentences), key=lambda item: -len(item[1]))[:max_facts]
    return [Fact(s, 0.0, i) for i, s in sorted(ranked)]


_QUANTITY = r"\d+(?:[.,]\d+)*(?:\s?(?:%|ms|MB|MiB|GB|GiB|KB|KiB|TB|TiB|seconds?|minutes?|hours?|days?|s|h|min)\b)?"
# what a fact's answer most likely is, most specific first; a pattern's group 1, when it has one, is the span
_ANSWER_PATTERNS = (
    re.compile(r"\b[A-Z]{2,}-\d+\b"),  # error codes: QSR-4012
    re.compile(rf"\b(between {_QUANTITY} and {_QUANTITY})"),  # a range is one answer, not its first number
    re.compile(rf"\bdefaults? (?:to|is|of) ({_QUANTITY}|[\w./-]*[\w/])"),  # "defaults to 2": the value, not the key
    re.compile(r"(?:--[a-z][\w-]*)"),  # flags
    re.compile(r"\bport \d+\b", re.IGNORECASE),
    re.compile(r"\b\d+(?:[.,]\d+)*\s?(?:%|ms|MB|MiB|GB|GiB|KB|KiB|TB|TiB|seconds?|minutes?|hours?|days?|s|h|min)\b"),
    re.compile(r"(?:/[\w.<>-]*[\w<>]){2,}"),  # paths, without a sentence's closing dot
    re.compile(r"\b[a-z]+(?:[._][a-z0-9]+)+\b"),  # config keys: storage.retention_hours
    re.compile(r"\b\d+(?:[.,]\d+)*\b"),
)


def answer_span(fact: str) -> str | None:
    """The most specific checkable span of a fact (error code, range, default value, flag, port,
    quantity, path, key, number)."""
    for pattern in _ANSWER_PATTERNS:
        match = pattern.search(fact)
        if match:
            return match.group(1 if pattern.groups else 0).strip()
    return None

