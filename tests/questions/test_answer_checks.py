"""Answers that answer: the question's form names what its answer must hold; PDF debris in a text."""

from __future__ import annotations

import pytest

from runner.questions.answer_checks import announces_list, debris, drop_reason, expected_answer, points_elsewhere, type_mismatch

# (question, answer, what the answer lacks or None); the failing ones are the kinds found in real manuals
CASES = [
    ("How to create a linked clone of a template?", "For CT templates, we try to create a linked clone by default.", "procedure"),
    ("How can we acquire a lock on a node that is a LRM?", "The node is fenced when it loses quorum.", "procedure"),
    ("How to increase the lane count of a channel?", "The lane count can be increased with qsctl channel alter orders --lanes 16.", None),
    ("Which command deletes archived runs older than seven days?", "Run purge --older-than 7d to delete archived runs.", None),
    ("What is the command that lists the tokens of a principal?", "The command qsctl token list --principal svc lists them.", None),
    ("Which command restarts the relay?", "The relay restarts when its configuration changes.", "command"),
    ("How long does the relay keep messages?", "The relay keeps messages for 72 hours.", None),
    ("How long does the relay keep messages?", "The relay keeps messages until they are acknowledged.", "quantity"),
    ("How many nodes can a Community Edition cluster have?", "A Community Edition cluster has at most three nodes.", None),
    ("What is the default value of node.name?", "The key node.name defaults to the host name.", None),
    ("What is the default?", "For CT templates, we try to create a linked clone by default.", "value"),
    ("Where is the license file placed?", "The license file is placed at /etc/quillstream/license.qsl.", None),
    ("Which file holds the relay's settings?", "The relay reads its settings at start-up.", "path"),
    ("In which release did the default retention change?", "Release 3.2 changed the default retention.", None),
    ("What does the relay do with a poisoned message?", "It parks it.", None),  # no form to check
    # a flag named in passing is no procedure (bench/review_sample.md)
    ("How to set default lanes and retention in a channel?", "If --lanes is omitted, the channel gets the default of 4 lanes.", "procedure"),
    ("How to check the exit code of a script?", "Scripts should check the exit code rather than parse the table output of --output json.", "procedure"),
    # "use / with / via" call a command only when one follows (the Debian Reference's review)
    ("How to convert a XML file to any format?", "You can convert it to any format using Extensible Stylesheet Language Transformations (XSLT).", "procedure"),
    ("How to share data with other system via network?", "When sharing data with other system via network, you should use common service.", "procedure"),
    ("How to keep a remote shell alive?", "Please use the screen(1) program to enable remote shell process to survive the interrupted connection.", None),
    ("How to replay dead letters?", "Messages can be replayed with qsctl dlq replay orders --max 1000.", None),
    ("Which command assigns a node to a rack?", "Each node can be assigned to a rack with cluster.rack, which defaults to an empty string.", "command"),
]


@pytest.mark.parametrize(
    "answer,elsewhere",
    [
        ("The non-free-firmware area is described in Section 2.1.4.", True),
        ("You are advised to read the Linux Security Module (LSM) framework document at kernel.org.", True),
        ("See Section 9.4.15 for restricting the kernel secure attention key (SAK) feature.", True),
        ("The data directory is described by node.data_dir and defaults to /var/lib/quillstream.", False),
        ("Section 4.2 lists five sources; command-line flags take precedence over all others.", False),
        ("The detailed best practices for the file hierarchy are described in the Filesystem Hierarchy Standard (hier(7)).", True),
        # a table-entry answer says what the list says of its entry
        ('The package gcc is described in the list of compiler related packages as "GNU C compiler".', False),
    ],
)
def test_an_answer_that_only_says_where_the_fact_is(answer: str, elsewhere: bool) -> None:
    assert points_elsewhere(answer) is elsewhere


@pytest.mark.parametrize("question,answer,lacking", CASES)
def test_an_answer_must_hold_what_its_question_asks_for(question: str, answer: str, lacking: str | None) -> None:
    assert type_mismatch(question, answer) == lacking


def test_question_forms() -> None:
    assert expected_answer("Which port does the console listen on?") == "quantity"
    assert expected_answer("What is the purpose of the ledger?") is None


def test_debris_of_real_pdfs() -> None:
    assert debris("sockets: <integer> (1 - N) (default = 1) The number of CPU sockets.") == "table"
    assert debris("--min_size <integer> (1 - 7) (default = 2)") == "table"
    assert debris("Edit the con\ufb01guration file.") == "ligature"
    assert debris("Restart the con- troller after the upgrade.") == "split_word"
    assert debris("A well-known, read-only file (see x86-64 notes).") is None
    assert debris("Table 4.3: List of commands to manage account information You may need the root privilege.") == "caption"
    assert debris("If you set shell as Section 1.4.2, type the following. $ cd package_name $ pager README.Debian") == "shell"
    assert debris("The value of the $PATH environment variable is the shell's search path; it costs $ 5.") is None


def test_an_answer_that_only_announces_a_list() -> None:
    announce = "There are 3 key factors which determine actual backup and recovery policy."
    assert announces_list("Which factors determine actual backup and recovery policy?", announce)
    assert not announces_list("How many key factors determine the backup policy?", announce)
    assert not announces_list("Which factors matter?", "Three factors matter: size, age and cost.")


@pytest.mark.parametrize(
    "question,answer,reason",
    [
        ("Which factors determine the backup policy?", "There are 3 key factors which determine actual backup and recovery policy.", "announces_list"),
        ("What is the standard mail storage format?", "Table 11.16: List of packages The standard mail storage format is mbox.", "debris_caption"),
        ("How do I install mc?", "Install it by the following. $ sudo apt-get install mc Use the mc(1) command.", "debris_shell"),
        ("What is the standard mail storage format?", "The standard mail storage format is mbox formatted according to RFC2822.", None),
        ("What is the name of the SSH server?", "SSH server (secure) openssh-client V:856, I:997 5609 ssh -X SSH client (secure)", "fragment"),
        ("How to create a chroot environment?", "Create a chroot or similar environment and run the latest system in it in advance (see Section 9.11)", "fragment"),
        ("What is the syntax of the rule file?", "The rule file syntax is the following:", "fragment"),
        ("What does the package gcc hold?", 'The package gcc is described as "GNU C compiler".', None),
        ("Where are options written?", "Options are written in \u201c/etc/x.conf\u201d.", None),
    ],
)
def test_why_a_pair_is_dropped(question: str, answer: str, reason: str | None) -> None:
    assert drop_reason(question, answer) == reason
