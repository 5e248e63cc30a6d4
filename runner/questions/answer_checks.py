"""Does an answer answer its question? Deterministic checks, no model.

A question's form says what its answer must hold: "which command" a command, "how many / how long /
what size" a number, "what is the default" a value, "how do I / how to" a procedure or a command,
"which file / where" a path. A pair whose answer lacks it ("How to create a linked clone of a template?"
-> "For CT templates, we try to create a linked clone by default.") is dropped with the reason
``answer_type:<kind>``. Questions of other forms are not judged here.

``debris`` finds what a real PDF leaves in a text: reference-table syntax, a table caption or a shell
session glued into a sentence, ligature characters and words split at a line end; its share among kept
answers is logged on every run as a quality proxy. An answer that points elsewhere ("... is described in
Section 2.1.4") or only announces a list ("There are 3 key factors which ...") answers nothing either.
"""

from __future__ import annotations

import re
from typing import Optional

_NUMBER_WORDS = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|thousand|million|once|twice|half|single|double)"
_NUMBER = re.compile(rf"\d|\b{_NUMBER_WORDS}\b", re.IGNORECASE)
_FLAG = r"(?<![\w-])--?[A-Za-z][\w-]*"
_PATH = re.compile(r"(?:~|\.{0,2})?/[\w.@%+-]+(?:/[\w.@%<>{}*+-]*)*|\b[\w-]+\.(?:conf|cfg|toml|ya?ml|json|ini|xml|txt|log|sh|py|service|socket|timer|d)\b")
_CODE_SPAN = re.compile(r"`[^`]+`")
# "command qsctl", "run qsctl ...", "use apt-get", "with systemctl restart": a word the sentence calls a command
# after "use / using / with / via" the word must look like a command: a man-page name ("screen(1)"), a quoted
# command line, or words followed by a flag or a placeholder ("with qsctl dlq replay orders --max 1000");
# "use experimental archive", "with other system via network" and "with PID" call nothing
_QUOTED = r"[`'\"\u201c\u201d\u2018\u2019][^`'\"\u201c\u201d\u2018\u2019]+[`'\"\u201c\u201d\u2018\u2019]"
_CALLED_COMMAND = re.compile(
    r"\b(?:command|commands|run|running|runs|execute|type|invoke|call)\s+[`'\"\u201c\u201d]?[a-z][\w.+-]*(?:\s+[a-z][\w.-]*)*\s*(?:"
    + _FLAG + r"|<[\w-]+>|[a-z][\w.-]*)"
    r"|\b(?:use|using|with|via)\s+(?:the\s+)?(?:" + _QUOTED + r"|[a-z][\w.+-]*\(\d\w*\)|[a-z][\w.+-]*(?:\s+[a-z][\w.-]*)*\s+(?:" + _FLAG + r"|<[\w-]+>))",
    re.IGNORECASE,
)
# an answer that only says where the fact is ("The non-free-firmware area is described in Section 2.1.4.",
# "You are advised to read the LSM framework document at kernel.org.") states nothing a reader could check
# ("... are described in the Filesystem Hierarchy Standard (...)"); "is described in the list of X as "..."" states
# what the list says, so a following "as" keeps it
_POINTS_ELSEWHERE = re.compile(
    r"\b(?:is|are)\s+(?:described|explained|defined|discussed|covered|documented|listed)\s+(?:in|at|on)\s+(?![^.;]*\s+as\s+[\"'\u201c\u201d])"
    r"|^(?:See|Refer to|Read|Consult|You are (?:advised|encouraged) to read|For (?:details|more information),? see)\b"
)
# "There are 3 key factors which determine ...": the sentence announces a list that follows it; it answers
# "how many" and nothing else
_ANNOUNCES = re.compile(
    r"^\s*(?:There\s+(?:are|is)|We\s+have)\s+(?:\w+\s+)?(?:\d+|two|three|four|five|six|seven|eight|nine|ten|several|many|a\s+few|a\s+number\s+of)\s",
    re.IGNORECASE,
)


def points_elsewhere(answer: str) -> bool:
    return bool(_POINTS_ELSEWHERE.search(answer.strip()))


def announces_list(question: str, answer: str) -> bool:
    """The answer only announces a list ("There are 2 resources available ...") and the question is not "how many"."""
    return bool(_ANNOUNCES.search(answer)) and not re.match(r"\s*how\s+many\b", question, re.IGNORECASE)


_IMPERATIVE = re.compile(
    r"(?:^|[.;:]\s+|\bthen\s+|\bfirst,?\s+)(?:run|use|set|create|add|open|edit|click|select|enable|disable|start|stop|restart|install|"
    r"remove|delete|configure|call|type|pass|specify|change|mount|copy|move|upload|download|enter|press|choose|define|write|"
    r"place|put|append|assign|register|apply|load|unload|reload|attach|detach|initialize|connect|log in|sign in)\b",
    re.IGNORECASE,
)
_VALUE = re.compile(
    rf"\bdefaults?\s*(?:to|is|=|:|value is|setting is)\s*\S|\(\s*default\s*[=:]\s*\S|\d|{_FLAG}|`[^`]+`|"
    r"\b(?:true|false|yes|no|on|off|enabled?|disabled?|none|null|empty|unset|unlimited|auto(?:matic)?)\b|"
    r"\b[a-z]+[._][a-z0-9_.]+\b|\"[^\"]+\"|'[^']+'",
    re.IGNORECASE,
)
_VERSION = re.compile(r"\b\d+(?:\.\d+)+\b|\b(?:release|version|v)\s*\d+", re.IGNORECASE)

# question forms, most specific first: (kind, pattern)
_FORMS = (
    ("command", re.compile(r"\b(?:which|what)\s+(?:is\s+the\s+|are\s+the\s+)?(?:\w+\s+)?(?:command|cli command|subcommand|tool|utility|program)s?\b", re.IGNORECASE)),
    ("version", re.compile(r"\b(?:which|what|in which|since which)\s+(?:release|version)\b", re.IGNORECASE)),
    ("path", re.compile(r"\b(?:which|what)\s+(?:\w+\s+)?(?:file|path|directory|folder|log file|config(?:uration)? file)s?\b|\bwhere\s+(?:is|are|does|do|must|should)\b", re.IGNORECASE)),
    ("value", re.compile(r"\b(?:what|which)\s+is\s+the\s+default\b|\bdefault\s+(?:value|setting)\b|\bby default\b.*\bwhat\b|\bwhat\b.*\bdefaults? to\b", re.IGNORECASE)),
    ("quantity", re.compile(r"\bhow\s+(?:many|much|long|often|large|big|small|fast|old|far)\b|\bwhat\s+(?:\w+\s+)?(?:size|number|amount|limit|maximum|minimum|port|timeout|interval|duration|percentage|rate)\b|\bwhich\s+port\b", re.IGNORECASE)),
    ("procedure", re.compile(r"^\s*how\s+(?:do|does|can|should|would|could|must|to)\b|^\s*how\s+is\s+.+\s+(?:done|set|configured|enabled|disabled|created|changed)\b", re.IGNORECASE)),
)


def expected_answer(question: str) -> Optional[str]:
    """What the question's form asks for: command | version | path | value | quantity | procedure, or None."""
    for kind, pattern in _FORMS:
        if pattern.search(question):
            return kind
    return None


def has_command(answer: str) -> bool:
    return bool(_CODE_SPAN.search(answer) or re.search(_FLAG, answer) or _CALLED_COMMAND.search(answer))


_CHECKS = {
    "command": has_command,
    "version": lambda a: bool(_VERSION.search(a)),
    "path": lambda a: bool(_PATH.search(a)),
    "value": lambda a: bool(_VALUE.search(a)),
    "quantity": lambda a: bool(_NUMBER.search(a)),
    # a procedure is an instruction or a command the sentence calls ("Run ...", "with qsctl ..."); a flag
    # named in passing ("If --lanes is omitted, ...") is none
    "procedure": lambda a: bool(_IMPERATIVE.search(a) or _CODE_SPAN.search(a) or _CALLED_COMMAND.search(a)),
}


def type_mismatch(question: str, answer: str) -> Optional[str]:
    """The kind the answer lacks ("command", ...) when the question's form asks for one it does not hold."""
    kind = expected_answer(question)
    if kind is None or _CHECKS[kind](answer):
        return None
    return kind


_TABLE_SYNTAX = re.compile(r"\|.*\||<\w+>\s*(?:\(|$)|\(\s*default\s*=|\(\s*\d+\s*-\s*(?:\d+|N)\s*\)|^\s*[\w-]+:\s*<\w+>")
# a table or figure caption glued to the sentence after it ("Table 4.3: List of commands ... You may need ...")
_CAPTION = re.compile(r"\b(?:Table|Figure|Listing|Example)\s+\d+(?:[.-]\d+)*\s*:\s")
# a shell session flattened into a sentence ("type the following. $ cd package_name $ pager README.Debian")
_SHELL_SESSION = re.compile(r"(?:^|\s)\$\s+[a-z][\w.-]*")
_LIGATURE = re.compile("[\ufb00-\ufb06]")
# "con- troller", "config- uration": a word broken at a line end and glued back with a space
_SPLIT_WORD = re.compile(r"\b[a-z]{2,}- [a-z]{2,}\b")


def debris(text: str) -> Optional[str]:
    """What PDF debris a text holds: table | caption | shell | ligature | split_word, or None."""
    if _TABLE_SYNTAX.search(text):
        return "table"
    if _CAPTION.search(text):
        return "caption"
    if _SHELL_SESSION.search(text):
        return "shell"
    if _LIGATURE.search(text):
        return "ligature"
    if _SPLIT_WORD.search(text):
        return "split_word"
    return None


# debris that garbles what an answer says; ligatures and split words are only counted (text_clean repairs them)
_DROPPED_DEBRIS = ("table", "caption", "shell")


# an answer ends like a sentence; a list item, a table row or a cut line does not ("SSH server (secure)
# openssh-client V:856, I:997 5609 ssh -X SSH client (secure)", "Create a chroot ... in advance (see Section 9.11)")
_SENTENCE_CLOSE = re.compile(r"[.!?][)\]\"'\u201d\u2019`]*\s*$")


def is_fragment(answer: str) -> bool:
    return not _SENTENCE_CLOSE.search(answer.strip())


def drop_reason(question: str, answer: str) -> Optional[str]:
    """Why a pair whose answer does not answer is dropped: answer_type:<kind> | fragment |
    debris_<table|caption|shell> | points_elsewhere | announces_list. The type check comes first: the answer
    stage's type-match share counts every typed question whose answer is not ``answer_type:``."""
    lacking = type_mismatch(question, answer)
    if lacking:
        return f"answer_type:{lacking}"
    if is_fragment(answer):
        return "fragment"
    found = debris(answer)
    if found in _DROPPED_DEBRIS:
        return f"debris_{found}"
    if points_elsewhere(answer):
        return "points_elsewhere"
    if announces_list(question, answer):
        return "announces_list"
    return None
