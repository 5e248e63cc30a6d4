"""OpenAI-compatible chat backend (llama.cpp server, vLLM, Ollama, hosted APIs).

Requests run concurrently up to ``llm.parallel``; timeouts, connection errors, HTTP 429
and 5xx are retried with exponential backoff, bounded by ``llm.max_retries``. A request
that still fails becomes an error response (counted by the caller), never an exception.
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


class OpenAICompatLLM:
    def __init__(self, llm_cfg: Any):
        self.cfg = llm_cfg
        self.name = f"openai:{llm_cfg.api_model}@{llm_cfg.base_url}"
        self.url = llm_cfg.base_url.rstrip("/") + "/chat/completions"
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
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                delay = self.cfg.retry_backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
                with self._lock:
                    self.stats["retries"] += 1
                time.sleep(delay)
            try:
                reply = self._session().post(self.url, json=payload, headers=self._headers, timeout=self.cfg.timeout_s)
            except requests.Timeout:
                last_error = f"timeout after {self.cfg.timeout_s:g} s"
                continue
            except requests.ConnectionError as exc:
                last_error = f"connection failed ({type(exc).__name__})"
                continue
            except requests.RequestException as exc:  # e.g. a reply cut off mid-body (ChunkedEncodingError)
                last_error = f"request failed ({type(exc).__name__}: {exc})"[:300]
                continue
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
        pool = ThreadPoolExecutor(max_workers=self.cfg.parallel)
        try:
            futures = {pool.submit(self.chat, request): position for position, request in enumerate(requests_)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # on Ctrl-C (or a consumer that stops early) drop the queued requests instead of waiting for them
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if hasattr(self._local, "session"):
            self._local.session.close()
