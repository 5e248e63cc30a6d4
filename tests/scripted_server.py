"""A scripted OpenAI-compatible server on 127.0.0.1 for the HTTP backend's tests: real sockets, real
HTTP, replies chosen per URL (429, 500, 400, garbage, cut-off bodies, slow replies, empty content)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# fast retries for tests: two retries after the first try, 10 ms backoff, 2 s timeout
FAST_RETRIES = ["llm=openai", "llm.retry_backoff_s=0.01", "llm.max_retries=2", "llm.timeout_s=2"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


class ScriptedServer:
    """Behaviour chosen by the first path segment: http://host:port/<behaviour>-<id>/v1/chat/completions.

    ok, busy (0.15 s), flaky (429 once), down (500), badrequest (400 context length exceeded), garbage
    (an HTML body), truncated (hangs up mid-body), slow (1 s), question (a JSON question), empty (no
    content), mixed (per request, by a word of its prompt: ``url("mixed", {word: behaviour})``).
    """

    def __init__(self) -> None:
        self.mixed: dict[str, dict[str, str]] = {}  # key -> {word in the prompt: behaviour for that request}
        self.calls: Counter[str] = Counter()
        self.payloads: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, behaviour: str, mixed: dict[str, str] | None = None) -> tuple[str, str]:
        """A base_url with a fresh key (so counts never mix between tests) and that key.
        With ``mixed`` (behaviour "mixed"), calls are also counted per word: ``calls[f"{key}:{word}"]``."""
        key = f"{behaviour}-{uuid.uuid4().hex[:8]}"
        self.mixed[key] = dict(mixed or {})
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
                    self._respond(key, behaviour, attempt, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _respond(self, key: str, behaviour: str, attempt: int, payload: dict[str, Any]) -> None:
                prompt = payload["messages"][-1]["content"]
                if behaviour == "mixed":  # the behaviour of the first rule word in the prompt, counted per word
                    word, behaviour = next(((w, b) for w, b in server.mixed[key].items() if w in prompt), ("other", "ok"))
                    with server.lock:
                        server.calls[f"{key}:{word}"] += 1
                        attempt = server.calls[f"{key}:{word}"]
                ok = json.dumps(completion(f"reply to: {prompt}")).encode()
                if server.mixed.get(key):  # mixed: a success is a JSON question about the word
                    ok = json.dumps(completion(json.dumps({"question": f"What does the manual say about the {word}?"}))).encode()
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
                    self._send(200, json.dumps(completion('{"question": "Which port does the harbour daemon use?"}')).encode())
                elif behaviour == "empty":  # a well-formed reply with nothing in it
                    self._send(200, json.dumps(completion("")).encode())
                else:
                    self._send(404, b"{}")

        return Handler

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ask(text: str = "Which port?", **kwargs: Any):
    """A one-message chat request, 16 tokens."""
    from runner.llm.base import ChatRequest

    return ChatRequest([{"role": "user", "content": text}], max_tokens=16, **kwargs)
