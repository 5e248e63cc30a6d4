"""Question generation: one request at a time (the original way) vs batched ``chat_many``.

    .venv/bin/python bench/bench_generate.py [--chunks N] [--parallel P] [--max-tokens T]

Both runs use the same model instance, prompts, greedy decoding and max_tokens; the result
goes to ``bench/results/generate.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from the repository root
    sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from runner.llm.base import ChatRequest, ChatResponse, questions_schema  # noqa: E402
from runner.llm.llama_cpp import LlamaCppLLM  # noqa: E402
from runner.core.models import resolve_gguf  # noqa: E402
from runner.core.schema import LLMConfig  # noqa: E402

TOPIC = "Quillstream Relay"
SYSTEM = "You write short, specific exam questions about the {topic} manual. Reply with JSON only."
USER = (
    'Manual excerpt:\n"""\n{chunk}\n"""\n'
    "Write {n} questions about {topic} that this excerpt answers, each ending with \"?\".\n"
    'Reply as JSON: {{"questions": ["...", "..."]}}'
)


def split_chunks(text: str, size: int = 800) -> list[str]:
    """Greedy paragraph packing into pieces of about ``size`` characters."""
    chunks, current = [], ""
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > size:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return chunks


def _summary(responses: list[ChatResponse], wall: float) -> dict[str, Any]:
    prompt = sum(r.prompt_tokens for r in responses)
    completion = sum(r.completion_tokens for r in responses)
    valid = 0
    for r in responses:
        try:
            valid += isinstance(json.loads(r.text).get("questions"), list)
        except (ValueError, AttributeError):
            pass
    return {
        "wall_s": round(wall, 3),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tok_per_s": round(prompt / wall, 1),
        "completion_tok_per_s": round(completion / wall, 1),
        "finish_reasons": {reason: sum(r.finish_reason == reason for r in responses) for reason in ("stop", "length", "error")},
        "valid_json": valid,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--repeat", type=int, default=1, help="alternating rounds; the best time of each mode counts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "generate.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    chunks = split_chunks((ROOT / "data" / "sample" / "manual.md").read_text(encoding="utf-8"))[: args.chunks]
    schema = questions_schema(2)
    requests = [
        ChatRequest(
            messages=[
                {"role": "system", "content": SYSTEM.format(topic=TOPIC)},
                {"role": "user", "content": USER.format(topic=TOPIC, chunk=chunk, n=2)},
            ],
            max_tokens=args.max_tokens,
            temperature=0.0,
            json_schema=schema,
        )
        for chunk in chunks
    ]
    cfg = OmegaConf.structured(LLMConfig)
    cfg.parallel = args.parallel
    cfg.n_threads = args.threads
    cfg.max_tokens = args.max_tokens
    llm = LlamaCppLLM(resolve_gguf("embedded:smollm2", ROOT), cfg)
    try:
        # one tiny request per path first, so neither timing includes one-time graph set-up
        warmup = ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0.0)
        llm.chat(warmup)
        list(llm.chat_many([warmup]))

        # alternating rounds, best wall time of each: on a shared machine a neighbour's burst
        # can slow one phase several-fold
        sequential_walls, batched_walls = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            sequential = [llm.chat(request) for request in requests]
            sequential_walls.append(time.perf_counter() - started)

            started = time.perf_counter()
            batched_by_position = dict(llm.chat_many(requests))
            batched_walls.append(time.perf_counter() - started)
            batched = [batched_by_position[i] for i in range(len(requests))]
        sequential_wall, batched_wall = min(sequential_walls), min(batched_walls)
    finally:
        llm.close()

    differing = [i for i, (a, b) in enumerate(zip(sequential, batched)) if a.text != b.text]
    same = len(requests) - len(differing)
    result = {
        "benchmark": "generate",
        "model": llm.name,
        "machine": {"cpus": os.cpu_count(), "threads": llm.n_threads, "platform": platform.platform()},
        "chunks": len(requests),
        "chunk_chars_mean": round(sum(map(len, chunks)) / max(len(chunks), 1)),
        "parallel": args.parallel,
        "max_tokens": args.max_tokens,
        "temperature": 0.0,
        "repeat": args.repeat,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "sequential": _summary(sequential, sequential_wall),
        "batched": _summary(batched, batched_wall),
        "sequential_walls_s": [round(w, 3) for w in sequential_walls],
        "batched_walls_s": [round(w, 3) for w in batched_walls],
        "speedup": round(sequential_wall / batched_wall, 3),
        "identical_outputs": same,
        "differing": [{"chunk": i, "sequential": sequential[i].text, "batched": batched[i].text} for i in differing],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"{len(requests)} chunks, max_tokens {args.max_tokens}, {llm.n_threads} threads, {llm.name}")
    print(f"{'mode':<22}{'wall s':>8}{'prompt tok/s':>14}{'gen tok/s':>11}{'valid json':>12}")
    for label, key in (("sequential (chat)", "sequential"), (f"batched (parallel={args.parallel})", "batched")):
        s = result[key]
        print(f"{label:<22}{s['wall_s']:>8.2f}{s['prompt_tok_per_s']:>14.1f}{s['completion_tok_per_s']:>11.1f}{s['valid_json']:>7}/{len(requests)}")
    print(f"speed-up {result['speedup']:.2f}x; identical greedy outputs {same}/{len(requests)}; written to {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
