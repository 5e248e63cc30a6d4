"""Send many chat requests, appending each result as it finishes, resuming after a crash."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runner.core.errors import LLMError
from runner.core.jsonl import JsonlAppender, iter_jsonl
from runner.llm.base import LLM, ChatRequest, ChatResponse

log = logging.getLogger(__name__)


def finished_ids(path: Path) -> set[str]:
    """Ids with a result; failed requests (timeouts, HTTP errors) are retried, finished ones never."""
    if not path.exists():
        return set()
    return {r["item_id"] for r in iter_jsonl(path) if r.get("status") != "error"}


def latest_results(path: Path) -> dict[str, dict[str, Any]]:
    """The last result per id (a retried item's new result replaces its error)."""
    return {r["item_id"]: r for r in iter_jsonl(path)} if path.exists() else {}


def run_resumable(
    llm: LLM,
    item_ids: Sequence[str],
    requests: Sequence[ChatRequest],
    path: Path,
    to_record: Callable[[int, ChatResponse], dict[str, Any]],
    desc: str,
) -> dict[str, float]:
    """Run the requests whose id has no result in ``path``; return this attempt's throughput."""
    done = finished_ids(path)
    pending = [i for i, item_id in enumerate(item_ids) if item_id not in done]
    if done:
        log.info("%s: resuming, %d of %d requests already done", desc, len(item_ids) - len(pending), len(item_ids))
    started = time.perf_counter()
    completion_tokens = prompt_tokens = 0
    with JsonlAppender(path) as out, tqdm(total=len(item_ids), initial=len(item_ids) - len(pending), desc=desc, unit="req") as bar:
        for slot, response in llm.chat_many([requests[i] for i in pending]):
            index = pending[slot]
            out.append({"item_id": item_ids[index], **to_record(index, response)})
            completion_tokens += response.completion_tokens
            prompt_tokens += response.prompt_tokens
            bar.set_postfix(tok_s=f"{completion_tokens / max(time.perf_counter() - started, 1e-9):.0f}")
            bar.update(1)
    wall = time.perf_counter() - started
    if pending:
        log.info(
            "%s: %d requests in %.1f s, %.1f generated tok/s, %.1f prompt tok/s",
            desc, len(pending), wall, completion_tokens / max(wall, 1e-9), prompt_tokens / max(wall, 1e-9),
        )
    return {"wall_s": wall, "requests": len(pending), "completion_tokens": completion_tokens, "prompt_tokens": prompt_tokens}


def response_fields(response: ChatResponse) -> dict[str, Any]:
    return {
        "error": response.error,
        "raw": response.text,
        "finish_reason": response.finish_reason,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "seconds": response.seconds,
    }


def raise_if_too_many_failed(errors: Sequence[str], total: int, max_share: float, what: str) -> None:
    """Refuse to finish a stage when more than ``max_share`` of its requests failed after retries:
    its finished requests stay in the work folder and a rerun retries only the failed ones."""
    if total and errors and (len(errors) == total or len(errors) / total > max_share):
        raise LLMError(
            f"{len(errors)} of {total} {what} requests failed (first: {errors[0]}); finished ones are kept, "
            "rerun to retry the rest (llm.max_error_share sets how many failures a stage accepts)"
        )
