"""OpenAI-compatible chat backend (llama.cpp server, vLLM, Ollama, hosted APIs).

Requests run concurrently up to ``llm.parallel``; timeouts, connection errors, HTTP 429
and 5xx are retried with exponential backoff, bounded by ``llm.max_retries``. A request
that still fails becomes an error response (counted by the caller), never an exception.

``llm.base_url`` may list several servers of the same model (a pool). Each request goes to the
server with the fewest requests in flight, ties in turn (round robin). Least-busy rather than
plain round robin: requests differ several-fold in length, and a server that answers one at a
time (llama.cpp's Python server) would otherwise queue a request behind a long one while
another server idles; it also gives a faster server (a bigger GPU) more of the work. A retry
goes to another server than the one that failed, and a server that failed (refused, timed out,
429 or 5xx) comes last for a while.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import requests

from runner.llm.base import ChatRequest, ChatResponse

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def base_urls(value: Any) -> list[str]:
    """``llm.base_url`` as a list: one URL or several (a pool), without trailing slashes."""
    urls = [value] if isinstance(value, str) else list(value)
    return [url.rstrip("/") for url in urls]


class ServerPool:
    """The servers of ``llm.base_url`` with their requests in flight; picks the least busy.

    A server whose last attempt failed (refused, timed out, 429, 5xx) comes last for ``cooldown_s``,
    so a dead server costs one failed attempt now and then, not one per request.
    """

    def __init__(self, urls: Sequence[str], cooldown_s: float = 10.0):
        self.urls = list(urls)
        self.in_flight = [0] * len(self.urls)
        self.sent = [0] * len(self.urls)
        self.cooldown_s = cooldown_s
        self._failed_at: list[float | None] = [None] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self, avoid: int | None = None) -> int:
        """The index of the server for one request attempt (not ``avoid`` when there is another)."""
        with self._lock:
            count, now = len(self.urls), time.monotonic()
            candidates = [i for i in range(count) if i != avoid] or list(range(count))

            def rank(i: int) -> tuple[bool, int, int]:
                failed_at = self._failed_at[i]
                cooling = failed_at is not None and now - failed_at < self.cooldown_s
                # healthy first, then fewest in flight, then the first at or after the turn (round robin)
                return cooling, self.in_flight[i], (i - self._next) % count

            chosen = min(candidates, key=rank)
            self._next = (chosen + 1) % count
            self.in_flight[chosen] += 1
            self.sent[chosen] += 1
            return chosen

    def release(self, index: int, ok: bool) -> None:
        """The attempt on server ``index`` ended; ``ok`` is False when the server failed it."""
        with self._lock:
            self.in_flight[index] -= 1
            self._failed_at[index] = None if ok else time.monotonic()


class OpenAICompatLLM:
    def __init__(self, llm_cfg: Any):
        self.cfg = llm_cfg
        self.pool = ServerPool(base_urls(llm_cfg.base_url))
        self.name = f"openai:{llm_cfg.api_model}@{','.join(self.pool.urls)}"
        if len(self.pool.urls) > llm_cfg.parallel:
            log.warning("llm.parallel=%d is below the %d servers of llm.base_url: some will idle", llm_cfg.parallel, len(self.pool.urls))
        # the last chat_many: requests, wall time, requests per second, requests per server
        self.last_batch: dict[str, Any] = {}
        api_key = os.environ.get(llm_cfg.api_key_env, "") if llm_cfg.api_key_env else ""
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self.stats = {"prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "requests": 0, "retries": 0, "errors": 0}

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        temperature = self.cfg.temperature if request.temperature is None else request.temperature
        payload: dict[str, Any] = {
            "model": self.cfg.api_model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": temperature,
            "top_p": self.cfg.top_p,
            "seed": self.cfg.seed if request.seed is None else request.seed,
        }
        if request.stop:
            payload["stop"] = request.stop
        if request.json_schema is not None and self.cfg.response_format != "none":
            if self.cfg.response_format == "json_schema":
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": request.json_schema},
                }
            else:  # json_object + schema: understood by llama.cpp's servers, plain JSON mode elsewhere
                payload["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return payload

    def chat(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        payload = self._payload(request)
        last_error = "no attempt"
        failed_server: int | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                delay = self.cfg.retry_backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
                with self._lock:
                    self.stats["retries"] += 1
                time.sleep(delay)
            server = self.pool.acquire(avoid=failed_server)
            failed_server = server  # a retry goes elsewhere; an answer returns below
            try:
                reply = self._session().post(
                    self.pool.urls[server] + "/chat/completions", json=payload, headers=self._headers, timeout=self.cfg.timeout_s
                )
            except requests.Timeout:
                self.pool.release(server, ok=False)
                last_error = f"timeout after {self.cfg.timeout_s:g} s"
                continue
            except requests.ConnectionError as exc:
                self.pool.release(server, ok=False)
                last_error = f"connection failed ({type(exc).__name__})"
                continue
            except requests.RequestException as exc:  # e.g. a reply cut off mid-body (ChunkedEncodingError)
                self.pool.release(server, ok=False)
                last_error = f"request failed ({type(exc).__name__}: {exc})"[:300]
                continue
            self.pool.release(server, ok=reply.status_code not in _RETRY_STATUS)
            if reply.status_code in _RETRY_STATUS:
                last_error = f"HTTP {reply.status_code}"
                continue
            if reply.status_code >= 400:
                last_error = f"HTTP {reply.status_code}: {reply.text[:200]}"
                break
            return self._parse(reply, started)
        with self._lock:
            self.stats["errors"] += 1
        return ChatResponse("", finish_reason="error", error=last_error, seconds=time.perf_counter() - started)

    def _parse(self, reply: requests.Response, started: float) -> ChatResponse:
        seconds = time.perf_counter() - started
        try:
            body = reply.json()
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError):
            with self._lock:
                self.stats["errors"] += 1
            return ChatResponse("", finish_reason="error", error=f"malformed response: {reply.text[:200]!r}", seconds=seconds)
        usage = body.get("usage") or {}
        response = ChatResponse(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            seconds=seconds,
        )
        with self._lock:
            self.stats["prompt_tokens"] += response.prompt_tokens
            self.stats["completion_tokens"] += response.completion_tokens
            self.stats["seconds"] += seconds
            self.stats["requests"] += 1
        return response

    def chat_many(self, requests_: Sequence[ChatRequest]) -> Iterator[tuple[int, ChatResponse]]:
        if not requests_:
            return
        started = time.perf_counter()
        sent_before = list(self.pool.sent)
        pool = ThreadPoolExecutor(max_workers=self.cfg.parallel)
        try:
            futures = {pool.submit(self.chat, request): position for position, request in enumerate(requests_)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # on Ctrl-C (or a consumer that stops early) drop the queued requests instead of waiting for them
            pool.shutdown(wait=False, cancel_futures=True)
        self._report_rate(len(requests_), time.perf_counter() - started, sent_before)

    def _report_rate(self, count: int, wall_s: float, sent_before: list[int]) -> None:
        per_server = {url: now - before for url, now, before in zip(self.pool.urls, self.pool.sent, sent_before)}
        self.last_batch = {"requests": count, "wall_s": wall_s, "requests_per_s": count / max(wall_s, 1e-9), "per_server": per_server}
        log.info("%s: %d requests in %.1f s, %.2f requests/s (attempts per server: %s)", self.name, count, wall_s, self.last_batch["requests_per_s"], per_server)

    def close(self) -> None:
        if hasattr(self._local, "session"):
            self._local.session.close()
