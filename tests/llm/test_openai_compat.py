"""OpenAI-compatible backend: requests sent in parallel with the configured payload (on the scripted server
of tests/scripted_server.py), a real llama.cpp server and an HTTP stand-in serving the real model.
(Retries, timeouts, refused connections and broken replies: tests/reliability/test_llm_faults.py.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO_ROOT, BuiltIndex
from omegaconf import DictConfig
from scripted_server import ask, free_port

from runner.core.artifacts import Generate
from runner.core.errors import ConfigError
from runner.core.jsonl import read_jsonl
from runner.llm.base import questions_schema
from runner.core.models import resolve_gguf
from runner.core.schema import validate
from runner.core.stage import StageContext
from runner.stages import generate

# the tiny_index document, one question per chunk
SMALL = ["chunk.size=160", "chunk.overlap=0", "generate.questions_per_chunk=1", "generate.max_facts_per_chunk=1", "generate.candidates_per_fact=1"]


def test_chat_many_answers_every_position_once_with_requests_in_parallel(openai_backend, scripted_server) -> None:
    server = scripted_server
    llm, key = openai_backend("busy", "llm.parallel=4")
    prompts = [f"question {i}" for i in range(8)]
    results = list(llm.chat_many([ask(p) for p in prompts]))
    assert sorted(position for position, _ in results) == list(range(8))
    assert all(response.text == f"reply to: {prompts[position]}" for position, response in results)
    assert server.calls[key] == 8
    assert server.max_in_flight >= 2
    assert list(llm.chat_many([])) == []


def test_payload_carries_the_request_and_config(openai_backend, scripted_server, monkeypatch) -> None:
    backend, server = openai_backend, scripted_server
    monkeypatch.setenv("DOC2LORA_TEST_KEY", "s3cret")
    schema = questions_schema(2)
    llm, key = backend("ok", "llm.api_key_env=DOC2LORA_TEST_KEY", "llm.temperature=0.3", "llm.seed=5", "llm.api_model=my-model")
    llm.chat(ask(json_schema=schema, stop=["\n\n"]))
    llm.chat(ask(temperature=0.9, seed=11))
    first, second = server.payloads[key]
    assert first == {
        "model": "my-model", "messages": [{"role": "user", "content": "Which port?"}], "max_tokens": 16, "temperature": 0.3,
        "top_p": 0.95, "seed": 5, "stop": ["\n\n"], "response_format": {"type": "json_object", "schema": schema},
    }
    assert (second["temperature"], second["seed"]) == (0.9, 11) and "stop" not in second and "response_format" not in second
    assert server.headers[key][0]["Authorization"] == "Bearer s3cret"

    llm, key = backend("ok", "llm.response_format=json_schema")
    llm.chat(ask(json_schema=schema))
    assert server.payloads[key][0]["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    llm, key = backend("ok", "llm.response_format=none", "llm.api_key_env=DOC2LORA_UNSET_KEY")
    llm.chat(ask(json_schema=schema))
    assert "response_format" not in server.payloads[key][0] and "Authorization" not in server.headers[key][0]


# ---------------------------------------------------------------- a pool of servers (llm.base_url as a list)


@pytest.fixture
def pool_backend(scripted_server, composed_cfg: Callable[..., DictConfig]):
    """``pool_backend(behaviours, *overrides)`` -> (the backend over one scripted server per behaviour, their keys)."""
    from scripted_server import FAST_RETRIES

    from runner.llm import create_llm

    made: list[Any] = []

    def _make(behaviours: list[str], *overrides: str) -> tuple[Any, list[str]]:
        urls, keys = zip(*(scripted_server.url(b) for b in behaviours))
        cfg = composed_cfg([*FAST_RETRIES, f"llm.base_url=[{','.join(urls)}]", *overrides])
        validate(cfg)
        llm = create_llm(cfg.llm, cfg.model, REPO_ROOT)
        made.append(llm)
        return llm, list(keys)

    yield _make
    for llm in made:
        llm.close()


def test_a_pool_spreads_requests_over_its_servers_and_reports_the_rate(pool_backend, scripted_server) -> None:
    llm, keys = pool_backend(["busy", "busy"], "llm.parallel=4")
    prompts = [f"question {i}" for i in range(8)]
    results = dict(llm.chat_many([ask(p) for p in prompts]))
    assert {position: r.text for position, r in results.items()} == {i: f"reply to: {p}" for i, p in enumerate(prompts)}
    assert [scripted_server.calls[k] for k in keys] == [4, 4]  # equal servers, equal shares
    batch = llm.last_batch
    assert batch["requests"] == 8 and list(batch["per_server"].values()) == [4, 4]
    # 8 requests of 0.15 s, 2 per server at a time: about 0.3 s, not the 1.2 s of one request at a time
    assert batch["requests_per_s"] == pytest.approx(8 / batch["wall_s"]) and batch["wall_s"] < 1.0


def test_the_least_busy_server_gets_the_next_request(pool_backend, scripted_server) -> None:
    """A 1-second server beside an instant one: round robin would give each 3 of 6 requests."""
    llm, (slow, fast) = pool_backend(["slow", "ok"], "llm.parallel=2")
    results = list(llm.chat_many([ask(f"q{i}") for i in range(6)]))
    assert len(results) == 6 and all(r.ok for _, r in results)
    assert (scripted_server.calls[slow], scripted_server.calls[fast]) == (1, 5)


def test_a_retry_goes_to_another_server_of_the_pool(pool_backend, scripted_server) -> None:
    llm, (down, up) = pool_backend(["down", "ok"], "llm.parallel=1")
    results = [llm.chat(ask(f"q{i}")) for i in range(4)]
    assert all(r.ok for r in results) and llm.stats["errors"] == 0
    # the first request meets the broken server and is retried on the other; the broken one then
    # comes last while it cools down, so the next requests go straight to the working one
    assert (scripted_server.calls[down], scripted_server.calls[up], llm.stats["retries"]) == (1, 4, 1)


def test_base_url_is_one_url_or_a_list_of_them(composed_cfg: Callable[..., DictConfig]) -> None:
    from runner.llm.openai_compat import base_urls

    assert base_urls(composed_cfg(["llm=openai"]).llm.base_url) == ["http://127.0.0.1:8080/v1"]
    cfg = composed_cfg(["llm=openai", "llm.base_url=[http://a:8000/v1/,https://b/v1]"])
    validate(cfg)
    assert base_urls(cfg.llm.base_url) == ["http://a:8000/v1", "https://b/v1"]
    for bad in ("[]", "[http://a:8000/v1,b:8000]", "gpu-box:8000"):
        with pytest.raises(ConfigError, match=r"llm\.base_url=.* is invalid: must be an http\(s\) URL or a list of them"):
            validate(composed_cfg(["llm=openai", f"llm.base_url={bad}"]))


def test_a_pool_may_keep_more_requests_in_flight_than_one_llama_cpp_context(composed_cfg: Callable[..., DictConfig]) -> None:
    """Eight GPU servers that each want 32 requests in flight need llm.parallel=256 (in-process: at most 64)."""
    validate(composed_cfg(["llm=openai", "llm.parallel=256"]))
    with pytest.raises(ConfigError, match=r"llm\.parallel=65 is invalid: must be in \[1, 64\] with llm\.backend=llama_cpp"):
        validate(composed_cfg(["llm.parallel=65"]))
    with pytest.raises(ConfigError, match=r"must be in \[1, 1024\] with llm\.backend=openai"):
        validate(composed_cfg(["llm=openai", "llm.parallel=1025"]))


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
    return result, read_jsonl(work / Generate.INSTRUCTIONS)


@pytest.fixture
def llama_cpp_server() -> Iterator[str]:
    """``python -m llama_cpp.server`` on the embedded SmolLM2, stopped whatever happens."""
    missing = _missing_server_packages()
    if missing:
        pytest.skip(f"llama_cpp.server needs the [server] extra: missing {', '.join(missing)} (pip install 'llama-cpp-python[server]')")
    pytest.importorskip("llama_cpp.server.app", reason="llama_cpp.server does not import")
    model = resolve_gguf("embedded:smollm2", REPO_ROOT)
    port = free_port()
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
    items = read_jsonl(tmp_path / "work" / Generate.ITEMS)
    assert all(i["status"] == "ok" and i["raw"].lstrip().startswith("{") for i in items)  # schema-constrained JSON
    assert result.metrics["errors"] == 0 and result.metrics["chunk_coverage"] == 1.0
    assert {q["chunk_id"] for q in questions} == {i["chunk_id"] for i in items} and len(questions) == 2
