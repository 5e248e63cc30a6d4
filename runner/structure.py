"""Facts from structure: option tables, configuration-key references and definition lists as records.

Real manuals put their densest facts in reference layouts, not in sentences:

- typed option tables (``--min_size <integer> (1 - 7) (default = 2)``, ``sockets: <integer> (1 - N)``,
  ``size=<DiskSize>``), each under a command line such as ``pveceph pool create <name> [OPTIONS]``;
- man-page option lists (``-v, --verbose   increase verbosity``, or the flags alone on a line above an
  indented paragraph);
- configuration-key references (sshd_config's ``Keyword`` or systemd's ``Key=`` above an indented
  paragraph that says "The default is yes." or "Defaults to no."), and environment variables listed the
  same way in an ENVIRONMENT section;
- package and option tables whose columns a PDF flattened into one line each
  (``mc V:50, I:209 1542 Midnight Commander (MC)``, ``-s simulate the result of the command``).

Read as sentences they become garbled facts. Parsed as records (name, kind, value type, range or choices,
default, description, the command or section they belong to), they give fixed questions whose answer
sentence is built from the record and names the option and its owner, so it stands on its own.

Every parser is conservative: a layout it does not recognise fully yields no record, because a wrong
record becomes a wrong training pair.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

# question kinds (``generate.templates`` entries); env_var is shared with runner/templates.py
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

# "pveceph pool create <name> [OPTIONS]", "qm create <vmid> [OPTIONS]", "rsync [OPTION...] SRC... DEST"
_SYNOPSIS = re.compile(
    r"^\s*(?P<command>[a-z][\w.-]*(?: [a-z][\w-]*){0,3})"
    r"(?P<args>(?: +(?:<[^<>]+>|\[[^\[\]]*\]|[A-Z][A-Z_.]*\.{0,3}))+)\s*$"
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


# --- parser 1: typed option tables (--opt <type> (range) (default = x)) ---------------------------

_TYPED = re.compile(
    r"^\s*(?:[-*\u2022]\s+)?`?(?P<name>--[\w-]+(?:\[n\])?|<[\w-]+>|[a-z][\w-]*(?:\[n\])?)`?"
    r"(?P<sep>:\s*|=|\s+)`?(?P<type><[^<>]+>)`?"
    r"(?:\s*\((?P<low>-?\d+(?:\.\d+)?|N)\s*-\s*(?P<high>-?\d+(?:\.\d+)?|N)\))?"
    r"(?:\s*\('?default\s*='?\s*`?(?P<default>[^()`]+?)`?\))?"
    r"\s*(?:::|;;)?\s*(?P<rest>.*)$"
)


# "scsi[n]: [file=]<volume> [,size=<DiskSize>]": a key whose value is a property string of fields
_PARENT_KEY = re.compile(r"^\s*`?(?P<name>[a-z][\w-]*(?:\[n\])?)`?:\s+.*<[^<>]+>")


def _typed_kind(name: str, sep: str) -> str:
    if name.startswith("--"):
        return "option" if sep.strip() == "" else ""
    if name.startswith("<"):
        return "argument" if sep.startswith(":") else ""
    return "key" if sep.startswith(":") or sep == "=" else ""


_NUMBERED_HEADING = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s+[A-Z]")
_OPEN_ENDING = re.compile(r"\b(?:a|an|the|and|or|of|to|in|on|for|with|from|by|as|is|are)$|[,:;(]$")


def _typed_description(lines: list[str], index: int, rest: str) -> tuple[list[str], int]:
    """The description lines of the typed entry at ``index`` and its last line.

    A PDF keeps no blank line between an entry's description and what follows, so the description
    also ends where an unpunctuated line meets a capitalised one ("OS architecture type" above
    "8.2 Next section"), unless the line stops on a word that cannot end a phrase ("of the")."""
    if rest:
        return [rest], index  # a PDF row with its description on the same line: the next line is not ours
    description: list[str] = []
    end = index
    while end + 1 < len(lines) and len(description) < 6:
        following = lines[end + 1].strip()
        if not following or _TYPED.match(following) or _synopsis_command(following) or _NUMBERED_HEADING.match(following):
            break
        last = description[-1].strip() if description else ""
        if last and following[:1].isupper() and not re.search(r"[.!?)]$", last) and not _OPEN_ENDING.search(last):
            break
        description.append(following)
        end += 1
    return description, end


def _parse_typed(lines: list[str], heading: str, topic: str) -> list[Record]:
    records: list[Record] = []
    parent_key = ""
    for index, line in enumerate(lines):
        match = _TYPED.match(line)
        if not match:
            parent = _PARENT_KEY.match(line)
            if parent or _synopsis_command(line):
                parent_key = parent.group("name") if parent else ""
            continue
        name, sep = match.group("name"), match.group("sep")
        kind = _typed_kind(name, sep)
        if not kind:
            continue
        description_lines, end = _typed_description(lines, index, match.group("rest"))
        if kind == "key" and sep == "=":
            owner, link = parent_key, "of"  # a property-string field belongs to the key above it
            if not owner:
                continue
            base_owner = _heading_owner(heading) or topic
            owner = f"{owner} in {base_owner}" if base_owner else owner
        elif kind == "key":
            parent_key = name
            owner, link = _heading_owner(heading) or topic, "in"
        else:
            owner, link = _command_above(lines, index) or _heading_owner(heading), "of"
        if not owner:
            continue
        type_text = match.group("type")[1:-1].strip()
        choices: tuple[str, ...] = ()
        if "|" in type_text:
            choices = tuple(part.strip() for part in type_text.split("|"))
            if not all(_CHOICE_TOKEN.match(c) for c in choices):
                continue
            value_type = "choice"
        else:
            value_type = type_text
        description = " ".join(description_lines)
        default = _unquote(match.group("default") or "")
        if re.search(r"\b(?:the default is|defaults? to|default value is)\b", description, re.IGNORECASE):
            default = ""  # "(default = 0)", then "For creation, the default is 1": which one holds is unclear
        records.append(
            Record(
                name=name,
                kind=kind,
                owner=owner,
                owner_link=link,
                first_line=index,
                last_line=end,
                source_text="\n".join(lines[index : end + 1]).strip(),
                value_type=value_type,
                low=match.group("low") or "",
                high=match.group("high") or "",
                choices=choices,
                default=default,
                description=_first_sentence(description),
            )
        )
    return records


# --- parser 2: man-page option lists ------------------------------------------------------------

_FLAG = r"-{1,2}[A-Za-z0-9?][\w-]*(?:=?(?:[A-Z][A-Z_0-9]*|<[^<>]+>|\[[^\[\]]+\]|[a-z]+(?:\|[a-z]+)+))?(?: (?:[a-z][\w:]*|[A-Z][A-Z_0-9]*|<[^<>]+>|\[[^\[\]]+\]\S*))?"
_FLAGS = rf"{_FLAG}(?:,\s*{_FLAG})*"
_FLAG_INLINE = re.compile(rf"^(?P<indent> +)(?P<flags>{_FLAGS}) {{2,}}(?P<desc>\S.*)$")
_FLAG_ALONE = re.compile(rf"^(?P<indent> *)(?P<flags>{_FLAGS})\s*$")


def _flag_name(flags: str) -> str:
    names = [re.split(r"[= ]", flag.strip(), maxsplit=1)[0] for flag in flags.split(",")]
    long_names = [n for n in names if n.startswith("--")]
    return (long_names or names)[0]


def _indented_block(lines: list[str], index: int) -> int:
    """Last line of the paragraph(s) indented deeper than ``lines[index]``; ``index`` when there are none.

    The paragraph's own indentation counts too (less a little: joined words shift a line by one),
    because a chunk's first line has lost its indentation to the chunker's strip."""
    following = next((line for line in lines[index + 1 : index + 3] if line.strip()), "")
    base = max(_indent(lines[index]), _indent(following) - 2)
    end = index
    for probe in range(index + 1, min(len(lines), index + 1 + _MAX_DESCRIPTION_LINES)):
        line = lines[probe]
        if not line.strip():
            continue
        if _indent(line) <= base:
            break
        end = probe
    return end


def _parse_flags(lines: list[str], heading: str, topic: str) -> list[Record]:
    records: list[Record] = []
    for index, line in enumerate(lines):
        inline = _FLAG_INLINE.match(line)
        alone = None if inline else _FLAG_ALONE.match(line)
        if inline:
            end = index
            body = inline.group("desc")
            flags = inline.group("flags")
            # a wrapped summary line continues deeper than the flags column
            while end + 1 < len(lines) and lines[end + 1].strip() and _indent(lines[end + 1]) >= len(line) - len(body):
                end += 1
                body += " " + lines[end]
        elif alone:
            end = _indented_block(lines, index)
            if end == index:
                continue
            flags = alone.group("flags")
            body = "\n".join(lines[index + 1 : end + 1])
        else:
            continue
        owner = _command_above(lines, index) or _heading_owner(heading) or topic
        if not owner:
            continue
        value_type, low, high = _range_in(body)
        records.append(
            Record(
                name=_flag_name(flags),
                kind="option",
                owner=owner,
                owner_link="of",
                first_line=index,
                last_line=end,
                source_text="\n".join(lines[index : end + 1]).strip(),
                choices=_choices_in(body),
                value_type=value_type or _type_in(body),
                low=low,
                high=high,
                default=_default_in(body, one_line=bool(inline)),
                description=_first_sentence(body if inline else _first_paragraph(lines, index, end)),
            )
        )
    return records


def _first_paragraph(lines: list[str], index: int, end: int) -> str:
    paragraph: list[str] = []
    for line in lines[index + 1 : end + 1]:
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line)
    return " ".join(paragraph)


# --- parser 3: keyword references and environment variables (term line, indented paragraph) ------

_KEYWORD = re.compile(r"^(?P<indent> *)(?P<name>[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*)\s*$")
_SETTING = re.compile(r"^(?P<indent> *)(?P<name>[A-Z][A-Za-z0-9]*=)\s*$")
_ENV_TERM = re.compile(r"^(?P<indent> +)\$?(?P<name>[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)\s*$")
_SECTION = re.compile(r"^[A-Z][A-Z ]+$")  # man-page section headings: "ENVIRONMENT", "OPTIONS"


def _section_of(lines: list[str], index: int, heading: str) -> str:
    for line in reversed(lines[:index]):
        if _SECTION.match(line):
            return line.strip()
    return heading.strip()


def _parse_terms(lines: list[str], heading: str, topic: str) -> list[Record]:
    candidates: list[tuple[int, str, str, int]] = []  # (index, name, kind, end)
    for index, line in enumerate(lines):
        in_environment = "ENVIRONMENT" in _section_of(lines, index, heading).upper()
        matched = None
        kind = ""
        if in_environment and (matched := _ENV_TERM.match(line)):
            kind = "env_var"
        elif matched := _SETTING.match(line):
            kind = "setting"
        elif matched := _KEYWORD.match(line):
            kind = "keyword"
        if not matched or index and lines[index - 1].rstrip().endswith(","):
            continue  # the last line of a wrapped list of terms ("MaxLevelKMsg=, MaxLevelConsole=,\nMaxLevelWall=")
        end = _indented_block(lines, index)
        if end > index:
            candidates.append((index, matched.group("name"), kind, end))
    # a lone indented word above a paragraph may be a subsection title: keep keywords only in a list of
    # two or more, at one indentation, where at least one has an inner capital (AllowTcpForwarding)
    # (a chunk's first line has lost its indentation to the chunker's strip)
    keywords = [c for c in candidates if c[2] == "keyword"]
    indents = {_indent(lines[c[0]]) for c in keywords if c[0] > 0}
    keyword_list = len(keywords) >= 2 and len(indents) <= 1 and any(
        re.search(r"[a-z][A-Z]", c[1]) for c in keywords
    )
    records: list[Record] = []
    owner = _heading_owner(heading) or topic
    if not owner:
        return records
    for index, name, kind, end in candidates:
        if kind == "keyword" and not keyword_list:
            continue
        body = "\n".join(lines[index + 1 : end + 1])
        value_type, low, high = _range_in(body)
        records.append(
            Record(
                name=name,
                kind=kind,
                owner=owner,
                owner_link="in",
                first_line=index,
                last_line=end,
                source_text="\n".join(lines[index : end + 1]).strip(),
                choices=_choices_in(body) if kind != "env_var" else (),
                value_type=value_type or _type_in(body) if kind != "env_var" else "",
                low=low if kind != "env_var" else "",
                high=high if kind != "env_var" else "",
                default=_default_in(body) if kind != "env_var" else "",
                description=_first_sentence(_first_paragraph(lines, index, end)),
            )
        )
    return records


# --- parser 4: tables flattened by a PDF (one row a line, captions "Table N.M: ...") ---------------

_PACKAGE_HEADER = re.compile(r"^package popcon size description$")
# the PDF sometimes loses the space after the name: "unattended-upgradesV:297, I:462 301 ..."
_PACKAGE_ROW = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]+) ?(?:V:\d+, )?I:\d+ \d+ (?P<desc>\S.*)$")
_OPTION_HEADER = re.compile(r"^(?:command )?option (?:description|meaning|function)$")
_OPTION_ROW = re.compile(r"^(?P<name>-{1,2}[A-Za-z0-9][\w-]*) (?P<desc>[a-z].*)$")
_CAPTION = re.compile(r"^Table \d+(?:\.\d+)*: (?P<caption>.+)$")
_MAN_REFERENCE = re.compile(r"\b([a-z][\w.-]*)\(\d\)")


def _table_rows(lines: list[str], start: int, row: re.Pattern[str]) -> tuple[list[tuple[int, int, re.Match[str], str]], int]:
    """Rows after a header line: (first line, last line, match, description with wrapped lines); end."""
    rows: list[tuple[int, int, re.Match[str], str]] = []
    index = start + 1
    while index < len(lines):
        line = lines[index].strip()
        match = row.match(line)
        if match:
            rows.append((index, index, match, match.group("desc")))
        elif rows and line and not _CAPTION.match(line) and not _SECTION.match(line):
            first, _, first_match, description = rows[-1]
            rows[-1] = (first, index, first_match, f"{description} {line}")
        else:
            break
        index += 1
    return rows, index


def _parse_tables(lines: list[str], heading: str, topic: str) -> list[Record]:
    records: list[Record] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        is_packages = bool(_PACKAGE_HEADER.match(stripped))
        if not is_packages and not _OPTION_HEADER.match(stripped):
            continue
        rows, after = _table_rows(lines, index, _PACKAGE_ROW if is_packages else _OPTION_ROW)
        caption_match = _CAPTION.match(lines[after].strip()) if after < len(lines) else None
        caption = caption_match.group("caption") if caption_match else ""
        if is_packages:
            owner, link, kind = caption, "in", "table_row"
        else:
            commands = set(_MAN_REFERENCE.findall(caption))
            if len(commands) != 1:
                continue  # an option table needs its command, and only its caption names it
            owner, link, kind = commands.pop(), "of", "option"
        for first, last, match, description in rows:
            records.append(
                Record(
                    name=match.group("name"),
                    kind=kind,
                    owner=owner,
                    owner_link=link,
                    first_line=first,
                    last_line=last,
                    source_text="\n".join(lines[first : last + 1]).strip(),
                    description=_normalize(description),
                )
            )
    return records


_PARSERS = (_parse_typed, _parse_flags, _parse_terms, _parse_tables)


def parse_records(text: str, heading: str = "", topic: str = "") -> list[Record]:
    """The records of a chunk's reference layouts, in text order; a line belongs to one record at most."""
    lines = text.expandtabs().splitlines()
    taken: set[int] = set()
    records: list[Record] = []
    for parser in _PARSERS:
        for record in parser(lines, heading, topic):
            span = set(range(record.first_line, record.last_line + 1))
            if record.first_line in taken:
                continue
            records.append(record)
            taken |= span
    return sorted(records, key=lambda r: r.first_line)


def consumed_lines(text: str, heading: str = "", topic: str = "") -> set[int]:
    """Indices into ``text.splitlines()`` of the lines read as records (the prose fact picker skips them)."""
    return {i for r in parse_records(text, heading, topic) for i in range(r.first_line, r.last_line + 1)}


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

    def add(kind: str, question: str, sentence: str) -> None:
        if kind in wanted:
            facts.append(StructuredFact(sentence, record.source_text, record.name, [(kind, question)], record.first_line, record.last_line))

    if record.kind == "table_row":
        if record.description:
            where = f" in the {_lower_first(record.owner)}" if record.owner else ""
            add("table_entry", f"What is the package {record.name}?", f"The package {record.name} is described{where} as \"{record.description.rstrip('.')}\".")
        return facts
    if record.kind == "env_var":
        predicate = _predicate(record.description)
        if record.name in record.description.split() or f"${record.name}" in record.description:
            sentence = record.description
        elif predicate:
            sentence = f"In {record.owner}, the environment variable {record.name} {predicate}."
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
    predicate = _predicate(record.description)
    if predicate:
        add("option_purpose", f"What does {reference} do?", f"{_subject(record)} {predicate}.")
    return facts


def structured_facts(text: str, heading: str, topic: str, kinds: Iterable[str]) -> list[StructuredFact]:
    """Answer sentences and questions from the reference layouts of one chunk (``kinds`` from KINDS)."""
    wanted = set(kinds)
    return [fact for record in parse_records(text, heading, topic) for fact in _facts(record, wanted)]


def unambiguous(facts: Iterable[StructuredFact]) -> list[StructuredFact]:
    """Facts whose question no other sentence answers differently, each question once.

    Two defaults or ranges for one question ("the default of --bwlimit of pct" under two commands) mean
    the owner was not resolved precisely enough: neither answer is safe. Two descriptions of one entry
    (a summary line and its full paragraph) are both right: the first is kept."""
    facts = list(facts)
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
            kept.append(StructuredFact(fact.sentence, fact.source_text, fact.name, questions, fact.first_line, fact.last_line))
    return kept
