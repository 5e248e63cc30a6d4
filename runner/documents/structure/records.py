"""Records of reference layouts: what one entry is, and the text helpers the parsers share (who an
entry belongs to, its type, range, choices and default)."""

from __future__ import annotations

import re
from dataclasses import dataclass


# question kinds (``generate.templates`` entries); env_var is shared with runner/questions/templates.py
KINDS = ("option_default", "option_range", "option_purpose", "table_entry", "env_var")

# what each record kind is called in a question and an answer
_NOUNS = {
    "option": "option",
    "argument": "argument",
    "key": "key",
    "keyword": "keyword",
    "setting": "setting",
    "env_var": "environment variable",
    "table_row": "package",
}
_MAX_DESCRIPTION_LINES = 40
_MAX_DEFAULT_WORDS = 10
_MAX_CHOICES = 12  # "<mp0 | mp1 | ... | unused255>" lists hundreds: no answer sentence reads that


@dataclass(frozen=True)
class Record:
    """One entry of a reference layout; ``first_line``/``last_line`` index ``text.splitlines()``."""

    name: str
    kind: str  # option | argument | key | keyword | setting | env_var | table_row
    owner: str  # the command, file or section it belongs to; "" when unknown
    owner_link: str  # "of" a command or a key, "in" a file or section
    first_line: int
    last_line: int
    source_text: str
    value_type: str = ""
    low: str = ""  # numeric range; "N" is unbounded
    high: str = ""
    choices: tuple[str, ...] = ()
    default: str = ""
    description: str = ""  # the first sentence of the entry's text


@dataclass(frozen=True)
class StructuredFact:
    """A self-contained answer sentence built from one record, with the questions it answers."""

    sentence: str
    source_text: str
    name: str
    questions: list[tuple[str, str]]  # (kind, question)
    first_line: int
    last_line: int
    description: str = ""  # what a purpose sentence quotes (the same text under many owners says nothing of one)


# --- shared text helpers -------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(_normalize(text)) if s]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _unquote(value: str) -> str:
    return value.strip().strip(_QUOTES).strip()


# --- who an entry belongs to ---------------------------------------------------------------------

# "pveceph pool create <name> [OPTIONS]", "qm create <vmid> [OPTIONS]", "rsync [OPTION...] SRC... DEST",
# a required option inline ("qm clone <vmid> <newid> --experimental <boolean> [OPTIONS]") and a PDF that
# lost the space between two arguments ("qm migrate <vmid> <target>[OPTIONS]")
_SYNOPSIS = re.compile(
    r"^\s*(?P<command>[a-z][\w.-]*(?: [a-z][\w-]*){0,3})"
    r"(?P<args>(?: +(?:<[^<>]+>|\[[^\[\]]*\]|--?[A-Za-z][\w-]*(?: <[^<>]+>)?|[A-Z][A-Z_.]*\.{0,3}))"
    r"(?: *(?:<[^<>]+>|\[[^\[\]]*\]|--?[A-Za-z][\w-]*(?: <[^<>]+>)?|[A-Z][A-Z_.]*\.{0,3}))*)\s*$"
)
# a heading that names a command ("pct create") or a file ("sshd_config", "/etc/pve/datacenter.cfg")
_COMMAND_HEADING = re.compile(r"^(?:[a-z][\w.-]*(?: [a-z][\w-]*){0,3})$")
_FILE_HEADING = re.compile(r"^(?:/?[\w.-]+/)*[\w.-]*(?:\.conf|\.cfg|_config|\.ini|\.toml|\.ya?ml|\.[1-8])$")


def _synopsis_command(line: str) -> str:
    match = _SYNOPSIS.match(line)
    if not match or not re.search(r"<[^<>]+>|\[OPTIONS?\.*\]|\[-", match.group("args")):
        return ""
    return match.group("command")


def _heading_owner(heading: str) -> str:
    heading = _normalize(re.sub(r"^\d+(?:\.\d+)*\.?\s+", "", heading or ""))
    if _COMMAND_HEADING.match(heading) or _FILE_HEADING.match(heading):
        return heading
    return ""


def _command_above(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        command = _synopsis_command(line)
        if command:
            return command
    return ""


# --- parsing values out of an entry's text ------------------------------------------------------

_DEFAULT_SENTENCE = re.compile(
    r"^(?:The default(?: value)? is|Defaults to|Default is|Default:|The default value of this option is)\s+(?P<value>.+?)\.$"
)  # the period too: a sentence the chunk cut off ('Defaults to "auto" in') states no default
_PAREN_DEFAULT = re.compile(r"\(default(?: is|:| =|=)?\s+(?P<value>[^\s()]+)\)")
# "(default: ~)" is the default of the noun before it: of the entry only after "Sets the ...", not in
# "Enables the command line option in the EscapeChar menu for interactive sessions (default '~C')"
_SETS_THE = re.compile(r"^(?:Sets|Specifies|Selects|Gives|Defines) the\b")
# "any (the default)", "yes (the default) or all", "If set to no (the default)"
_THE_DEFAULT = re.compile(r"(?:\b(?:are|is|to|or|and)|,)\s+(?P<value>[\w.+:/-]+|\"[^\"]+\")\s+\(the default\b")
_CHOICES = re.compile(
    r"\b(?:The argument must be|The possible values are:?|Takes one of|Accepts one of|Valid values are:?|must be one of)\s+(?P<list>[^.]+)\."
)
# "Takes a boolean argument." but not "Takes a boolean argument or the special values ..."
_TAKES_TYPE = re.compile(r"\bTakes an? (?P<type>boolean|integer|unsigned integer|positive integer)(?: (?:argument|value|parameter))?(?=[.,;]| that\b| which\b)")
_MUST_BE_TYPE = re.compile(r"\bThe argument must be an? (?P<type>integer|boolean)\.")
# "Takes an integer between -20 (highest priority) and 19 (lowest priority)"
_BETWEEN = re.compile(r"\bTakes an? (?P<type>integer|number)(?: value)? between (?P<low>-?\d+)(?: \([^()]*\))? and (?P<high>-?\d+)\b")
_CHOICE_TOKEN = re.compile(r"^[\w.+:/@-]+$")


def _default_in(text: str, one_line: bool = False) -> str:
    """The entry's default as its text states it; ``one_line``: a summary line ("suffix (default: ~)")."""
    sentences = _sentences(text)
    for sentence in sentences:
        match = _DEFAULT_SENTENCE.match(sentence)
        if match:
            value = match.group("value").strip()
            # a default "for" other entries, or one with conditions, is not this entry's plain default
            if len(value.split()) <= _MAX_DEFAULT_WORDS and not re.search(r"\b(?:see|unless|depends|if|for)\b|\w=", value, re.IGNORECASE):
                return value
    match = _THE_DEFAULT.search(_normalize(text))
    if match:
        return _unquote(match.group("value"))
    for sentence in sentences:
        match = _PAREN_DEFAULT.search(sentence)
        if match and (one_line or _SETS_THE.match(sentence)):
            return _unquote(match.group("value"))
    return ""


def _choices_in(text: str) -> tuple[str, ...]:
    match = _CHOICES.search(_normalize(text))
    if not match:
        return ()
    listed = re.sub(r"\([^()]*\)", "", match.group("list"))
    items = [_unquote(item) for item in re.split(r",\s*(?:and |or )?|\s+(?:and|or)\s+", listed) if item.strip()]
    if len(items) < 2 or not all(_CHOICE_TOKEN.match(item) for item in items):
        return ()
    return tuple(items)


def _range_in(text: str) -> tuple[str, str, str]:
    """(value type, low, high) of "Takes an integer between A and B"; empty strings when not stated."""
    match = _BETWEEN.search(_normalize(text))
    return (match.group("type"), match.group("low"), match.group("high")) if match else ("", "", "")


def _type_in(text: str) -> str:
    flat = _normalize(text)
    match = _TAKES_TYPE.search(flat) or _MUST_BE_TYPE.search(flat)
    return match.group("type") if match else ""


def _first_sentence(text: str) -> str:
    sentences = _sentences(text)
    return sentences[0] if sentences else ""


