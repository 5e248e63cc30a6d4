"""Deterministic questions about the identifiers a manual explains: a config key's default value,
the cause of an error or warning code, what an environment variable is for.

A small model garbles questions about exactly these details ("What is the QSR-W510's name?"),
while the sentence that defines the identifier answers a fixed question about it every time.
A question is written only when one sentence of the whole corpus explains the identifier that
way, so the sentence is the complete answer (``generate.templates`` picks the kinds; [] = none).

The forms are the common ones of real manuals, not one manual's phrasing: "X defaults to Y",
"X (default: Y)", "the default value of X is Y", "For X, the default is Y"; "error QSR-4090",
"error code 0x80070005", "warning W0612", "fails with ENOSPC", "a (ENOSPC) error"; "the environment
variable $NAME", "the NAME environment variable", and in a section about the environment, a
sentence whose subject is ``$NAME`` or ``NAME=``. Reference layouts (option tables, keyword lists)
are read by runner/documents/structure.py, whose kinds are listed here too so one list validates the config.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.documents.structure import KINDS as STRUCTURE_KINDS

_Q = "[`\"'\u201c\u201d\u2018\u2019]?"  # an identifier may stand in quotes or backticks
_KEY = r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+"
# what a sentence can name as the subject of a default: node.id, --lanes, max_conn, TimeoutSec=
_SUBJECT = rf"(?:{_KEY}|--[a-z][a-z0-9-]*[a-z0-9]|[a-z][a-z0-9]*_[a-z0-9_]*[a-z0-9]|[A-Z][A-Za-z0-9]+=)"
_SUBJECT_ALONE = rf"(?<![\w.-])`?({_SUBJECT})(?![\w.-])`?"
# "The key node.id is an integer between 1 and 65535 and defaults to 1": the key, then its default, with
# no other subject and no pronoun between them ("StandardInputData= are set, in which case it defaults
# to data" is about another key)
_BETWEEN = rf"(?:(?!(?<![\w.-]){_SUBJECT}(?![\w.-])|\b(?:it|they|this|these)\b)[^.;])"
_DEFAULT = re.compile(rf"{_SUBJECT_ALONE}{_BETWEEN}{{0,60}}?(?:\bdefaults? to\b|\((?:default|defaults to)\b)")
# "the default is" names no subject of its own: only "The default value of X is" and "For X, the default is"
# here the grammar names the subject, so a name in capitals counts too ("The default value of IFS is ...")
_NAMED = rf"(?:{_SUBJECT}|\$?[A-Z][A-Z0-9_]+)"
_DEFAULT_OF = re.compile(rf"\b[Tt]he default(?: value)? (?:of|for) {_Q}({_NAMED}){_Q} is\b|\b[Ff]or {_Q}({_NAMED}){_Q},? the default(?: value)? is\b")

_CODE_TOKEN = r"(?:[A-Z]{2,}-W?\d+|[A-Z]{1,4}\d{3,5}|0x[0-9A-Fa-f]{4,8})"
_CODE = re.compile(rf"\b(error|warning)(?: code)?:? {_Q}({_CODE_TOKEN})\b")
# "an E1234 error", "a (QSR-4090) error"; not "the ELOOP error that can occur in this case"
_CODE_BEFORE = re.compile(rf"(?:\ban? \(?|\()({_CODE_TOKEN})\)? (error|warning)\b")
# errno names: a fixed list, since "fails with ERROR" or "an EOF error" are no error codes
_ERRNO_NAMES = (
    "EPERM|ENOENT|ESRCH|EINTR|EIO|ENXIO|E2BIG|ENOEXEC|EBADF|ECHILD|EAGAIN|ENOMEM|EACCES|EFAULT|EBUSY|EEXIST|"
    "EXDEV|ENODEV|ENOTDIR|EISDIR|EINVAL|ENFILE|EMFILE|ENOTTY|ETXTBSY|EFBIG|ENOSPC|ESPIPE|EROFS|EMLINK|EPIPE|"
    "EDOM|ERANGE|EDEADLK|ENAMETOOLONG|ENOLCK|ENOSYS|ENOTEMPTY|ELOOP|EWOULDBLOCK|ENOTSUP|EOPNOTSUPP|EADDRINUSE|"
    "EADDRNOTAVAIL|ENETDOWN|ENETUNREACH|ECONNABORTED|ECONNRESET|ENOBUFS|EISCONN|ENOTCONN|ETIMEDOUT|"
    "ECONNREFUSED|EHOSTUNREACH|EALREADY|EINPROGRESS|ESTALE|EDQUOT|ECANCELED|EOVERFLOW|EPROTO|EMSGSIZE"
)
_ERRNO = re.compile(
    rf"(?:\b(?:fails?|failed|aborts?|exits?) with|\breturns?|\berrno(?: is set to| to)?|\berror(?: code)?) {_Q}({_ERRNO_NAMES}){_Q}(?!\w)"
    rf"|(?:\ban? \(?|\()({_ERRNO_NAMES})\)? error\b"
)

# QSR_PROFILE, $LANG, $http_proxy; not a prefix such as QSR_
_VAR = r"(?:\$?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*|\$[a-z_][a-z0-9_]*)(?![\w])"
_ENV_VAR = re.compile(rf"\benvironment variables? {_Q}({_VAR}){_Q}")
_ENV_VAR_BEFORE = re.compile(rf"{_Q}({_VAR}){_Q} environment variable\b")
# in a section about the environment: "$HOME is set to ...", "LANG=C selects ..."
_ENV_SUBJECT = re.compile(
    rf"^(?:The )?{_Q}(\$[A-Za-z_][A-Za-z0-9_]*|[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]|[A-Z][A-Z0-9_]*(?==)){_Q}(?:=\S*)?"
    r" (?:is|are|sets|specifies|selects|controls|overrides|defines|holds|contains|names|points|gives|tells|enables|disables)\b"
)
# a sentence that explains a variable says what it does or what sets it ("is always accepted" does not)
_ENV_PURPOSE = re.compile(
    r"\b(?:use[ds]?|using|sets?|setting|override\w*|select\w*|control\w*|specif\w*|contain\w*|identif\w*|points? to|"
    r"enable\w*|disable\w*|determin\w*|defin\w*|customi[sz]\w*|supplement\w*|holds?|stores?|tells?|export\w*|reads?|given|passe[ds]|"
    r"locat\w*|configur\w*)\b"
)
# "You may also control this setting via the RSYNC_OLD_ARGS environment variable": which setting?
_LEANS_ON_CONTEXT = re.compile(r"\bthis (?:setting|option|parameter|feature|behaviou?r|value)\b| it\.$")
# words written in capitals that are no variable names
_NOT_VARS = frozenset({"THE", "AND", "FOR", "NOT", "ALL", "API", "CLI", "URL", "TCP", "UDP", "IP"})

SENTENCE_KINDS = ("default_value", "error_code", "env_var")
KINDS = SENTENCE_KINDS + tuple(kind for kind in STRUCTURE_KINDS if kind not in SENTENCE_KINDS)
# a sentence that leans on the one before it ("Without it, the request fails ...") is no complete answer
_DEPENDENT = re.compile(r"^(?:It|Its|This|These|They|Their|Without it|With it|In that case)\b")


@dataclass(frozen=True)
class TemplateQuestion:
    kind: str
    identifier: str
    question: str
    sentence: str


def _defaults(sentence: str) -> Iterable[TemplateQuestion]:
    keys = [m.group(1) for m in _DEFAULT.finditer(sentence)] + [m.group(1) or m.group(2) for m in _DEFAULT_OF.finditer(sentence)]
    for key in dict.fromkeys(keys):
        yield TemplateQuestion("default_value", key, f"What is the default value of {key}?", sentence)


def _codes(sentence: str, topic: str) -> Iterable[TemplateQuestion]:
    found = [(m.group(1), m.group(2)) for m in _CODE.finditer(sentence)]
    found += [(m.group(2), m.group(1)) for m in _CODE_BEFORE.finditer(sentence)]
    for kind, code in dict.fromkeys(found):
        verb = "return" if kind == "error" else "log"
        yield TemplateQuestion("error_code", code, f"When does {topic} {verb} {kind} {code}?", sentence)
    for errno in dict.fromkeys(m.group(1) or m.group(2) for m in _ERRNO.finditer(sentence)):
        yield TemplateQuestion("error_code", errno, f"When does {topic} fail with {errno}?", sentence)


def _env_vars(sentence: str, heading: str) -> Iterable[TemplateQuestion]:
    if sentence.startswith("Note") or _LEANS_ON_CONTEXT.search(sentence) or not _ENV_PURPOSE.search(sentence):
        return  # a caveat ("Note that setting $LESS has no effect ..."), a reference to context, or no purpose
    names = [m.group(1) for m in _ENV_VAR.finditer(sentence)] + [m.group(1) for m in _ENV_VAR_BEFORE.finditer(sentence)]
    if "environment" in heading.lower() and (subject := _ENV_SUBJECT.match(sentence)):
        names.append(subject.group(1))
    for name in dict.fromkeys(n.lstrip("$") for n in names):
        if len(name) >= 3 and name not in _NOT_VARS:
            yield TemplateQuestion("env_var", name, f"What is the environment variable {name} used for?", sentence)


def _candidates(sentence: str, topic: str, heading: str) -> Iterable[TemplateQuestion]:
    yield from _defaults(sentence)
    yield from _codes(sentence, topic)
    yield from _env_vars(sentence, heading)


def template_questions(
    sentences: Iterable[str], topic: str, kinds: Iterable[str], headings: Mapping[str, str] | None = None
) -> dict[str, list[TemplateQuestion]]:
    """{sentence: its template questions}, for identifiers that exactly one distinct sentence explains.

    ``sentences`` are the clean sentences of the whole corpus (repeats from chunk overlap are fine);
    ``headings`` maps a sentence to its section heading (only "environment" sections use it)."""
    wanted = set(kinds)
    headings = headings or {}
    by_identifier: dict[tuple[str, str], set[str]] = defaultdict(set)
    found: list[TemplateQuestion] = []
    for sentence in dict.fromkeys(sentences):
        if _DEPENDENT.match(sentence):
            continue
        for candidate in _candidates(sentence, topic, headings.get(sentence, "")):
            if candidate.kind in wanted:
                by_identifier[(candidate.kind, candidate.identifier)].add(sentence)
                found.append(candidate)
    by_sentence: dict[str, list[TemplateQuestion]] = defaultdict(list)
    for candidate in found:
        if len(by_identifier[(candidate.kind, candidate.identifier)]) == 1:
            by_sentence[candidate.sentence].append(candidate)
    return dict(by_sentence)
