"""Prove that the native parts (llama.cpp, mlx, torch, FAISS, the embedding model) run on this machine.

A native library built for instructions this machine does not allow does not raise an exception: it
kills the process with a signal (llama.cpp's AMX kernels on a VM that forbids AMX tile state died with
SIGILL at the first decode). So every part is loaded and exercised in a child process, and a crash
becomes one readable line naming the part, the signal and the fix.

``python -m runner.engine.native`` (the last step of ``make install``) checks every part and exits non-zero
when one fails; the pipeline checks the parts a run will use before any stage starts
(:func:`check_parts`), remembering a pass per machine, library files and model.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from runner.core.errors import RunnerError

CHECK_TIMEOUT_S = 300
REINSTALL_LLAMA = "rebuild it portably with `make reinstall-llama` (GGML_NATIVE=OFF, AVX2 baseline, no AMX)"

# Each snippet runs in a fresh interpreter with the part's argument in sys.argv[1] and prints one
# JSON object {"detail": ...} on success. They do real work: a load alone does not run the kernels.
_LLAMA = """
import json, sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_batch=64, n_threads=1, verbose=False)
prompt = llm.tokenize(b"Count: one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve,")
out = llm.create_completion(prompt=prompt, max_tokens=4, temperature=0.0)
print(json.dumps({"detail": f"{len(prompt)}-token prompt, {out['usage']['completion_tokens']} tokens decoded"}))
"""
_MLX = """
import json, mlx.core as mx
a = mx.random.normal((128, 128))
value = float(mx.sum(a @ a.T).item())
print(json.dumps({"detail": f"128x128 matmul on {mx.default_device()}"}))
"""
_TORCH = """
import json, torch
a = torch.randn(128, 128)
value = float((a @ a.T).sum())
print(json.dumps({"detail": f"torch {torch.__version__}, 128x128 matmul, {torch.get_num_threads()} threads"}))
"""
_FAISS = """
import json, faiss, numpy as np
vectors = np.random.default_rng(0).random((64, 32), dtype=np.float32)
index = faiss.IndexFlatIP(32)
index.add(vectors)
_, ids = index.search(vectors[:2], 3)
print(json.dumps({"detail": f"faiss {faiss.__version__}, top-3 search"}))
"""
_PDFIUM = """
import json, pypdfium2 as pdfium
document = pdfium.PdfDocument.new()
page = document.new_page(200, 200)
text = page.get_textpage().get_text_range()
print(json.dumps({"detail": f"pypdfium2 {pdfium.version.PYPDFIUM_INFO}, a page read"}))
"""
_EMBEDDINGS = """
import json, os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
vector = model.encode(["The relay listens on port 7460."])
print(json.dumps({"detail": f"embedding of dimension {vector.shape[1]}"}))
"""


@dataclass(frozen=True)
class Part:
    name: str
    package: str  # the distribution whose files the check exercises (for the pass record)
    code: str
    fix: str


PARTS: dict[str, Part] = {
    "llama.cpp": Part("llama.cpp", "llama-cpp-python", _LLAMA, REINSTALL_LLAMA),
    "mlx": Part("mlx", "mlx", _MLX, "reinstall it: `.venv/bin/pip install --force-reinstall 'mlx[cpu]'`, or use train=peft"),
    "torch": Part("torch", "torch", _TORCH, "reinstall the CPU build: `.venv/bin/pip install --force-reinstall torch==2.13.0`"),
    "faiss": Part("faiss", "faiss-cpu", _FAISS, "reinstall it: `.venv/bin/pip install --force-reinstall faiss-cpu`"),
    "embeddings": Part("embeddings", "sentence-transformers", _EMBEDDINGS, "reinstall torch and sentence-transformers (`make install`)"),
    "pdfium": Part("pdfium", "pypdfium2", _PDFIUM, "reinstall it: `.venv/bin/pip install --force-reinstall pypdfium2`, or set ingest.pdf_extractor=pypdf"),
}


@dataclass
class Outcome:
    part: str
    ok: bool
    detail: str
    seconds: float
    fix: str = ""
    cached: bool = False

    def line(self) -> str:
        """One line for the console: the part, what happened, and on failure the fix."""
        if self.ok:
            return f"ok    {self.part:<11} {self.detail} ({self.seconds:.1f} s{', passed before' if self.cached else ''})"
        return f"FAIL  {self.part:<11} {self.detail}; fix: {self.fix}"


class NativeError(RunnerError):
    """A native library cannot run on this machine."""


def _signal_text(returncode: int) -> str:
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    meaning = {
        "SIGILL": "illegal instruction: the library uses CPU instructions this machine does not allow",
        "SIGSEGV": "segmentation fault",
        "SIGBUS": "bus error",
        "SIGABRT": "aborted",
        "SIGKILL": "killed, often by the kernel for lack of memory",
        "SIGFPE": "arithmetic fault",
    }.get(name)
    return f"{name} ({meaning})" if meaning else name


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def run_check(part: Part, argument: str = "", timeout_s: float = CHECK_TIMEOUT_S) -> Outcome:
    """Exercise one part in a child process; a signal, an exception or a hang becomes a failed outcome."""
    started = time.perf_counter()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONFAULTHANDLER": "0"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", part.code, argument], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.TimeoutExpired:
        return Outcome(part.name, False, f"did not finish within {timeout_s:.0f} s", time.perf_counter() - started, part.fix)
    seconds = time.perf_counter() - started
    if done.returncode < 0:
        return Outcome(part.name, False, f"crashed with {_signal_text(done.returncode)}", seconds, part.fix)
    if done.returncode != 0:
        return Outcome(part.name, False, f"failed: {_last_error_line(done.stderr)}", seconds, part.fix)
    try:
        detail = json.loads(done.stdout.strip().splitlines()[-1])["detail"]
    except (IndexError, ValueError, KeyError):
        detail = "ran"
    return Outcome(part.name, True, detail, seconds)


def _cpu_signature() -> str:
    """What the CPU allows: the flags line of /proc/cpuinfo (Linux), else the processor name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _package_files(distribution: str) -> list[str]:
    """Version and install location of a distribution, and for llama.cpp the shared libraries it loads."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return [distribution, "not installed"]
    found = [distribution, version]
    if distribution == "llama-cpp-python":
        folder = llama_library_dir()
        if folder is not None and folder.is_dir():
            for lib in sorted(folder.glob("lib*")):
                stat = lib.stat()
                found.append(f"{lib}:{stat.st_size}:{stat.st_mtime_ns}")
    return found


def _pass_key(part: Part, argument: str) -> str:
    """A pass holds for this machine's CPU, this interpreter, the part's files and its argument (the model)."""
    target = Path(argument) if argument else None
    model = [str(target), target.stat().st_size, target.stat().st_mtime_ns] if target and target.exists() else argument
    payload = [part.name, part.code, sys.executable, socket.gethostname(), _cpu_signature(), _package_files(part.package), model]
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()[:20]


def check_parts(
    wanted: dict[str, str], record_dir: Optional[Path] = None, timeout_s: float = CHECK_TIMEOUT_S
) -> list[Outcome]:
    """Check ``{part name: argument}`` in parallel child processes, in the order given.

    With ``record_dir``, a part that passed before on this machine with the same files is not run again."""

    def one(name: str) -> Outcome:
        part, argument = PARTS[name], wanted[name]
        record = record_dir / f"{name}-{_pass_key(part, argument)}.json" if record_dir else None
        if record is not None and record.is_file():
            previous = json.loads(record.read_text())
            return Outcome(name, True, previous["detail"], previous["seconds"], cached=True)
        outcome = run_check(part, argument, timeout_s)
        if outcome.ok and record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_name(f".{record.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"detail": outcome.detail, "seconds": outcome.seconds}))
            os.replace(tmp, record)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        return list(pool.map(one, list(wanted)))


# AMX tile instructions (tile loads/stores/config and the tile dot products); a VM may advertise AMX in
# /proc/cpuinfo and still kill the process that uses them
AMX_MNEMONICS = re.compile(r"\s(ldtilecfg|sttilecfg|tilerelease|tilezero|tileloadd|tileloaddt1|tilestored|tdpb[su][su]d|tdpbf16ps|tdpfp16ps)\b")


def llama_library_dir() -> Optional[Path]:
    """The folder llama-cpp-python loads its shared libraries from ($LLAMA_CPP_LIB_PATH or its own lib/)."""
    if os.environ.get("LLAMA_CPP_LIB_PATH"):
        return Path(os.environ["LLAMA_CPP_LIB_PATH"])
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


def amx_instructions(library: Path) -> list[str]:
    """The AMX instructions in a shared library's code, by disassembly (objdump, from binutils)."""
    done = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True, check=True)
    return [found.group(1) for found in AMX_MNEMONICS.finditer(done.stdout)]


def pass_record_dir() -> Path:
    """Where passes are remembered: per user, since a pass is keyed by machine, interpreter and library files."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "doc2lora" / "native-checks"


def raise_on_failure(outcomes: Sequence[Outcome]) -> None:
    """One error line for the first failed part (the others are logged by the caller)."""
    failed = [o for o in outcomes if not o.ok]
    if failed:
        first = failed[0]
        others = f" (also failing: {', '.join(o.part for o in failed[1:])})" if failed[1:] else ""
        raise NativeError(f"{first.part} {first.detail} on {socket.gethostname()}; fix: {first.fix}{others}")


def default_arguments(root: Path) -> dict[str, str]:
    """Every part with the embedded models as arguments (what ``make install`` proves)."""
    from runner.core.models import resolve_embedding_model, resolve_gguf

    wanted = {
        "llama.cpp": str(resolve_gguf("embedded:smollm2", root)),
        "torch": "",
        "faiss": "",
        "embeddings": resolve_embedding_model("embedded:all-minilm-l6-v2", root),
        "pdfium": "",
    }
    if importlib.util.find_spec("mlx") is not None:
        wanted["mlx"] = ""
    return wanted


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.engine.native", description="Prove every native part runs on this machine.")
    parser.add_argument("--root", default=".", help="project root (for the embedded models)")
    args = parser.parse_args(argv)
    try:
        wanted = default_arguments(Path(args.root).resolve())
    except RunnerError as exc:
        print(f"FAIL  {exc}", file=sys.stderr)
        return 1
    outcomes = check_parts(wanted)
    for outcome in outcomes:
        print(outcome.line(), file=sys.stdout if outcome.ok else sys.stderr)
    failed = [o.part for o in outcomes if not o.ok]
    if failed:
        print(f"native check: {len(failed)} of {len(outcomes)} parts cannot run on this machine: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"native check: all {len(outcomes)} parts run on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
