"""OpenAI-compatible backend: a real llama.cpp server, an HTTP stand-in serving the real model, and a
scripted local server for retries, timeouts, refused connections and broken replies."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from omegaconf import DictConfig

from conftest import REPO_ROOT, BuiltIndex
from runner.errors import LLMError
from runner.jsonl import read_jsonl
from runner.llm import create_llm
from runner.llm.base import ChatRequest, questions_schema
from runner.llm.openai_compat import OpenAICompatLLM
from runner.models import resolve_gguf
from runner.stage import StageContext
from runner.stages import generate
from runner.stages.generate import INSTRUCTIONS_FILE, ITEMS_FILE

FAST_RETRIES = ["llm=openai", "llm.retry_backoff_s=0.01", "llm.max_retries=2", "llm.timeout_s=2"]
# the tiny_index document, one question per chunk
SMALL = ["chunk.size=160", "chunk.overlap=0", "generate.questions_per_chunk=1", "generate.max_facts_per_chunk=1", "generate.candidates_per_fact=1"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


# ---------------------------------------------------------------- a scripted local server


class ScriptedServer:
    """Behaviour chosen by the first path segment: http://host:port/<behaviour>-<id>/v1/chat/completions."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.payloads: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, behaviour: str) -> tuple[str, str]:
        """A base_url with a fresh key (so counts never mix between tests) and that key."""
        key = f"{behaviour}-{uuid.uuid4().hex[:8]}"
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{key}/v1", key

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json", length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                key = self.path.strip("/").split("/")[0]
                behaviour = key.rsplit("-", 1)[0]
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server.lock:
                    server.calls[key] += 1
                    attempt = server.calls[key]
                    server.payloads[key].append(payload)
                    server.headers[key].append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._respond(behaviour, attempt, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _respond(self, behaviour: str, attempt: int, payload: dict[str, Any]) -> None:
                ok = json.dumps(_completion(f"reply to: {payload['messages'][-1]['content']}")).encode()
                if behaviour == "ok":
                    self._send(200, ok)
                elif behaviour == "busy":  # a little slow, to observe concurrency
                    time.sleep(0.15)
                    self._send(200, ok)
                elif behaviour == "flaky":  # rate-limited once, then fine
                    self._send(*((429, b'{"error": "rate limited"}') if attempt == 1 else (200, ok)))
                elif behaviour == "down":
                    self._send(500, b'{"error": "internal"}')
                elif behaviour == "badrequest":
                    self._send(400, b'{"error": "context length exceeded"}')
                elif behaviour == "garbage":
                    self._send(200, b"<html>502 Bad Gateway</html>", content_type="text/html")
                elif behaviour == "truncated":  # promises 400 bytes, sends 14, hangs up
                    self._send(200, b'{"choices": [{', length=400)
                    self.close_connection = True
                elif behaviour == "slow":
                    time.sleep(1.0)
                    self._send(200, ok)
                elif behaviour == "question":
                    self._send(200, json.dumps(_completion('{"question": "Which port does the harbour daemon use?"}')).encode())
                else:
                    self._send(404, b"{}")

        return Handler

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def backend(server: ScriptedServer, composed_cfg: Callable[..., DictConfig]) -> Callable[..., tuple[OpenAICompatLLM, str]]:
    """``backend(behaviour, *overrides)`` -> (OpenAICompatLLM on that behaviour, its key in the server's counts)."""
    made: list[OpenAICompatLLM] = []

    def _make(behaviour: str, *overrides: str) -> tuple[OpenAICompatLLM, str]:
        url, key = server.url(behaviour)
        cfg = composed_cfg([*FAST_RETRIES, f"llm.base_url={url}", *overrides])
        llm = create_llm(cfg.llm, cfg.model, REPO_ROOT)
        assert isinstance(llm, OpenAICompatLLM)
        made.append(llm)
        return llm, key

    yield _make
    for llm in made:
        llm.close()


def _ask(text: str = "Which port?", **kwargs: Any) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], max_tokens=16, **kwargs)


def test_a_429_is_retried_then_succeeds(backend, server: ScriptedServer) -> None:
    llm, key = backend("flaky")
    response = llm.chat(_ask())
    assert response.ok and response.text == "reply to: Which port?"
    assert (response.prompt_tokens, response.completion_tokens, response.finish_reason) == (7, 3, "stop")
    assert server.calls[key] == 2
    assert llm.stats["retries"] == 1 and llm.stats["errors"] == 0 and llm.stats["requests"] == 1


def test_a_server_error_is_retried_a_bounded_number_of_times(backend, server: ScriptedServer) -> None:
    llm, key = backend("down")
    response = llm.chat(_ask())
    assert not response.ok and response.error == "HTTP 500" and response.finish_reason == "error" and response.text == ""
    assert server.calls[key] == 3  # the first try + llm.max_retries=2
    assert llm.stats["retries"] == 2 and llm.stats["errors"] == 1

    llm, key = backend("down", "llm.max_retries=0")
    assert llm.chat(_ask()).error == "HTTP 500" and server.calls[key] == 1


def test_a_client_error_is_not_retried(backend, server: ScriptedServer) -> None:
    llm, key = backend("badrequest")
    response = llm.chat(_ask())
    assert response.error == 'HTTP 400: {"error": "context length exceeded"}'
    assert server.calls[key] == 1 and llm.stats["errors"] == 1


def test_a_garbage_body_becomes_an_error_response(backend, server: ScriptedServer) -> None:
    llm, key = backend("garbage")
    response = llm.chat(_ask())
    assert not response.ok and response.error.startswith("malformed response: '<html>502 Bad Gateway")
    assert server.calls[key] == 1 and llm.stats["errors"] == 1


def test_a_reply_cut_off_mid_body_is_retried_and_becomes_an_error(backend, server: ScriptedServer) -> None:
    llm, key = backend("truncated")
    response = llm.chat(_ask())
    assert not response.ok and response.error.startswith("request failed (ChunkedEncodingError")
    assert server.calls[key] == 3


def test_a_reply_slower_than_the_timeout_is_retried_and_becomes_an_error(backend, server: ScriptedServer) -> None:
    llm, key = backend("slow", "llm.timeout_s=0.2")
    started = time.perf_counter()
    response = llm.chat(_ask())
    assert response.error == "timeout after 0.2 s"
    assert server.calls[key] == 3
    assert time.perf_counter() - started < 3.0  # three 0.2 s timeouts and two short backoffs, not three 1 s replies


def test_a_refused_connection_is_retried_and_becomes_an_error(composed_cfg: Callable[..., DictConfig]) -> None:
    cfg = composed_cfg([*FAST_RETRIES, f"llm.base_url=http://127.0.0.1:{_free_port()}/v1"])  # nothing listens there
    llm = OpenAICompatLLM(cfg.llm)
    response = llm.chat(_ask())
    assert not response.ok and response.error == "connection failed (ConnectionError)"
    assert llm.stats["retries"] == 2 and llm.stats["errors"] == 1
    assert dict(llm.chat_many([_ask(), _ask()])).keys() == {0, 1}  # many failures: still answers, never raises


def test_chat_many_answers_every_position_once_with_requests_in_parallel(backend, server: ScriptedServer) -> None:
    llm, key = backend("busy", "llm.parallel=4")
    prompts = [f"question {i}" for i in range(8)]
    results = list(llm.chat_many([_ask(p) for p in prompts]))
    assert sorted(position for position, _ in results) == list(range(8))
    assert all(response.text == f"reply to: {prompts[position]}" for position, response in results)
    assert server.calls[key] == 8
    assert server.max_in_flight >= 2
    assert list(llm.chat_many([])) == []


def test_payload_carries_the_request_and_config(backend, server: ScriptedServer, monkeypatch) -> None:
    monkeypatch.setenv("DOC2LORA_TEST_KEY", "s3cret")
    schema = questions_schema(2)
    llm, key = backend("ok", "llm.api_key_env=DOC2LORA_TEST_KEY", "llm.temperature=0.3", "llm.seed=5", "llm.api_model=my-model")
    llm.chat(_ask(json_schema=schema, stop=["\n\n"]))
    llm.chat(_ask(temperature=0.9, seed=11))
    first, second = server.payloads[key]
    assert first == {
        "model": "my-model", "messages": [{"role": "user", "content": "Which port?"}], "max_tokens": 16, "temperature": 0.3,
        "top_p": 0.95, "seed": 5, "stop": ["\n\n"], "response_format": {"type": "json_object", "schema": schema},
    }
    assert (second["temperature"], second["seed"]) == (0.9, 11) and "stop" not in second and "response_format" not in second
    assert server.headers[key][0]["Authorization"] == "Bearer s3cret"

    llm, key = backend("ok", "llm.response_format=json_schema")
    llm.chat(_ask(json_schema=schema))
    assert server.payloads[key][0]["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    llm, key = backend("ok", "llm.response_format=none", "llm.api_key_env=DOC2LORA_UNSET_KEY")
    llm.chat(_ask(json_schema=schema))
    assert "response_format" not in server.payloads[key][0] and "Authorization" not in server.headers[key][0]


def test_generate_stage_fails_when_every_request_fails_then_resumes(
    server: ScriptedServer, tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    def run(behaviour: str) -> Any:
        url, key = server.url(behaviour)
        overrides = [f"ingest.documents=[{tiny_index.doc}]", *SMALL, "generate.max_chunks=3", *FAST_RETRIES, f"llm.base_url={url}"]
        cfg = make_cfg(overrides, tmp_path)
        ctx = StageContext("generate", cfg, REPO_ROOT, tmp_path / "work", {"chunk": tiny_index.stage_dir("chunk")})
        return generate.run(cfg, ctx), key

    (tmp_path / "work").mkdir()
    with pytest.raises(LLMError, match=r"3 of 3 question requests failed \(first: HTTP 500\)"):
        run("down")
    errors = read_jsonl(tmp_path / "work" / ITEMS_FILE)
    assert [r["status"] for r in errors] == ["error"] * 3 and not (tmp_path / "work" / INSTRUCTIONS_FILE).exists()

    result, key = run("question")  # the same work folder: the failed requests are sent again
    assert server.calls[key] == 3
    questions = read_jsonl(tmp_path / "work" / INSTRUCTIONS_FILE)
    assert [q["question"] for q in questions] == ["Which port does the harbour daemon use?"] * 3
    assert result.metrics["errors"] == 0 and result.metrics["chunk_coverage"] == 1.0


# ---------------------------------------------------------------- the real model behind HTTP

SERVER_DEPENDENCIES = {"sse_starlette": "sse-starlette", "starlette_context": "starlette-context", "pydantic_settings": "pydantic-settings", "uvicorn": "uvicorn", "fastapi": "fastapi"}


def _missing_server_packages() -> list[str]:
    return [package for module, package in SERVER_DEPENDENCIES.items() if importlib.util.find_spec(module) is None]


def _wait_ready(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with status {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout:.0f} s")


def _generate_through(base_url: str, index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    overrides = [
        f"ingest.documents=[{index.doc}]", *SMALL, "generate.max_chunks=2",
        "llm=openai", f"llm.base_url={base_url}", "llm.max_tokens=40", "llm.timeout_s=120", "llm.parallel=2",
    ]
    cfg = make_cfg(overrides, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    result = generate.run(cfg, StageContext("generate", cfg, REPO_ROOT, work, {"chunk": index.stage_dir("chunk")}))
    return result, read_jsonl(work / INSTRUCTIONS_FILE)


@pytest.fixture
def llama_cpp_server() -> Iterator[str]:
    """``python -m llama_cpp.server`` on the embedded SmolLM2, stopped whatever happens."""
    missing = _missing_server_packages()
    if missing:
        pytest.skip(f"llama_cpp.server needs the [server] extra: missing {', '.join(missing)} (pip install 'llama-cpp-python[server]')")
    pytest.importorskip("llama_cpp.server.app", reason="llama_cpp.server does not import")
    model = resolve_gguf("embedded:smollm2", REPO_ROOT)
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v1/models", proc, timeout=90)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_generate_stage_through_a_real_llama_cpp_server(
    llama_cpp_server: str, tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    result, questions = _generate_through(llama_cpp_server, tiny_index, make_cfg, tmp_path)
    assert questions and result.metrics["errors"] == 0
    assert result.metrics["chunk_coverage"] == 1.0


class LlamaChatServer:
    """The OpenAI chat endpoint over the real model, as ``llama_cpp.server`` serves it: one request at a time
    into ``Llama.create_chat_completion`` (messages, sampling, stop, seed and the JSON-schema response_format)."""

    FIELDS = ("messages", "max_tokens", "temperature", "top_p", "seed", "stop", "response_format")

    def __init__(self, model: Path):
        import llama_cpp

        self.llama = llama_cpp.Llama(model_path=str(model), n_ctx=1024, n_threads=1, verbose=False)
        self.lock = threading.Lock()
        self.payloads: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._reply(200, {"object": "list", "data": [{"id": model.name, "object": "model"}]})

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.payloads.append(payload)
                with outer.lock:
                    body = outer.llama.create_chat_completion(**{k: payload[k] for k in outer.FIELDS if k in payload})
                self._reply(200, body)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.llama.close()


def test_generate_stage_through_http_on_the_real_model(tiny_index: BuiltIndex, make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """Runs where the [server] extra is missing too: the same model and chat-completion call, behind plain http.server."""
    chat_server = LlamaChatServer(resolve_gguf("embedded:smollm2", REPO_ROOT))
    try:
        _wait_ready(chat_server.base_url + "/models", None, timeout=10)
        result, questions = _generate_through(chat_server.base_url, tiny_index, make_cfg, tmp_path)
    finally:
        chat_server.close()
    assert len(chat_server.payloads) == 2  # two chunks, one fact and one candidate each
    assert all(p["response_format"]["type"] == "json_object" and p["response_format"]["schema"] == generate.QUESTION_SCHEMA for p in chat_server.payloads)
    items = read_jsonl(tmp_path / "work" / ITEMS_FILE)
    assert all(i["status"] == "ok" and i["raw"].lstrip().startswith("{") for i in items)  # schema-constrained JSON
    assert result.metrics["errors"] == 0 and result.metrics["chunk_coverage"] == 1.0
    assert {q["chunk_id"] for q in questions} == {i["chunk_id"] for i in items} and len(questions) == 2
