from __future__ import annotations

from runner.questions.templates import template_questions

TOPIC = "Quillstream Relay"
KINDS = ["default_value", "error_code", "env_var"]


def _questions(sentences: list[str], kinds: list[str] = KINDS) -> dict[str, list[str]]:
    return {s: [t.question for t in found] for s, found in template_questions(sentences, TOPIC, kinds).items()}


def test_each_kind_asks_about_the_identifier_its_sentence_explains() -> None:
    sentences = [
        "The minimum number of in-sync replicas, including the leader, is set by cluster.min_insync and defaults to 2.",
        "The key node.data_dir defaults to /var/lib/quillstream, node.name defaults to the host name, and node.shutdown_timeout_s defaults to 30.",
        "Creating a channel whose name already exists fails with error QSR-4090.",
        "Circuit state changes are logged with warning QSR-W420.",
        "The profile is selected with the environment variable QSR_PROFILE, which defaults to core in the image.",
        "The relay is easy to operate and well documented.",
    ]
    assert _questions(sentences) == {
        sentences[0]: ["What is the default value of cluster.min_insync?"],
        sentences[1]: [
            "What is the default value of node.data_dir?",
            "What is the default value of node.name?",
            "What is the default value of node.shutdown_timeout_s?",
        ],
        sentences[2]: ["When does Quillstream Relay return error QSR-4090?"],
        sentences[3]: ["When does Quillstream Relay log warning QSR-W420?"],
        sentences[4]: ["What is the environment variable QSR_PROFILE used for?"],
    }


def test_an_identifier_explained_by_two_sentences_gets_no_question() -> None:
    """Either sentence alone would be an incomplete answer; repeats of one sentence (chunk overlap) are fine."""
    twice = [
        "A reload with an unknown key fails with error QSR-4022.",
        "A token with a longer --ttl is rejected with error QSR-4022.",
        "An operation that is denied by the ACLs fails with error QSR-4009.",
        "An operation that is denied by the ACLs fails with error QSR-4009.",
    ]
    assert _questions(twice) == {twice[2]: ["When does Quillstream Relay return error QSR-4009?"]}


def test_a_sentence_leaning_on_the_one_before_is_skipped_and_kinds_can_be_turned_off() -> None:
    dependent = "Without it, the request fails with error QSR-4091, which protects against accidental deletion."
    assert _questions([dependent]) == {}
    codes_only = "Unknown keys are reported as error QSR-4030, and retention.hours defaults to 72."
    assert _questions([codes_only], ["error_code"]) == {codes_only: ["When does Quillstream Relay return error QSR-4030?"]}
    assert _questions([codes_only], []) == {}


def test_generate_adds_template_records_for_selected_chunks_only(composed_cfg) -> None:
    from runner.questions.fact_selection import select_facts
    from runner.stages.generate import template_records as numbered

    def template_records(chunks, corpus, cfg):
        if cfg.generate.strategy != "fact_anchored":  # as the generate stage calls it
            return []
        return numbered(select_facts(chunks, corpus, cfg)[1])

    def chunk(cid: str, text: str) -> dict:
        return {"chunk_id": cid, "doc_id": "d", "source": "manual.md", "page": 1, "text": text}

    corpus = [
        chunk("c0", "Creating a channel whose name already exists fails with error QSR-4090.\n\nThe relay is easy to operate."),
        chunk("c1", "A reload with an unknown key fails with error QSR-4022 and nothing changes."),
        chunk("c2", "A token with a longer --ttl than allowed is rejected with error QSR-4022."),
    ]
    cfg = composed_cfg()
    records = template_records(corpus[:2], corpus, cfg)  # c2 is not selected, but it makes QSR-4022 ambiguous
    assert [(r["qid"], r["question"]) for r in records] == [("c0-t0", "When does Quillstream Relay return error QSR-4090?")]
    assert records[0]["fact"] == "Creating a channel whose name already exists fails with error QSR-4090."
    assert records[0]["strategy"] == "template" and records[0]["fact_is_sentence"] and records[0]["answer_hint"] == "QSR-4090"
    assert template_records(corpus, corpus, composed_cfg(["generate.templates=[]"])) == []
    assert template_records(corpus, corpus, composed_cfg(["generate.strategy=free"])) == []


# --- real manuals: each template fires on the forms they use, and not on prose that only looks alike ---


def _real(sentences: list[str], topic: str, kinds: list[str] = KINDS, headings: dict[str, str] | None = None) -> dict[str, list[str]]:
    found = template_questions(sentences, topic, kinds, headings)
    return {s: [t.question for t in questions] for s, questions in found.items()}


def test_default_value_in_the_forms_real_manuals_use() -> None:
    # systemd 252: systemd.service(5) (KillMode=), logind.conf(5); Debian Reference 1.6.2 (page 45, pypdfium2 text)
    kill = (
        "If terminate is set the service will be gracefully terminated by sending the signal specified in "
        "KillSignal= (defaults to SIGTERM, see systemd.kill(5))."
    )
    keys = 'HandlePowerKey= defaults to "poweroff", HandleRebootKey= defaults to "reboot", HandleSuspendKey= defaults to "suspend".'
    ifs = "The default value of IFS is space, tab, and newline combined."
    assert _real([kill, keys, ifs], "systemd") == {
        kill: ["What is the default value of KillSignal=?"],
        keys: [
            "What is the default value of HandlePowerKey=?",
            "What is the default value of HandleRebootKey=?",
            "What is the default value of HandleSuspendKey=?",
        ],
        ifs: ["What is the default value of IFS?"],
    }


def test_default_value_does_not_fire_when_the_subject_is_not_in_the_sentence_or_not_the_one_defaulting() -> None:
    negatives = [
        # systemd.exec(5), StandardInput=: "it" is StandardInput=, not StandardInputData=
        "This setting defaults to null, unless StandardInputText=/StandardInputData= are set, in which case it defaults to data.",
        # rsyncd.conf(5): the default of the log format escape, not of the --human-readable option
        "The 3 supported levels are the same as for the --human-readable command-line option, though the default is for "
        "human-readability to be off.",
        # Debian Reference 9.6.7 and sshd_config(5): a default with no named key
        "Debian now defaults to no periodic fsck after filesystem creation.",
        "Specifies whether ssh-agent(1) forwarding is permitted.  The default is yes.",
    ]
    assert _real(negatives, "systemd") == {}


def test_error_codes_in_the_forms_real_manuals_use() -> None:
    # open(2), Linux man-pages 6.03 (Debian manpages-dev); Linux Documentation/ABI (a PCI sysfs attribute);
    # Microsoft support article "Windows Activation fails with error 0x8007267C" (MicrosoftDocs/SupportArticles)
    exists = "If pathname already exists, then open() fails with the error EEXIST."
    enotty = (
        "If the kernel could not determine whether authentication is supported because memory was low or communication "
        "with the device was not working, the file is visible but accessing it fails with error code ENOTTY."
    )
    activation = "Provides solutions to an issue where Windows Activation fails with the error code 0x8007267C."
    assert _real([exists], "open()") == {exists: ["When does open() fail with EEXIST?"]}
    assert _real([enotty], "Linux") == {enotty: ["When does Linux fail with ENOTTY?"]}
    assert _real([activation], "Windows") == {activation: ["When does Windows return error 0x8007267C?"]}


def test_error_code_does_not_fire_on_severity_names_plain_numbers_or_a_passing_mention() -> None:
    negatives = [
        # shellcheck(1) --severity; sshd_config(5) LogLevel: level names, no codes
        "Specify minimum severity of errors to consider.  Valid values in order of severity are error, warning, info and style.",
        "The possible values are: QUIET, FATAL, ERROR, INFO, VERBOSE, DEBUG, DEBUG1, DEBUG2, and DEBUG3.",
        # systemd.exec(5), PROCESS EXIT CODES: numbers, not codes
        "The LSB specification suggests that error codes 200 and above are reserved for implementations.",
        # open(2), O_NOFOLLOW: the code is mentioned, not explained
        "(Note that the ELOOP error that can occur in this case is indistinguishable from the case where an open fails "
        "because there are too many symbolic links found while resolving components in the prefix part of the pathname.)",
    ]
    assert _real(negatives, "open()") == {}


def test_environment_variables_in_the_forms_real_manuals_use() -> None:
    # rsync(1) 3.2.7 (ENVIRONMENT VARIABLES and CONNECTING TO AN RSYNC DAEMON); Debian Reference 2.7.3 (page 83)
    cvs = "The CVSIGNORE environment variable supplements any ignore patterns in .cvsignore files."
    password = (
        "You can avoid the password prompt by setting the environment variable RSYNC_PASSWORD to the password you want "
        "to use or using the --password-file option."
    )
    proxy = "The \u201d$http_proxy\u201d environment variable can be used to override proxy server setting in the \u201d/etc/apt/apt.conf\u201d file."
    assert _real([cvs, password, proxy], "rsync", ["env_var"]) == {
        cvs: ["What is the environment variable CVSIGNORE used for?"],
        password: ["What is the environment variable RSYNC_PASSWORD used for?"],
        proxy: ["What is the environment variable http_proxy used for?"],
    }


def test_a_variable_as_the_subject_counts_only_in_a_section_about_the_environment() -> None:
    # systemd.exec(5), section ENVIRONMENT VARIABLES IN SPAWNED PROCESSES ($EXIT_CODE, $EXIT_STATUS)
    status = '$EXIT_STATUS contains the numeric exit code formatted as string if $EXIT_CODE is "exited", and the signal name in all other cases.'
    # systemd.service(5), section OPTIONS (ExecReload=): the same form outside such a section
    mainpid = "$MAINPID is set to the main process of the daemon, and may be used for command lines like the following."
    headings = {status: "ENVIRONMENT VARIABLES IN SPAWNED PROCESSES", mainpid: "OPTIONS"}
    assert _real([status, mainpid], "systemd", ["env_var"], headings) == {status: ["What is the environment variable EXIT_STATUS used for?"]}


def test_environment_variable_does_not_fire_on_a_prefix_a_caveat_context_or_no_purpose() -> None:
    negatives = [
        # ssh(1) ENVIRONMENT, sshd_config(5) AcceptEnv: no variable named
        "ssh will normally set the following environment variables:",
        "Specifies what environment variables sent by the client will be copied into the session's environ(7).",
        # journalctl(1) ENVIRONMENT: a caveat, not what the variable is for
        "Note that setting the regular $LESS environment variable has no effect for less invocations by systemd tools.",
        # rsync(1) --old-args: "this setting" is in the paragraph before
        "You may also control this setting via the RSYNC_OLD_ARGS environment variable.",
        # sshd_config(5) AcceptEnv: says when TERM is accepted, not what it is for
        "The TERM environment variable is always accepted whenever the client requests a pseudo-terminal as it is required by the protocol.",
        # rsyncd.conf(5) pre-xfer exec: a list follows, no name here
        "The following environment variables will be set, though some are specific to the pre-xfer or the post-xfer environment:",
        # the bundled sample's configuration precedence list: a prefix, not a name
        "environment variables starting with `QSR_`;",
    ]
    assert _real(negatives, "rsync", ["env_var"]) == {}
