"""Answer sentences and fixed questions built from records, and the corpus-level filter that keeps
only questions one record answers."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from runner.documents.structure.records import (
    Record,
    StructuredFact,
    _MAX_CHOICES,
    _NOUNS,
)
from runner.documents.structure.layouts import (
    parse_records,
)

# --- answer sentences and questions --------------------------------------------------------------

# first words of descriptions written as an imperative ("increase verbosity", "Override I/O bandwidth limit")
_BASE_VERBS = frozenset(
    """accept activate add identify allocate allow append apply archive assign attach authenticate
    avoid bind block build bypass calculate call cause change check choose clean clear close collect
    compare compress configure connect control convert copy create declare decrease define delete
    deny describe destroy determine disable disconnect display do download dump echo edit emit
    enable enforce ensure exclude execute exit expand export extract fail fetch filter find fix
    follow force forward generate get give grant handle hide hold ignore import include increase
    indicate inherit initialize insert install keep kill launch limit link list listen load lock log
    look make manage map mark match merge migrate modify monitor mount move omit open output
    override pass pause perform permit pipe point prefer prepare preserve prevent print process
    produce prompt protect prune purge put query quit read receive recurse redirect reduce refresh
    register reject release reload remove rename repeat replace report request require reset resize
    resolve restart restore restrict resume retry return reuse run save scan search select send
    serve set show shrink simulate skip sort specify split start stop store strip submit suppress switch sync
    take tell terminate test toggle trace transfer translate treat trigger trim try turn undo unlock
    unmount unset update upgrade upload use validate verify wait warn watch wipe write
    """.split()
)
_THIRD_PERSON_EXTRA = frozenset({"does", "has", "is", "goes"})
_MODALS = frozenset({"will", "can", "may", "must", "should", "would", "could"})
_NOUN_STOP = frozenset(
    """if for when only in on with without by to at as see note this these it its there where while
    after before since unless although because also same both either neither all any each every no
    not used similar same equivalent identical like alias synonym short shorthand deprecated
    obsolete optional required useful ignored currently normally usually always never otherwise
    default enabled disabled
    """.split()
)
# a first sentence that only names the value's type says nothing about what the entry does
_TYPE_ONLY = re.compile(r"^(?:Can take|Takes|Accepts) an? [\w -]+?(?: as)? (?:argument|value|parameter)s?$", re.IGNORECASE)
_THIS = re.compile(r"^This (?:option|flag|keyword|directive|setting|parameter|variable|key)\s+(?P<rest>\S.*)$")


def _third_person(verb: str) -> str:
    if verb == "do":
        return "does"
    if re.search(r"(?:s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def _is_third_person(word: str) -> bool:
    lower = word.lower()
    if lower in _THIRD_PERSON_EXTRA:
        return True
    for stem in (lower[:-1], lower[:-2], lower[:-3] + "y"):
        if stem in _BASE_VERBS and _third_person(stem) == lower:
            return True
    return lower in {"specifies", "sets", "gives", "controls", "configures", "determines", "defines", "takes", "enables"}


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first[1:].islower() or len(first) == 1:
        return text[0].lower() + text[1:]
    return text


def _predicate(description: str) -> str:
    """The description as a predicate of its entry ("increases verbosity"), or "" when its form is unclear."""
    description = description.strip().rstrip(".").strip()
    if not description or description[0] in "-(<[\"'`" or _TYPE_ONLY.match(description):
        return ""
    this = _THIS.match(description)
    if this:
        return this.group("rest")
    first, _, rest = description.partition(" ")
    word = first.lower()
    if word in {"don't", "do"} and rest.startswith("not ") or word == "don't":
        return "does not " + (rest[4:] if word == "do" else rest)
    if not re.fullmatch(r"[A-Za-z]+", first):
        return ""
    has_own_verb = re.search(r"\b(?:is|are|was|were)\b", rest)
    rest = re.sub(r"\band (exit|quit)\b", r"and \1s", rest)  # "display the version number and exit"
    if _is_third_person(first) and first[:1].isupper() or word in _MODALS:
        return _lower_first(description)
    if word in _BASE_VERBS and not has_own_verb:
        return f"{_third_person(word)} {rest}".strip()
    if word in {"the", "a", "an"} and rest:
        return "specifies " + _lower_first(description)
    if word == "whether":
        return "specifies " + _lower_first(description)
    # a noun phrase ("Amount of RAM for the container in MB"); a word ending in -s may be a verb I do not know
    noun_like = not word.endswith(("ly", "ed", "ing", "s"))
    if first[0].isupper() and noun_like and word not in _NOUN_STOP and word not in _BASE_VERBS and not has_own_verb:
        return "specifies the " + _lower_first(description)
    return ""


def _subject(record: Record) -> str:
    noun = _NOUNS[record.kind]
    owner = record.owner
    if record.kind == "table_row":
        return f"The package {record.name}"
    return f"The {noun} {record.name} {record.owner_link} {owner}"


def _reference(record: Record) -> str:
    """How a question names the entry: "the option --min_size of pveceph pool create"."""
    return _subject(record)[0].lower() + _subject(record)[1:]


def _range_phrase(record: Record) -> str:
    if record.low and record.high and record.value_type in {"integer", "number"}:
        noun = "an integer" if record.value_type == "integer" else "a number"
        if record.high == "N":
            return f"{noun} of at least {record.low}" if record.low != "N" else ""
        if record.low == "N":
            return f"{noun} of at most {record.high}"
        return f"{noun} from {record.low} to {record.high}"
    if 1 < len(record.choices) <= _MAX_CHOICES:
        return "one of " + ", ".join(record.choices[:-1]) + f" or {record.choices[-1]}"
    if record.value_type == "boolean":
        return "a boolean value"
    return ""


def _default_sentence(record: Record) -> str:
    value = record.default
    if " " in value or value.lower().startswith(("to ", "not ")):
        return f"The default for {_reference(record)} is {value}."
    return f"{_subject(record)} defaults to {value}."


def _facts(record: Record, wanted: set[str]) -> list[StructuredFact]:
    facts: list[StructuredFact] = []
    reference = _reference(record)

    def add(kind: str, question: str, sentence: str, description: str = "") -> None:
        if kind in wanted:
            facts.append(StructuredFact(sentence, record.source_text, record.name, [(kind, question)], record.first_line, record.last_line, description))

    quoted = f"\"{record.description.rstrip('.')}\""  # the document's own words, not conjugated into a sentence of ours
    if record.kind == "table_row":
        if record.description:
            # asked in the table's terms: its caption names what the rows are ("the list of text search tools")
            caption = _lower_first(record.owner) if record.owner else ""
            question = f"What is {record.name} for, according to the {caption}?" if caption else f"What is the package {record.name} for?"
            where = f" in the {caption}" if caption else ""
            add("table_entry", question, f"The package {record.name} is described{where} as {quoted}.")
        return facts
    if record.kind == "env_var":
        if record.name in record.description.split() or f"${record.name}" in record.description:
            sentence = record.description
        elif _predicate(record.description):
            sentence = f"In {record.owner}, the environment variable {record.name} is described as {quoted}."
        else:
            return facts
        add("env_var", f"What is the environment variable {record.name} used for?", sentence)
        return facts
    if record.default:
        add("option_default", f"What is the default value of {reference}?", _default_sentence(record))
    range_phrase = _range_phrase(record)
    if range_phrase:
        numeric = bool(record.low)
        question = f"What range of values does {reference} accept?" if numeric else f"Which values does {reference} accept?"
        add("option_range", question, f"{_subject(record)} takes {range_phrase}.")
    if _predicate(record.description):  # a description that says what the entry does (not only its type)
        add("option_purpose", f"What does {reference} do?", f"{_subject(record)} is described as {quoted}.", record.description)
    return facts


def structured_facts(text: str, heading: str, topic: str, kinds: Iterable[str]) -> list[StructuredFact]:
    """Answer sentences and questions from the reference layouts of one chunk (``kinds`` from KINDS)."""
    wanted = set(kinds)
    return [fact for record in parse_records(text, heading, topic) for fact in _facts(record, wanted)]


def _normalize_space(text: str) -> str:
    return " ".join(text.lower().split())


def unambiguous(facts: Iterable[StructuredFact]) -> list[StructuredFact]:
    """Facts whose question no other sentence answers differently, each question once.

    Two defaults or ranges for one question ("the default of --bwlimit of pct" under two commands) mean
    the owner was not resolved precisely enough: neither answer is safe. Two descriptions of one entry
    (a summary line and its full paragraph) are both right: the first is kept. An entry described alike under
    two owners or more (a generic ``<id>`` argument) is not asked about at all."""
    facts = list(facts)
    # "<vmid>: The (unique) ID of the VM." under every subcommand: a question whose answer is the same for every
    # entry of a kind teaches nothing about any one of them
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for fact in facts:
        if fact.description:
            owners[(fact.name, _normalize_space(fact.description))].add(fact.sentence)
    facts = [f for f in facts if not f.description or len(owners[(f.name, _normalize_space(f.description))]) < 2]
    answers: dict[str, set[str]] = defaultdict(set)
    for fact in facts:
        for _, question in fact.questions:
            answers[question].add(fact.sentence)
    kept: list[StructuredFact] = []
    seen: set[str] = set()
    for fact in facts:
        questions = [(k, q) for k, q in fact.questions if (len(answers[q]) == 1 or k == "option_purpose") and q not in seen]
        seen |= {q for _, q in questions}
        if questions:
            kept.append(StructuredFact(fact.sentence, fact.source_text, fact.name, questions, fact.first_line, fact.last_line, fact.description))
    return kept
