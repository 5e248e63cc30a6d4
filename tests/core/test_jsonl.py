"""JSON Lines: whole-file writes are atomic, a torn last line is ignored and cut before appending."""

from __future__ import annotations

import json
from pathlib import Path

from runner.core.jsonl import JsonlAppender, read_jsonl, write_jsonl

RECORDS = [{"id": 1, "text": "première"}, {"id": 2, "text": "second"}]


def test_write_then_read_round_trips_unicode(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    assert write_jsonl(path, iter(RECORDS)) == 2
    assert read_jsonl(path) == RECORDS
    assert "première" in path.read_text(encoding="utf-8")  # not \u-escaped
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]  # no temp file left behind


def test_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    write_jsonl(path, RECORDS)
    write_jsonl(path, [{"id": 3}])
    assert read_jsonl(path) == [{"id": 3}]


def test_torn_last_line_is_ignored_by_read(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    write_jsonl(path, RECORDS)
    with open(path, "ab") as handle:
        handle.write(b'{"id": 3, "text": "cut in the mid')  # a crash mid-write
    assert read_jsonl(path) == RECORDS


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 1}\n\n   \n{"id": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]


def test_appender_cuts_a_torn_tail_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    write_jsonl(path, RECORDS)
    with open(path, "ab") as handle:
        handle.write(b'{"id": 3, "te')
    with JsonlAppender(path) as appender:
        appender.append({"id": 4})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [*RECORDS, {"id": 4}]  # every line parses
    assert path.read_bytes().endswith(b"\n")


def test_appender_cuts_a_torn_multibyte_tail(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    write_jsonl(path, RECORDS)
    with open(path, "ab") as handle:
        handle.write('{"text": "é'.encode()[:-1])  # torn inside a UTF-8 sequence
    with JsonlAppender(path) as appender:
        appender.append({"id": 5})
    assert read_jsonl(path) == [*RECORDS, {"id": 5}]


def test_appender_keeps_a_complete_last_line_without_newline(tmp_path: Path) -> None:
    # read_jsonl returns such a line, so the appender must not drop it (a resuming
    # stage would otherwise count it as done and then lose it)
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}', encoding="utf-8")
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
    with JsonlAppender(path) as appender:
        appender.append({"id": 3})
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_appender_creates_the_file_and_each_record_is_on_disk_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    appender = JsonlAppender(path)
    try:
        appender.append({"id": 1})
        assert read_jsonl(path) == [{"id": 1}]  # flushed before close
        appender.append({"id": 2})
    finally:
        appender.close()
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
