"""Reference layouts of real manuals read as records, and the template questions built from them.

Every excerpt below is copied from a document this project did not write; its source is named above it.
Man pages were rendered with ``groff -t -mandoc -Tutf8`` (no hyphenation, words split at a line end joined);
the Debian Reference was extracted with pypdfium2, which flattens its tables one row a line.
"""

from __future__ import annotations

from runner.documents.structure import KINDS, attribution_checks, consumed_lines, parse_records, structured_facts, unambiguous


def _qa(text: str, heading: str = "", topic: str = "", kinds: tuple[str, ...] = KINDS) -> list[tuple[str, str, str]]:
    return [(kind, question, fact.sentence) for fact in structured_facts(text, heading, topic, kinds) for kind, question in fact.questions]


# Proxmox VE, pct(1) "pct create" (proxmox/pve-docs generated/pct.1-synopsis.adoc, rendered as its PDF
# shows it: asciidoc markup removed, one entry line, then its description)
PCT_CREATE = """\
pct create <vmid> <ostemplate> [OPTIONS]
Create or restore a container.
<vmid>: <integer> (100 - 999999999)
The (unique) ID of the VM.
--arch <amd64 | arm64 | armhf | i386 | riscv32 | riscv64> (default = amd64)
OS architecture type.
--memory <integer> (16 - N) (default = 512)
Amount of RAM for the container in MB.
--unprivileged <boolean> (default = 0)
Makes the container run as unprivileged user. For creation, the default is 1. For restore, the default is the value from the backup. (Should not be modified manually.)"""

# Proxmox VE, pveceph(1) (proxmox/pve-docs, the pveceph synopsis, rendered the same way)
PVECEPH_POOL_CREATE = """\
pveceph pool create <name> [OPTIONS]
Create Ceph pool
--min_size <integer> (1 - 7) (default = 2)
Minimum number of available replicas per object to allow I/O"""


def test_typed_option_table_gives_default_range_and_purpose_of_each_option_of_its_command() -> None:
    assert _qa(PVECEPH_POOL_CREATE) == [
        (
            "option_default",
            "What is the default value of the option --min_size of pveceph pool create?",
            "The option --min_size of pveceph pool create defaults to 2.",
        ),
        (
            "option_range",
            "What range of values does the option --min_size of pveceph pool create accept?",
            "The option --min_size of pveceph pool create takes an integer from 1 to 7.",
        ),
        (
            "option_purpose",
            "What does the option --min_size of pveceph pool create do?",
            'The option --min_size of pveceph pool create is described as "Minimum number of available replicas per object to allow I/O".',
        ),
    ]
    records = {r.name: r for r in parse_records(PCT_CREATE)}
    assert records["<vmid>"].kind == "argument" and (records["<vmid>"].low, records["<vmid>"].high) == ("100", "999999999")
    assert records["--arch"].choices == ("amd64", "arm64", "armhf", "i386", "riscv32", "riscv64")
    assert all((r.owner, r.owner_link) == ("pct create", "of") for r in records.values())
    answers = {question: sentence for _, question, sentence in _qa(PCT_CREATE)}
    assert answers["What range of values does the option --memory of pct create accept?"] == "The option --memory of pct create takes an integer of at least 16."
    assert answers["Which values does the option --arch of pct create accept?"] == (
        "The option --arch of pct create takes one of amd64, arm64, armhf, i386, riscv32 or riscv64."
    )
    assert answers["What does the option --memory of pct create do?"] == 'The option --memory of pct create is described as "Amount of RAM for the container in MB".'
    assert answers["What does the option --unprivileged of pct create do?"] == 'The option --unprivileged of pct create is described as "Makes the container run as unprivileged user".'
    # "(default = 0)" but "For creation, the default is 1": no default question rather than a wrong one
    assert "What is the default value of the option --unprivileged of pct create?" not in answers


def test_a_pdf_row_with_its_description_on_the_same_line_and_a_property_field_under_its_key() -> None:
    # Proxmox VE administration guide rows as a PDF extractor returns them (quoted in issue 17), and the
    # qm.conf property string field size= below its key (proxmox/pve-docs, qm.conf options)
    text = "sockets: <integer> (1 - N) (default = 1) The number of CPU sockets.\nscsi[n]: [file=]<volume> [,size=<DiskSize>]\nsize=<DiskSize> Disk size."
    assert _qa(text, heading="Options", topic="Proxmox VE") == [
        ("option_default", "What is the default value of the key sockets in Proxmox VE?", "The key sockets in Proxmox VE defaults to 1."),
        ("option_range", "What range of values does the key sockets in Proxmox VE accept?", "The key sockets in Proxmox VE takes an integer of at least 1."),
        ("option_purpose", "What does the key sockets in Proxmox VE do?", 'The key sockets in Proxmox VE is described as "The number of CPU sockets".'),
        ("option_purpose", "What does the key size of scsi[n] in Proxmox VE do?", 'The key size of scsi[n] in Proxmox VE is described as "Disk size".'),
    ]
    assert [r.name for r in parse_records("--min_size <integer> (1 - 7) (default = 2)\nMinimum number of replicas")] == []  # no command: no record


# OpenSSH 9.2p1, sshd_config(5) (Debian package openssh-server 1:9.2p1-2+deb12u10)
SSHD_CONFIG = """\
     AddressFamily
             Specifies which address family should be used by sshd(8).  Valid
             arguments are any (the default), inet (use IPv4 only), or inet6
             (use IPv6 only).

     AllowAgentForwarding
             Specifies whether ssh-agent(1) forwarding is permitted.  The default
              is yes.  Note that disabling agent forwarding does not improve
              security unless users are also denied shell access, as they
             can always install their own forwarders.
"""
# OpenSSH 9.2p1, ssh_config(5) (Debian package openssh-client)
SSH_CONFIG = """\
     Compression
             Specifies whether to use compression.  The argument must be yes
             or no (the default).

     ConnectionAttempts
             Specifies the number of tries (one per second) to make before exiting.
               The argument must be an integer.  This may be useful in
             scripts if the connection sometimes fails.  The default is 1.
"""


def test_keyword_reference_defaults_choices_and_purpose() -> None:
    assert _qa(SSHD_CONFIG, topic="sshd_config") == [
        ("option_default", "What is the default value of the keyword AddressFamily in sshd_config?", "The keyword AddressFamily in sshd_config defaults to any."),
        (
            "option_purpose",
            "What does the keyword AddressFamily in sshd_config do?",
            'The keyword AddressFamily in sshd_config is described as "Specifies which address family should be used by sshd(8)".',
        ),
        ("option_default", "What is the default value of the keyword AllowAgentForwarding in sshd_config?", "The keyword AllowAgentForwarding in sshd_config defaults to yes."),
        (
            "option_purpose",
            "What does the keyword AllowAgentForwarding in sshd_config do?",
            'The keyword AllowAgentForwarding in sshd_config is described as "Specifies whether ssh-agent(1) forwarding is permitted".',
        ),
    ]
    compression, attempts = parse_records(SSH_CONFIG, topic="ssh_config")
    assert (compression.choices, compression.default) == (("yes", "no"), "no")
    assert (attempts.value_type, attempts.default) == ("integer", "1")


def test_a_chunk_that_starts_at_a_keyword_keeps_each_paragraph_with_its_keyword() -> None:
    """The chunker strips the first line's indentation; the next keyword must not join the first one's paragraph."""
    stripped = SSHD_CONFIG.strip()
    records = parse_records(stripped, topic="sshd_config")
    assert [(r.name, r.default, r.first_line, r.last_line) for r in records] == [("AddressFamily", "any", 0, 3), ("AllowAgentForwarding", "yes", 5, 9)]


# systemd 252, systemd.service(5) (Debian package systemd 252.39-1~deb12u2)
SYSTEMD_SERVICE = """\
       RemainAfterExit=
           Takes a boolean value that specifies whether the service shall be
           considered active even when all its processes exited. Defaults to
           no.

       RestartSec=
           Configures the time to sleep before restarting a service (as
           configured with Restart=). Takes a unit-less value in seconds, or a
           time span value such as "5min 20s". Defaults to 100ms.
"""


def test_unit_file_settings_with_defaults_to_sentences() -> None:
    answers = {question: sentence for _, question, sentence in _qa(SYSTEMD_SERVICE, topic="systemd.service")}
    assert answers == {
        "What is the default value of the setting RemainAfterExit= in systemd.service?": "The setting RemainAfterExit= in systemd.service defaults to no.",
        "Which values does the setting RemainAfterExit= in systemd.service accept?": "The setting RemainAfterExit= in systemd.service takes a boolean value.",
        "What does the setting RemainAfterExit= in systemd.service do?": (
            'The setting RemainAfterExit= in systemd.service is described as "Takes a boolean value that specifies whether the service shall be '
            'considered active even when all its processes exited".'
        ),
        "What is the default value of the setting RestartSec= in systemd.service?": "The setting RestartSec= in systemd.service defaults to 100ms.",
        "What does the setting RestartSec= in systemd.service do?": (
            'The setting RestartSec= in systemd.service is described as "Configures the time to sleep before restarting a service (as configured with Restart=)".'
        ),
    }


# rsync 3.2.7, rsync(1) OPTIONS SUMMARY and OPTIONS (Debian package rsync 3.2.7-1+deb12u6)
RSYNC_SUMMARY = """\
           rsync [OPTION...] SRC... [DEST]

       --verbose, -v            increase verbosity
       --stderr=e|a|c           change stderr output mode (default: errors)
       --archive, -a            archive mode is -rlptgoD (no -A,-X,-U,-N,-H)
       --no-implied-dirs        don't send implied dirs with --relative
       --suffix=SUFFIX          backup suffix (default ~ w/o --backup-dir)
"""
RSYNC_OPTIONS = """\
       --checksum, -c
              This changes the way rsync checks if the files have been changed
              and are in need of a transfer.  Without this option, rsync uses
              a "quick check" that (by default) checks if each file's size and
              time of last modification match between the sender and receiver.
"""


def test_man_page_option_summary_lines_take_their_command_from_the_synopsis() -> None:
    assert _qa(RSYNC_SUMMARY) == [
        ("option_purpose", "What does the option --verbose of rsync do?", 'The option --verbose of rsync is described as "increase verbosity".'),
        ("option_default", "What is the default value of the option --stderr of rsync?", "The option --stderr of rsync defaults to errors."),
        ("option_purpose", "What does the option --stderr of rsync do?", 'The option --stderr of rsync is described as "change stderr output mode (default: errors)".'),
        ("option_purpose", "What does the option --no-implied-dirs of rsync do?", "The option --no-implied-dirs of rsync is described as \"don't send implied dirs with --relative\"."),
    ]  # "archive mode is ..." has a verb of its own and "backup suffix (default ~ w/o ...)" no plain default: no question


def test_an_option_paragraph_that_starts_with_this_gives_no_purpose_but_its_lines_are_consumed() -> None:
    records = parse_records(RSYNC_OPTIONS, topic="rsync")
    assert [(r.name, r.owner, r.default) for r in records] == [("--checksum", "rsync", "")]
    assert _qa(RSYNC_OPTIONS, topic="rsync") == []  # "This changes the way ..." is no predicate of --checksum
    assert consumed_lines(RSYNC_OPTIONS, topic="rsync") == {0, 1, 2, 3, 4}


# OpenSSH 9.2p1, ssh(1) (Debian package openssh-client)
SSH_OPTIONS = """\
     -b bind_address
             Use bind_address on the local machine as the source address of
             the connection.  Only useful on systems with more than one address.

     -V      Display the version number and exit.
"""


def test_short_options_with_an_argument_and_inline_descriptions() -> None:
    assert _qa(SSH_OPTIONS, topic="ssh", kinds=("option_purpose",)) == [
        (
            "option_purpose",
            "What does the option -b of ssh do?",
            'The option -b of ssh is described as "Use bind_address on the local machine as the source address of the connection".',
        ),
        ("option_purpose", "What does the option -V of ssh do?", 'The option -V of ssh is described as "Display the version number and exit".'),
    ]


# rsync 3.2.7, rsync(1) ENVIRONMENT VARIABLES
RSYNC_ENVIRONMENT = """\
ENVIRONMENT VARIABLES
       CVSIGNORE
              The CVSIGNORE environment variable supplements any ignore
              patterns in .cvsignore files.  See the --cvs-exclude option for
              more details.

       RSYNC_ICONV
              Specify a default --iconv setting using this environment
              variable. First supported in 3.0.0.
"""


def test_environment_section_terms_are_environment_variables() -> None:
    assert _qa(RSYNC_ENVIRONMENT, topic="rsync") == [
        (
            "env_var",
            "What is the environment variable CVSIGNORE used for?",
            "The CVSIGNORE environment variable supplements any ignore patterns in .cvsignore files.",
        ),
        (
            "env_var",
            "What is the environment variable RSYNC_ICONV used for?",
            'In rsync, the environment variable RSYNC_ICONV is described as "Specify a default --iconv setting using this environment variable".',
        ),
    ]


# Debian Reference (osamu Aoki), 1.1.4 "Some useful text-mode programs" and 2.2.4 "Commandline operations":
# /work/shared/corpora/debian-reference/debian-reference.en.pdf, pages 28 and 76 as pypdfium2 reads them
DEBREF_PACKAGES = """\
package popcon size description
mc V:54, I:226 1482 A text-mode full-screen file manager
vim-tiny V:55, I:971 1660 Unix text editor Vi IMproved, a programmers text editor (compact
version)
Table 1.1: List of interesting text-mode program packages
It may be a good idea to read some informative documentations."""
DEBREF_OPTIONS = """\
/apt-cache(8)
command option description
-s simulate the result of the command
-d download only but no install/upgrade
Table 2.7: Notable command options for aptitude(8)"""


def test_flattened_pdf_tables_of_packages_and_options() -> None:
    assert _qa(DEBREF_PACKAGES) == [
        (
            "table_entry",
            "What is mc for, according to the list of interesting text-mode program packages?",
            'The package mc is described in the list of interesting text-mode program packages as "A text-mode full-screen file manager".',
        ),
        (
            "table_entry",
            "What is vim-tiny for, according to the list of interesting text-mode program packages?",
            (
                "The package vim-tiny is described in the list of interesting text-mode program packages as "
                '"Unix text editor Vi IMproved, a programmers text editor (compact version)".'
            ),
        ),
    ]
    assert consumed_lines(DEBREF_PACKAGES) == {1, 2, 3}  # the header, the caption and the prose after it stay
    assert _qa(DEBREF_OPTIONS) == [
        ("option_purpose", "What does the option -s of aptitude do?", 'The option -s of aptitude is described as "simulate the result of the command".'),
        ("option_purpose", "What does the option -d of aptitude do?", 'The option -d of aptitude is described as "download only but no install/upgrade".'),
    ]


def test_prose_and_tables_that_only_look_like_reference_layouts_give_no_record() -> None:
    # Debian Reference 1.5.8, Table 1.23: its columns are lost, no parser can tell name from description
    idioms = "command idiom description\ncommand & background execution of command in the subshell\nTable 1.23: Shell command idioms"
    # Debian Reference 2.2.4: an option table whose caption names three commands
    three_commands = "command option description\n-s simulate\nTable 2.6: Basic operations using apt(8), aptitude(8) and apt-get(8)"
    # Debian Reference 1.3.3: a package table with an extra column, whose rows would misread it
    shells = "package popcon size POSIX shell description\ncsh V:1, I:7 340 No OpenBSD C Shell, a version of Berkeley csh"
    # rsync(1) SYNOPSIS prose and an indented subsection title above its paragraph, not a keyword list
    rsync_prose = """\
       Usages with just one SRC arg and no DEST arg will list the source files
       instead of copying.

   Sorting
       The rsync program sorts the files in the file list."""
    # sshd_config(5) prose: "The default is yes." belongs to no entry here
    sentence = "     The default is yes.  Note that disabling agent forwarding does not improve security."
    for text in (idioms, three_commands, shells, rsync_prose, sentence):
        assert parse_records(text, topic="manual") == [], text


def test_conflicting_answers_to_one_question_are_dropped_and_repeats_kept_once() -> None:
    # the same option name with two defaults under an owner that cannot tell them apart (the topic)
    first = structured_facts("--bwlimit <number> (0 - N) (default = 100)\nOverride I/O bandwidth limit (in KiB/s).", "pct clone", "", KINDS)
    second = structured_facts("--bwlimit <number> (0 - N) (default = 200)\nOverride I/O bandwidth limit (in KiB/s).", "pct clone", "", KINDS)
    kept = unambiguous(first + second + first)
    assert [q for fact in kept for _, q in fact.questions] == [
        "What range of values does the option --bwlimit of pct clone accept?",
        "What does the option --bwlimit of pct clone do?",
    ]


def test_the_last_line_of_a_wrapped_list_of_settings_is_no_setting_of_its_own() -> None:
    # systemd 252, journald.conf(5): five settings share one paragraph and one "Defaults to" sentence each
    text = """\
       MaxLevelStore=, MaxLevelSyslog=, MaxLevelKMsg=, MaxLevelConsole=,
       MaxLevelWall=
           Controls the maximum log level of messages that are stored in the
           journal, forwarded to syslog, kmsg, the console or wall (if that is
           enabled, see above). Defaults to "debug"
           for MaxLevelStore= and MaxLevelSyslog=, to ensure that the all
           messages are stored in the journal and forwarded to syslog.
           Defaults to "notice" for MaxLevelKMsg=, "info" for
           MaxLevelConsole=, and "emerg" for MaxLevelWall=.
"""
    assert parse_records(text, topic="journald.conf") == []


def test_a_range_stated_in_the_description() -> None:
    # systemd 252, systemd.exec(5), SCHEDULING
    text = """\
       Nice=
           Sets the default nice level (scheduling priority) for executed
           processes. Takes an integer between -20 (highest priority) and 19
           (lowest priority). In case of resource contention, smaller values
           mean more resources will be made available to the unit's processes.
"""
    assert _qa(text, topic="systemd.exec", kinds=("option_range", "option_purpose")) == [
        ("option_range", "What range of values does the setting Nice= in systemd.exec accept?", "The setting Nice= in systemd.exec takes an integer from -20 to 19."),
        (
            "option_purpose",
            "What does the setting Nice= in systemd.exec do?",
            'The setting Nice= in systemd.exec is described as "Sets the default nice level (scheduling priority) for executed processes".',
        ),
    ]


def test_a_typed_description_ends_where_a_pdf_goes_on_with_the_next_section() -> None:
    # pct(1) "pct create" entries as a PDF extractor returns them (no blank lines); the heading and prose after
    # them and the wrap before a capital are made up, to put the boundaries where a real page can have them
    text = """\
pct create <vmid> <ostemplate> [OPTIONS]
--tty <integer> (0 - 6) (default = 2)
Specify the number of tty available to the container
11.3.2 Container Settings
General settings of a container include the node, the VMID and the hostname."""
    (record,) = parse_records(text)
    assert (record.description, record.last_line) == ("Specify the number of tty available to the container", 2)
    wrapped = "pct create <vmid> <ostemplate> [OPTIONS]\n--cores <integer> (1 - 8192)\nThe number of cores assigned to the\nContainer. A container can use all available cores by default."
    assert parse_records(wrapped)[0].description == "The number of cores assigned to the Container."


def test_a_parenthesised_default_of_another_noun_or_a_sentence_the_chunk_cut_is_no_default() -> None:
    # OpenSSH 9.2 ssh_config(5): "(default '~C')" is the escape sequence's, the keyword is disabled by default
    escape = """\
     EnableEscapeCommandline
             Enables the command line option in the EscapeChar menu for interactive
              sessions (default \u2018~C\u2019).  By default, the command line is
             disabled.

     EscapeChar
             Sets the escape character (default: \u2018~\u2019).  The escape character
             can also be set on the command line.
"""
    assert [(r.name, r.default) for r in parse_records(escape, topic="ssh_config")] == [("EnableEscapeCommandline", ""), ("EscapeChar", "~")]
    # systemd 252 journald.conf(5), Storage=, as a chunk that ends inside the sentence
    cut = """\
       Storage=
           Controls where to store journal data. Defaults to "auto" in"""
    assert [(r.name, r.default) for r in parse_records(cut, topic="journald.conf")] == [("Storage=", "")]


# Debian Reference 1.1.10 and 2.2.4 as runner/documents/markup.py writes them from the HTML edition
DEBREF_PIPE_TABLES = """\
Table 1.1. List of interesting text-mode program packages

| package | popcon | size | description |
| --- | --- | --- | --- |
| `mc` | V:54, I:226 | 1482 | A text-mode full-screen file manager |
| `vim-tiny` | V:55, I:971 | 1660 | , , |

Table 2.7. Notable command options for aptitude(8)

| command option | description |
| --- | --- |
| `-s` | simulate the result of the command |

Table 1.22. Command exit codes

| command exit status | numeric return value |
| --- | --- |
| success | zero, 0 |"""


def test_pipe_tables_from_html_give_the_records_the_pdf_tables_give() -> None:
    records = parse_records(DEBREF_PIPE_TABLES)
    assert [(r.kind, r.name, r.owner, r.description) for r in records] == [
        ("table_row", "mc", "List of interesting text-mode program packages", "A text-mode full-screen file manager"),
        ("option", "-s", "aptitude", "simulate the result of the command"),
    ]  # the ", ," (as above) row and the table of another kind give none
    assert records[0].source_text == "| `mc` | V:54, I:226 | 1482 | A text-mode full-screen file manager |"
    assert consumed_lines(DEBREF_PIPE_TABLES) == {4, 11}


# Proxmox VE, qm(1) (proxmox/pve-docs generated/qm.1-synopsis.adoc) as a PDF gives it: a subcommand with
# positional arguments only, directly followed by the next usage line, which lost the space before
# [OPTIONS]; a usage line with a required option inline; a section marker inside the table
QM_REFERENCE = """\
qm listsnapshot <vmid>
List all snapshots.
<vmid>: <integer> (100 - 999999999)
The (unique) ID of the VM.
qm migrate <vmid> <target>[OPTIONS]
Migrate virtual machine. Creates a new migration task.
<target>: <string>
Target node.
--force <boolean>
Allow to migrate VMs which use local devices. Only root may use this option.
qm clone <vmid> <newid> --experimental <boolean> [OPTIONS]
Create a copy of virtual machine/template.
--full <boolean>
Create a full copy of all disks.
[RULES]
--bwlimit <integer> (0 - N) (default = clone limit from datacenter or storage config)
Override I/O bandwidth limit (in KiB/s)."""


def test_each_usage_line_starts_a_record_block_and_owns_the_options_below_it() -> None:
    records = parse_records(QM_REFERENCE)
    owners = {(r.name, r.owner) for r in records}
    assert owners == {
        ("<vmid>", "qm listsnapshot"), ("<target>", "qm migrate"), ("--force", "qm migrate"),
        ("--full", "qm clone"), ("--bwlimit", "qm clone"),
    }  # fmt: skip
    descriptions = {r.name: r.description for r in records}
    assert descriptions["<vmid>"] == "The (unique) ID of the VM."  # the next usage line is not glued on
    assert descriptions["--full"] == "Create a full copy of all disks."  # the marker ends it
    checks = attribution_checks(QM_REFERENCE)
    assert len(checks) == 5 and all(record.owner == usage for record, usage in checks)


def test_the_attribution_check_finds_an_option_given_to_the_wrong_command() -> None:
    # a usage line the parser does not read (a brace alternative): its options go to the subcommand above
    unseen_usage = QM_REFERENCE.replace("qm migrate <vmid> <target>[OPTIONS]", "qm migrate <vmid> {online|offline}")
    wrong = [(record.name, record.owner, usage) for record, usage in attribution_checks(unseen_usage) if record.owner != usage]
    assert ("--force", "qm listsnapshot", "qm migrate") in wrong


# two subcommands whose <vmid> argument the reference describes alike (pve-docs qm.1 style)
GENERIC_ARGUMENT = """\
qm start <vmid> [OPTIONS]
Start virtual machine.
<vmid>: <integer> (100 - 999999999)
The (unique) ID of the VM.
--timeout <integer> (0 - N)
Wait maximal timeout seconds.
qm stop <vmid> [OPTIONS]
Stop virtual machine.
<vmid>: <integer> (100 - 999999999)
The (unique) ID of the VM.
--keepActive <boolean> (default = 0)
Do not deactivate storage volumes.
"""


def test_a_question_whose_answer_is_the_same_for_every_entry_is_not_asked() -> None:
    kept = unambiguous(structured_facts(GENERIC_ARGUMENT, "", "Proxmox VE", KINDS))
    asked = {question: fact.sentence for fact in kept for _, question in fact.questions}
    assert not any("<vmid>" in question and question.startswith("What does") for question in asked)
    # what differs between the subcommands is asked, in the document's own words
    assert asked["What does the option --timeout of qm start do?"] == 'The option --timeout of qm start is described as "Wait maximal timeout seconds".'
    assert asked["What does the option --keepActive of qm stop do?"] == 'The option --keepActive of qm stop is described as "Do not deactivate storage volumes".'
