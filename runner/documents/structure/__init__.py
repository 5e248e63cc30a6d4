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

from runner.documents.structure.layouts import attribution_checks, consumed_lines, parse_records
from runner.documents.structure.records import KINDS, Record, StructuredFact
from runner.documents.structure.sentences import structured_facts, unambiguous

__all__ = [
    "KINDS", "Record", "StructuredFact", "attribution_checks", "consumed_lines", "parse_records", "structured_facts", "unambiguous",
]  # fmt: skip
