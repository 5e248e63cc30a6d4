"""Request rate: in-process llama.cpp vs one llama.cpp server vs a pool of two (``llm.base_url`` as a list).

    .venv/bin/python bench/bench_scale.py [--requests N] [--max-tokens T] [--servers URL,URL,...]

The same question-generation requests (greedy, JSON-constrained, as the generate stage sends them)
go to each engine, one llama.cpp thread per engine: in-process (``LlamaCppLLM.chat_many``, its
sequences batched), one ``python -m llama_cpp.server``, then two such servers behind the pool. Each
server gets two requests in flight (``llm.parallel`` = 2 per server), so it never waits for the client.

From one server's measured seconds per request ``t`` and the client's own cost per request ``c``
(measured against an instant local HTTP server), the rate of N servers is modelled as
``min(N / t, 1 / c)``: the servers scale it until about ``t / c`` of them, then this one client
process bounds it (``llm.parallel`` must also reach N times each server's requests in flight).
With ``--servers`` the pool is made of the given servers (e.g. GPU servers running vLLM or
llama-server): the single-server and pool figures and the model then come from them.
Result: ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from the repository root
    sys.path.insert(0, str(ROOT))

import requests
from omegaconf import OmegaConf

from bench.bench_generate import SYSTEM, TOPIC, USER, split_chunks
from runner.llm.base import ChatRequest, ChatResponse, questions_schema
from runner.llm.llama_cpp import LlamaCppLLM
from runner.llm.openai_compat import OpenAICompatLLM
from runner.core.models import resolve_gguf
from runner.core.schema import LLMConfig

log = logging.getLogger("bench.scale")
PER_SERVER_IN_FLIGHT = 2
MODEL_SERVERS = (1, 2, 4, 8, 16, 32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def llama_server(model: Path, n_ctx: int) -> Iterator[str]:
    """``python -m llama_cpp.server`` on 127.0.0.1 with one thread, stopped with its process group."""
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode} (is the [server] extra installed?)")
        try:
            if requests.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s")


@contextmanager
def instant_server() -> Iterator[str]:
    """An OpenAI-compatible stand-in that answers at once: what is left is the client's own cost."""
    body = json.dumps({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"questions": ["Which port?"]}'}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def build_requests(count: int, max_tokens: int) -> list[ChatRequest]:
    chunks = split_chunks((ROOT / "data" / "sample" / "manual.md").read_text(encoding="utf-8"))
    return [
        ChatRequest(
            messages=[
                {"role": "system", "content": SYSTEM.format(topic=TOPIC)},
                {"role": "user", "content": USER.format(topic=TOPIC, chunk=chunks[i % len(chunks)], n=2)},
            ],
            max_tokens=max_tokens,
            temperature=0.0,
            json_schema=questions_schema(2),
            seed=i,
        )
        for i in range(count)
    ]


def _llm_cfg(max_tokens: int, parallel: int, base_url: Any = None):
    cfg = OmegaConf.structured(LLMConfig)
    cfg.n_threads, cfg.max_tokens, cfg.parallel, cfg.n_ctx = 1, max_tokens, parallel, 2048
    if base_url is not None:
        cfg.backend, cfg.base_url, cfg.max_retries = "openai", base_url, 0
    return cfg


def _timed(llm: Any, requests_: list[ChatRequest], engines: int = 1) -> tuple[list[ChatResponse], float]:
    warmup = ChatRequest([{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0.0)
    list(llm.chat_many([warmup] * engines))  # one-time set-up out of the timing, on every server
    started = time.perf_counter()
    by_position = dict(llm.chat_many(requests_))
    wall = time.perf_counter() - started
    return [by_position[i] for i in range(len(requests_))], wall


def _summary(responses: list[ChatResponse], wall: float) -> dict[str, Any]:
    completion = sum(r.completion_tokens for r in responses)
    return {
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(responses) / wall, 3),
        "seconds_per_request": round(wall / len(responses), 3),
        "completion_tok_per_s": round(completion / wall, 1),
        "errors": sum(not r.ok for r in responses),
    }


def measure_servers(urls: list[str], requests_: list[ChatRequest], max_tokens: int) -> tuple[list[ChatResponse], dict[str, Any]]:
    llm = OpenAICompatLLM(_llm_cfg(max_tokens, PER_SERVER_IN_FLIGHT * len(urls), urls))
    try:
        responses, wall = _timed(llm, requests_, engines=len(urls))
    finally:
        llm.close()
    return responses, {**_summary(responses, wall), "servers": len(urls), "per_server": llm.last_batch["per_server"]}


def measure_client_cost(count: int = 400) -> float:
    """Seconds of client work per request (HTTP, JSON, threads), against a server that answers at once."""
    with instant_server() as url:
        llm = OpenAICompatLLM(_llm_cfg(16, 8, url))
        try:
            _, wall = _timed(llm, [ChatRequest([{"role": "user", "content": f"q{i}"}], max_tokens=16) for i in range(count)])
        finally:
            llm.close()
    return wall / count


def model_rates(seconds_per_request: float, client_seconds: float) -> dict[str, float]:
    """Requests/s of N servers: each serves 1/seconds_per_request, the client caps the sum."""
    ceiling = 1.0 / client_seconds
    return {str(n): round(min(n / seconds_per_request, ceiling), 2) for n in MODEL_SERVERS}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--servers", default=None, help="comma-separated base URLs to measure instead of starting llama.cpp servers here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    requests_ = build_requests(args.requests, args.max_tokens)
    model = resolve_gguf("embedded:smollm2", ROOT)
    result: dict[str, Any] = {
        "benchmark": "scale",
        "requests": len(requests_),
        "max_tokens": args.max_tokens,
        "in_flight_per_server": PER_SERVER_IN_FLIGHT,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_before": [round(x, 2) for x in os.getloadavg()]},
    }

    if args.servers is None:
        inprocess = LlamaCppLLM(model, _llm_cfg(args.max_tokens, 4))
        try:
            inprocess_responses, wall = _timed(inprocess, requests_)
        finally:
            inprocess.close()
        result["in_process"] = {**_summary(inprocess_responses, wall), "engine": "llama_cpp (n_threads=1, parallel=4 sequences batched)"}
        with ExitStack() as stack:
            urls = [stack.enter_context(llama_server(model, 2048)) for _ in range(2)]
            one_responses, result["one_server"] = measure_servers(urls[:1], requests_, args.max_tokens)
            two_responses, result["two_servers"] = measure_servers(urls, requests_, args.max_tokens)
        result["engine"] = f"python -m llama_cpp.server, {model.name}, n_threads=1 each"
    else:
        urls = [url.strip() for url in args.servers.split(",") if url.strip()]
        one_responses, result["one_server"] = measure_servers(urls[:1], requests_, args.max_tokens)
        two_responses, result["two_servers"] = measure_servers(urls, requests_, args.max_tokens)
        result["engine"] = f"given servers: {', '.join(urls)}"

    one, two = result["one_server"], result["two_servers"]
    result["pool_speedup"] = round(two["requests_per_s"] / one["requests_per_s"], 3)
    result["identical_outputs_one_vs_pool"] = sum(a.text == b.text for a, b in zip(one_responses, two_responses))
    if "in_process" in result:
        result["one_server_vs_in_process"] = round(one["requests_per_s"] / result["in_process"]["requests_per_s"], 3)
    client = measure_client_cost()
    result["client_seconds_per_request"] = round(client, 5)
    result["model_requests_per_s"] = model_rates(one["seconds_per_request"], client)
    # past this many servers the pool is bound by this one client process, not by the servers
    result["model_servers_until_client_bound"] = round(one["seconds_per_request"] / client)
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{len(requests_)} requests, max_tokens {args.max_tokens}, {result['engine']}")
    print(f"{'engine':<34}{'wall s':>8}{'req/s':>8}{'s/req':>8}{'gen tok/s':>11}{'errors':>8}")
    for label, key in (("in-process llama.cpp", "in_process"), ("one server", "one_server"), ("two servers (pool)", "two_servers")):
        if key in result:
            s = result[key]
            print(f"{label:<34}{s['wall_s']:>8.1f}{s['requests_per_s']:>8.3f}{s['seconds_per_request']:>8.2f}{s['completion_tok_per_s']:>11.1f}{s['errors']:>8}")
    print(f"two servers / one server: {result['pool_speedup']:.2f}x; identical outputs {result['identical_outputs_one_vs_pool']}/{len(requests_)}")
    print(f"client cost {client * 1000:.2f} ms/request; modelled req/s for N servers: {result['model_requests_per_s']}")
    print(f"the client, not the servers, bounds a pool of more than {result['model_servers_until_client_bound']} such servers")
    print(f"written to {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
