"""Question phrasings of a fact that need no model.

A model learns a fact from several wordings of the question about it, not from one (Allen-Zhu & Li,
Physics of Language Models 3.1). Besides the questions the model wrote and the template questions,
each fact gets:

- rewrites of each of its questions: the topic or the section named in front ("In Quillstream Relay,
  how many ...?"), "What is X?" as "Tell me X.", "Which command deletes ...?" as "Name the command that
  deletes ...". A rewrite belongs to the question it rewrites: held out together, trained together.
- for a fact nobody wrote a usable question about, a question anchored on an identifier only that fact
  holds ("What does the Quillstream Relay manual say about delivery.prefetch?"), so the fact still
  trains as a question, not only as text;
- fill-in-the-blank questions: the fact with one of its checkable terms (a number, a key, a path, a
  code) blanked. Each blanks another term, so each leaves other words of the fact as the cue: several
  ways into the same fact, as the rewordings and permutations that let a model recall a fact from an
  unseen question (Allen-Zhu & Li, 3.1).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# identifiers that name one thing: keys, paths, flags, codes, CamelCase words (not bare numbers)
_IDENTIFIER = re.compile(
    r"(?<![\w./-])(?:--?[a-z][\w-]*[a-z0-9]|/[\w.-]+(?:/[\w.<>-]+)+|[A-Za-z][\w]*[._][\w.]*[A-Za-z0-9]"
    r"|[A-Z]{2,}[A-Z0-9]*-W?\d+|[A-Z][A-Z0-9]*_[A-Z0-9_]+|[a-z]+[A-Z]\w*)(?![\w/-])"
)
_WHAT_IS = re.compile(r"^What is (the .+)\?$")
# "Which command deletes ...?": a noun, then a verb in the third person (not an auxiliary: "does", "is")
_WHICH_NOUN_VERB = re.compile(r"^Which (\w+) ((?!(?:does|do|did|is|are|was|were|has|have|can|should|must|will|would)\b)[a-z]+s\b.*)\?$")


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[1].isupper():  # "QSR-5083", "TLS": keep acronyms
        return text
    return text[:1].lower() + text[1:]


def rewrites(question: str, topic: str = "", heading: str = "") -> list[str]:
    """Deterministic rewordings of ``question`` that ask the same thing (none repeats the question)."""
    question = question.strip()
    if not question.endswith("?"):
        return []
    found = []
    if topic and topic.lower() not in question.lower():
        found.append(f"In {topic}, {_lower_first(question)}")
    section = _section_name(heading)
    if section and section.lower() not in question.lower():
        found.append(f"According to the section \"{section}\", {_lower_first(question)}")
    what = _WHAT_IS.match(question)
    if what:
        found.append(f"Tell me {what.group(1)}.")
    which = _WHICH_NOUN_VERB.match(question)
    if which:
        found.append(f"Name the {which.group(1)} that {which.group(2)}.")
    return [q for q in dict.fromkeys(found) if q != question]


def _section_name(heading: str) -> str:
    """A heading without its section number ("7.2 The QFL Filter Language" -> "The QFL Filter Language")."""
    return re.sub(r"^\s*(?:\d+(?:\.\d+)*\.?|[A-Z]\.)\s+", "", heading or "").strip()


def identifiers(text: str) -> list[str]:
    """The identifiers a text names, in order, trailing sentence punctuation removed."""
    return list(dict.fromkeys(m.group(0).rstrip(".,;:") for m in _IDENTIFIER.finditer(text)))


def unique_anchors(facts: Iterable[str]) -> dict[str, str]:
    """{fact: an identifier no other fact names}, for the facts that have one (the first in reading order)."""
    facts = list(dict.fromkeys(facts))
    named = {fact: identifiers(fact) for fact in facts}
    counts = Counter(term for terms in named.values() for term in set(terms))
    return {fact: next(t for t in terms if counts[t] == 1) for fact, terms in named.items() if any(counts[t] == 1 for t in terms)}


def anchor_question(anchor: str, topic: str) -> str:
    return f"What does the {topic} manual say about {anchor}?" if topic else f"What does the manual say about {anchor}?"


BLANK = "___"


def cloze_questions(fact: str, topic: str, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` (question, blanked term) pairs, each question blanking one checkable term of ``fact``
    (its first occurrence, as written in the fact)."""
    from runner.questions.facts import key_terms

    def rank(term: str) -> tuple[bool, bool, int, int]:  # values and keys first ("7461", "delivery.prefetch"), the longest
        return (not any(c.isdigit() for c in term), not any(c in term for c in "./_-"), fact.lower().find(term), -len(term))

    found: list[tuple[str, str]] = []
    used: list[str] = []
    for term in sorted(key_terms(fact), key=rank):
        if len(found) >= limit:
            break
        start = fact.lower().find(term)
        if start < 0 or len(term) < 2 or any(term in u or u in term for u in used):
            continue  # "127" inside "127.0.0.1:7461" is no term of its own
        used.append(term)
        blanked = fact[:start] + BLANK + fact[start + len(term):]
        where = f"the {topic} manual" if topic else "the manual"
        found.append((f'Fill in the blank from {where}: "{blanked}"', fact[start:start + len(term)]))
    return found


# the value a default names: what follows "defaults to", "(default:" or "the default of X is", up to the end of that clause
_VALUE = r"(.+?)(?=\s\(|\)|[,;](?:\s|$)|\s(?:and|but|or|which|when|unless|if)\s|\.(?:\s|$)|$)"
_DEFAULT_VALUE = re.compile(rf"(?:\bdefaults? (?:to|is)|\(default:?)\s+{_VALUE}")


def default_value(sentence: str, identifier: str) -> str | None:
    """The default value ``sentence`` gives ``identifier`` (the first default named after it), or None."""
    start = sentence.find(identifier)
    if start < 0:
        return None
    named_first = re.search(  # "The default value of IFS is ...", "For X, the default is ..."
        rf"\b(?:[Tt]he default(?: value)? (?:of|for) [^.]*?{re.escape(identifier)}\W*(?: (?:of|in) [^,;]+?)? is|{re.escape(identifier)}\W*,? the default(?: value)? is)\s+{_VALUE}",
        sentence,
    )
    match = named_first or _DEFAULT_VALUE.search(sentence, start + len(identifier))
    return match.group(1).strip() if match else None


def precise_answer(question_kind: str, sentence: str, identifier: str) -> str | None:
    """What a template question asks for, where it asks one value of its sentence (a default), else None:
    the sentence "node.data_dir defaults to /var/lib/q, node.name defaults to the host name" answers
    "What is the default value of node.name?" with "the host name", not with the other key's path."""
    if question_kind in ("default_value", "option_default") and identifier:
        return default_value(sentence, identifier)
    return None
