"""run_resumable with a scripted model: finished ids are skipped, failed ones retried, the latest result wins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fakes import FakeLLM, error_response, last_user_message
from runner.core.jsonl import read_jsonl, write_jsonl
from runner.llm.base import ChatRequest, ChatResponse
from runner.llm.resumable import finished_ids, latest_results, response_fields, run_resumable

IDS = ["a", "b", "c", "d"]


def _requests(ids: list[str]) -> list[ChatRequest]:
    return [ChatRequest([{"role": "user", "content": f"item {item_id}"}], max_tokens=8) for item_id in ids]


def _to_record(index: int, response: ChatResponse) -> dict[str, Any]:
    return {"status": "ok" if response.ok else "error", **response_fields(response)}


def _echo(request: ChatRequest) -> str:
    return "answer to " + last_user_message(request)


def test_a_fresh_run_writes_one_record_per_id_matching_its_request(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    fake = FakeLLM(_echo)  # answers in reverse order: positions must still map to the right ids
    stats = run_resumable(fake, IDS, _requests(IDS), path, _to_record, desc="test")

    records = read_jsonl(path)
    assert [r["item_id"] for r in records] == ["d", "c", "b", "a"]
    assert all(r["raw"] == f"answer to item {r['item_id']}" and r["status"] == "ok" for r in records)
    assert stats["requests"] == 4
    assert stats["completion_tokens"] == sum(r["completion_tokens"] for r in records) and stats["prompt_tokens"] == 40


def test_finished_ids_are_skipped_and_errors_retried(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    write_jsonl(path, [
        {"item_id": "a", "status": "ok", "raw": "kept from the first run"},
        {"item_id": "b", "status": "error", "raw": "", "error": "timeout after 120 s"},
        {"item_id": "c", "status": "no_question", "raw": "nothing useful"},  # finished, just not useful: never redone
    ])
    assert finished_ids(path) == {"a", "c"}

    fake = FakeLLM(_echo)
    stats = run_resumable(fake, IDS, _requests(IDS), path, _to_record, desc="test")

    assert sorted(last_user_message(r) for r in fake.requests) == ["item b", "item d"]
    assert stats["requests"] == 2
    latest = latest_results(path)
    assert latest["a"]["raw"] == "kept from the first run"
    assert latest["b"] == {"item_id": "b", "status": "ok", **response_fields(fake.chat(_requests(["b"])[0]))}
    assert latest["c"]["raw"] == "nothing useful"
    assert latest["d"]["raw"] == "answer to item d"
    assert [r["item_id"] for r in read_jsonl(path)].count("b") == 2  # the error stays in the log, the retry wins


def test_a_complete_log_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    run_resumable(FakeLLM(_echo), IDS, _requests(IDS), path, _to_record, desc="test")
    before = path.read_text()
    fake = FakeLLM(_echo)
    stats = run_resumable(fake, IDS, _requests(IDS), path, _to_record, desc="test")
    assert fake.requests == [] and stats["requests"] == 0 and path.read_text() == before


def test_failures_of_this_run_are_retried_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    flaky = FakeLLM(lambda request: error_response("HTTP 503") if "item c" in last_user_message(request) else _echo(request))
    run_resumable(flaky, IDS, _requests(IDS), path, _to_record, desc="test")
    assert latest_results(path)["c"]["status"] == "error" and latest_results(path)["c"]["error"] == "HTTP 503"
    assert finished_ids(path) == {"a", "b", "d"}

    fixed = FakeLLM(_echo)
    run_resumable(fixed, IDS, _requests(IDS), path, _to_record, desc="test")
    assert [last_user_message(r) for r in fixed.requests] == ["item c"]
    assert {item_id: r["status"] for item_id, r in latest_results(path).items()} == dict.fromkeys(IDS, "ok")


def test_a_torn_last_line_from_a_kill_is_ignored_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"item_id": "a", "status": "ok", "raw": "done"}) + "\n" + '{"item_id": "b", "sta')
    assert finished_ids(path) == {"a"}
    run_resumable(FakeLLM(_echo), IDS, _requests(IDS), path, _to_record, desc="test")
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line parses: the torn one was cut
    assert sorted(json.loads(line)["item_id"] for line in lines) == IDS


def test_latest_results_and_finished_ids_of_a_missing_file(tmp_path: Path) -> None:
    assert finished_ids(tmp_path / "none.jsonl") == set()
    assert latest_results(tmp_path / "none.jsonl") == {}
