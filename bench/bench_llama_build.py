"""llama.cpp builds side by side: the shipped portable build vs a native one (``-march=native`` without AMX).

    .venv/bin/python bench/bench_llama_build.py [--rounds 3] [--threads 2]

The shipped build (``make install``) compiles llama.cpp for the x86-64 AVX2/FMA/F16C baseline so the
wheel runs on any machine it is copied to and never emits AMX or AVX-512 code. This benchmark builds
(once, cached under ~/.cache/doc2lora/wheels) the native variant that the issue compared against:
``GGML_NATIVE=ON`` with ``-mno-amx-tile -mno-amx-int8 -mno-amx-bf16``, and runs the same workload on
both in child processes (``LLAMA_CPP_LIB_PATH`` selects the library), alternating A/B for ``--rounds``:
a ~400-token prompt and 128 greedy tokens with the embedded SmolLM2. Result: ``bench/results/llama_build.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner.core.models import resolve_gguf  # noqa: E402
from runner.engine.native import amx_instructions, llama_library_dir  # noqa: E402

NATIVE_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
NATIVE_CMAKE_ARGS = f"-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON -DCMAKE_C_FLAGS='{NATIVE_FLAGS}' -DCMAKE_CXX_FLAGS='{NATIVE_FLAGS}'"

_WORKLOAD = """
import json, sys, time, llama_cpp
path, threads = sys.argv[1], int(sys.argv[2])
llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
text = open(sys.argv[3]).read()[:1800]
prompt = llm.tokenize(("Summarise this manual excerpt.\\n" + text).encode())
started = time.perf_counter()
llm.eval(prompt)
prompt_s = time.perf_counter() - started
llm.reset()
started = time.perf_counter()
out = llm.create_completion(prompt=prompt, max_tokens=128, temperature=0.0)
total_s = time.perf_counter() - started
generated = out["usage"]["completion_tokens"]
print(json.dumps({"prompt_tokens": len(prompt), "prompt_tok_s": len(prompt) / prompt_s,
                  "generated": generated, "gen_tok_s": generated / max(total_s - prompt_s, 1e-9)}))
"""


def native_library(version: str) -> Path:
    """The lib/ folder of a native (no AMX) build of llama-cpp-python ``version``, built once."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "doc2lora" / "wheels" / f"llama-cpp-python-{version}-native-noamx"
    lib = home / "lib"
    if (lib / "libllama.so").is_file():
        return lib
    home.mkdir(parents=True, exist_ok=True)
    wheels = list(home.glob("llama_cpp_python-*.whl"))
    if not wheels:
        print(f"building llama-cpp-python {version} natively (about 5 minutes) ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
             "-w", str(home), f"llama-cpp-python=={version}"],
            env={**os.environ, "CMAKE_ARGS": NATIVE_CMAKE_ARGS}, check=True,
        )
        wheels = list(home.glob("llama_cpp_python-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            if name.startswith("llama_cpp/lib/"):
                target = lib / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.read(name))
    return lib


def run_workload(lib: Path, gguf: Path, threads: int) -> dict[str, float]:
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKLOAD, str(gguf), str(threads), str(ROOT / "data" / "sample" / "manual.md")],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import importlib.metadata

    version = importlib.metadata.version("llama-cpp-python")
    gguf = resolve_gguf("embedded:smollm2", ROOT)
    builds = {"portable (shipped)": llama_library_dir(), "native, no AMX": native_library(version)}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for _ in range(args.rounds):
        for name, lib in builds.items():  # alternate, so background load hits both alike
            rows[name].append(run_workload(lib, gguf, args.threads))
    summary = {
        name: {
            "prompt_tok_s": _median(results, "prompt_tok_s"),
            "gen_tok_s": _median(results, "gen_tok_s"),
            "amx_instructions": len(amx_instructions(builds[name] / "libggml-cpu.so")),
            "runs": results,
        }
        for name, results in rows.items()
    }
    portable, native = summary["portable (shipped)"], summary["native, no AMX"]
    result = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "builds": summary,
        "prompt_ratio_portable_over_native": portable["prompt_tok_s"] / native["prompt_tok_s"],
        "gen_ratio_portable_over_native": portable["gen_tok_s"] / native["gen_tok_s"],
    }
    out = ROOT / "bench" / "results" / "llama_build.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{'build':<20} {'prompt tok/s':>13} {'gen tok/s':>10} {'AMX instr.':>11}")
    for name, row in summary.items():
        print(f"{name:<20} {row['prompt_tok_s']:>13.1f} {row['gen_tok_s']:>10.1f} {row['amx_instructions']:>11d}")
    print(f"portable / native: prompt {result['prompt_ratio_portable_over_native']:.2f}x, generation {result['gen_ratio_portable_over_native']:.2f}x")
    return result


if __name__ == "__main__":
    main()
