"""Native parts proven to run here: the shipped llama.cpp build holds no AMX code, and a library that
crashes (a signal, not an exception) becomes one readable line at install and at run start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner.core.models import resolve_gguf
from runner.engine.native import PARTS, amx_instructions, check_parts, llama_library_dir, run_check

REPO_ROOT = Path(__file__).resolve().parents[2]
# AMX intrinsics: what llama.cpp's native build compiles on a CPU that reports AMX
AMX_SOURCE = """
#include <immintrin.h>
void tile_dot(const void *a, const void *b, void *c) {
    _tile_loadd(1, a, 64);
    _tile_loadd(2, b, 64);
    _tile_dpbssd(0, 1, 2);
    _tile_stored(0, c, 64);
    _tile_release();
}
"""
# a library that executes an illegal instruction (ud2) as it loads, as an AMX kernel does on a VM without AMX
CRASH_ON_LOAD = "__attribute__((constructor)) static void crash(void) { __builtin_trap(); }\n"


def _compile(tmp_path: Path, source: str, name: str, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (it builds llama.cpp, so a project install has it)")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name / "libllama.so"
    out.parent.mkdir()
    done = subprocess.run(["gcc", "-O1", "-shared", "-fPIC", *flags, "-o", str(out), str(src)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"gcc cannot build this test library: {done.stderr.strip()[:200]}")
    return out


def test_the_installed_llama_cpp_build_holds_no_amx_instructions() -> None:
    """Independent of this machine's CPU: the build must not contain code some VMs kill the process for."""
    folder = llama_library_dir()
    assert folder is not None and (folder / "libggml-cpu.so").is_file(), folder
    found = amx_instructions(folder / "libggml-cpu.so")
    assert found == [], f"{len(found)} AMX instructions in {folder / 'libggml-cpu.so'} (e.g. {found[:3]}): rebuild with `make reinstall-llama`"


def test_the_amx_check_finds_tile_instructions_in_a_library_built_with_them(tmp_path: Path) -> None:
    library = _compile(tmp_path, AMX_SOURCE, "amx", "-mamx-tile", "-mamx-int8")
    found = amx_instructions(library)
    assert {"tileloadd", "tdpbssd", "tilestored", "tilerelease"} <= set(found)


@pytest.fixture(scope="module")
def smollm2() -> str:
    return str(resolve_gguf("embedded:smollm2", REPO_ROOT))


def test_every_part_runs_here(smollm2: str) -> None:
    outcomes = check_parts({"llama.cpp": smollm2, "faiss": "", "mlx": ""})
    assert [(o.part, o.ok) for o in outcomes] == [("llama.cpp", True), ("faiss", True), ("mlx", True)], [o.line() for o in outcomes]
    assert "4 tokens decoded" in outcomes[0].detail


def test_a_library_that_crashes_is_one_line_naming_the_part_the_signal_and_the_fix(
    tmp_path: Path, smollm2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing = _compile(tmp_path, CRASH_ON_LOAD, "crash")
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(crashing.parent))
    outcome = run_check(PARTS["llama.cpp"], smollm2)
    assert not outcome.ok
    line = outcome.line()
    assert line.startswith("FAIL  llama.cpp") and "SIGILL (illegal instruction" in line and "make reinstall-llama" in line
    assert "\n" not in line


def test_a_truncated_library_fails_its_check(tmp_path: Path, smollm2: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "truncated"
    folder.mkdir()
    real = llama_library_dir() / "libllama.so"
    (folder / "libllama.so").write_bytes(real.read_bytes()[:100_000])
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(folder))
    outcome = run_check(PARTS["llama.cpp"], smollm2)
    assert not outcome.ok and outcome.part == "llama.cpp"
    assert "crashed with SIG" in outcome.detail or "failed:" in outcome.detail


def test_a_pass_is_remembered_for_the_same_library_files(tmp_path: Path) -> None:
    first = check_parts({"faiss": ""}, record_dir=tmp_path)
    again = check_parts({"faiss": ""}, record_dir=tmp_path)
    assert first[0].ok and not first[0].cached
    assert again[0].ok and again[0].cached and again[0].detail == first[0].detail


def test_install_check_and_run_start_report_a_crashing_llama_cpp_in_one_line(tmp_path: Path) -> None:
    """What `make install` runs (python -m runner.engine.native) and what a run does before its first stage."""
    crashing = _compile(tmp_path, CRASH_ON_LOAD, "crash")
    env = {**os.environ, "LLAMA_CPP_LIB_PATH": str(crashing.parent)}
    env.pop("MLFLOW_TRACKING_URI", None)

    install = subprocess.run([sys.executable, "-m", "runner.engine.native", "--root", str(REPO_ROOT)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert install.returncode == 1
    failures = [line for line in install.stderr.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1 and failures[0].startswith("FAIL  llama.cpp") and "SIGILL" in failures[0], install.stderr

    mlruns = tmp_path / "mlruns"
    run = subprocess.run(
        [sys.executable, "-m", "runner", "debug=tiny", "until=generate", f"paths.output_dir={tmp_path / 'outputs'}", f"paths.mlruns_dir={mlruns}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: llama.cpp crashed with SIGILL"), run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "Illegal instruction" not in run.stderr
    assert not (tmp_path / "outputs" / "cache" / "generate").exists()  # no stage started

    client = MlflowClient(tracking_uri=f"sqlite:///{mlruns / 'mlflow.db'}")
    (failed,) = client.search_runs([client.get_experiment_by_name("doc2lora").experiment_id])
    assert failed.info.status == "FAILED" and "SIGILL" in failed.data.tags["error"]
