"""The parsers of reference layouts (typed option tables, man-page option lists, keyword references,
tables a PDF flattened), each yielding records; ``parse_records`` runs them all on a chunk."""

from __future__ import annotations

import re
from typing import Any

from runner.documents.structure.records import (
    Record,
    _CHOICE_TOKEN,
    _MAX_DESCRIPTION_LINES,
    _choices_in,
    _command_above,
    _default_in,
    _first_sentence,
    _heading_owner,
    _indent,
    _normalize,
    _range_in,
    _synopsis_command,
    _type_in,
    _unquote,
)

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


def _located(lines: list[str], first: int, last: int) -> dict[str, Any]:
    """A record's place in its text: its first and last line, and those lines as its source text."""
    return {"first_line": first, "last_line": last, "source_text": "\n".join(lines[first : last + 1]).strip()}


def _typed_kind(name: str, sep: str) -> str:
    if name.startswith("--"):
        return "option" if sep.strip() == "" else ""
    if name.startswith("<"):
        return "argument" if sep.startswith(":") else ""
    return "key" if sep.startswith(":") or sep == "=" else ""


_NUMBERED_HEADING = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s+[A-Z]")
# "[RULES]", "[OPTIONS]": a section marker inside a reference table, never part of a description
_SECTION_MARKER = re.compile(r"^\s*\[[A-Za-z][\w .-]*\]\s*$")
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
        if _SECTION_MARKER.match(following):
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
                **_located(lines, index, end),
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
                **_located(lines, index, end),
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
                **_located(lines, index, end),
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
                    **_located(lines, first, last),
                    description=_normalize(description),
                )
            )
    return records


# --- parser 5: Markdown pipe tables (HTML, DOCX and EPUB converted in runner/documents/markup.py) --

_PIPE_ROW = re.compile(r"^\s*\|(?P<cells>.*)\|\s*$")
_PIPE_RULE = re.compile(r"^\s*\|(?:\s*:?-{3,}:?\s*\|)+\s*$")
# the title above a converted table: "Table 1.1. List of ..." (DocBook) or "Table 2: ..."
_PIPE_CAPTION = re.compile(r"^\**Table\s+\d+(?:\.\d+)*[.:]\s+(?P<caption>.+?)\**$")
_OPTION_COLUMNS = ({"option", "command option"}, {"description", "meaning", "function"})


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", _PIPE_ROW.match(line).group("cells"))
    return [_unquote(cell.strip().strip("*").replace("\\|", "|")) for cell in cells]


def _pipe_caption(lines: list[str], header: int) -> str:
    """The caption line just above a table's header (blank lines between allowed)."""
    index = header - 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    found = _PIPE_CAPTION.match(lines[index].strip()) if index >= 0 else None
    return found.group("caption") if found else ""


def _pipe_table_kind(columns: list[str], caption: str) -> tuple[str, str, str]:
    """(kind, owner, owner_link) of a table the PDF parser also reads (package lists, option tables), else kind ""."""
    if len(columns) >= 2 and columns[0] in ("package", "packages") and "popcon" in columns and columns[-1] == "description":
        return "table_row", caption, "in"
    if len(columns) == 2 and columns[0] in _OPTION_COLUMNS[0] and columns[1] in _OPTION_COLUMNS[1]:
        commands = set(_MAN_REFERENCE.findall(caption))
        if len(commands) == 1:  # an option table needs its command, and only its caption names it
            return "option", commands.pop(), "of"
    return "", "", ""


def _parse_pipe_tables(lines: list[str], heading: str, topic: str) -> list[Record]:
    records: list[Record] = []
    for index in range(len(lines) - 1):
        if not _PIPE_ROW.match(lines[index]) or not _PIPE_RULE.match(lines[index + 1]):
            continue
        columns = [cell.lower() for cell in _cells(lines[index])]
        caption = _pipe_caption(lines, index)
        kind, owner, link = _pipe_table_kind(columns, caption)
        row = index + 2
        while kind and row < len(lines) and _PIPE_ROW.match(lines[row]):
            cells = _cells(lines[row])
            name, description = cells[0], cells[-1] if len(cells) == len(columns) else ""
            # ", ," in a Debian Reference row means "as above": no description of its own
            if name and re.search(r"[A-Za-z]", description) and (kind != "option" or name.startswith("-")):
                records.append(
                    Record(name=name, kind=kind, owner=owner, owner_link=link, **_located(lines, row, row), description=_normalize(description))
                )
            row += 1
    return records


_PARSERS = (_parse_typed, _parse_flags, _parse_terms, _parse_tables, _parse_pipe_tables)


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




# --- the attribution check: is each option given to the usage line its author wrote above it? -----

# what an author writes as a usage line, judged more loosely than the parsers do: command words, then only
# arguments, brackets, braces, options and placeholders, in any spacing (prose that mentions an option goes
# on with words)
_USAGE_TOKEN = r"(?:<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}|--?[A-Za-z][\w-]*(?:=\S+)?|[A-Z][A-Z_]*|\||\.\.\.|\u2026)"
_USAGE_LIKE = re.compile(rf"^\s*(?P<words>[a-z][\w.-]*(?: [a-z][\w.-]*){{0,4}})(?: *{_USAGE_TOKEN})+\s*$")
# a section heading: options under it belong to the document's command (or a table's caption's), not to a
# usage line before it
_SECTION_HEADING = re.compile(r"^\s*(?:[A-Z][A-Z ]{2,}|#{1,6} .+)$")


def _usage_above(lines: list[str], index: int) -> re.Match[str] | None:
    for line in reversed(lines[:index]):
        stripped = line.strip()
        if _SECTION_HEADING.match(line) or _OPTION_HEADER.match(stripped) or _PIPE_RULE.match(stripped):
            return None  # a section or a table starts a block of its own
        usage = _USAGE_LIKE.match(line)
        if usage and re.search(r"[<\[{]", line[usage.end("words"):]):
            return usage
    return None


def attribution_checks(text: str, heading: str = "", topic: str = "") -> list[tuple[Record, str]]:
    """(record, the command of the nearest usage-like line above it) for each option or argument record
    that has such a line above it; the record is attributed right when its owner is that command."""
    lines = text.expandtabs().splitlines()
    checks = []
    for record in parse_records(text, heading, topic):
        if record.kind not in ("option", "argument") or record.owner_link != "of":
            continue
        usage = _usage_above(lines, record.first_line)
        if usage:
            checks.append((record, usage.group("words")))
    return checks
