"""OpenBLAS for mlx on Linux: mlx's CPU wheel links a reference BLAS that trains ~15x slower.

The library has to be preloaded before the process starts, so the mlx job runs in a worker
(:mod:`runner.train.worker`) whose environment comes from :func:`fast_blas_env`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import site
import sys
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

_OPENBLAS = Path("cmeel.prefix") / "lib" / "libopenblas.so.0"


def fast_blas_env(base: Optional[dict[str, str]] = None) -> Optional[dict[str, str]]:
    """Environment that preloads cmeel-openblas into an mlx process; None (with a warning) when unavailable.

    ``LD_PRELOAD`` makes OpenBLAS's ``cblas_*`` symbols win over the reference BLAS that
    mlx's wheel links. One OpenBLAS thread is fastest here (mlx already runs ops in
    parallel); an ``OPENBLAS_NUM_THREADS`` already in the environment is kept.
    """
    env = dict(os.environ if base is None else base)
    openblas = _find_site_file(_OPENBLAS)
    if openblas is None:
        log.warning("cmeel-openblas not found: mlx trains with its reference BLAS (~15x slower); pip install cmeel-openblas")
        return None
    mlx_libs = _mlx_cpu_libs()
    paths = [str(mlx_libs)] if mlx_libs else []
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    env["LD_PRELOAD"] = " ".join([str(openblas)] + env.get("LD_PRELOAD", "").split())
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def link_gfortran(env: dict[str, str], scratch: Path) -> dict[str, str]:
    """OpenBLAS needs ``libgfortran.so.5``; mlx's wheel has one under a hashed name: link it in ``scratch``."""
    mlx_libs = _mlx_cpu_libs()
    candidates = sorted(mlx_libs.glob("libgfortran*.so*")) if mlx_libs else []
    if not candidates:
        return env  # rely on a system libgfortran5; the worker reports which BLAS it got
    (scratch / "libgfortran.so.5").symlink_to(candidates[0])
    env = dict(env)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(scratch)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    return env


def _site_dirs() -> list[Path]:
    dirs = [Path(p) for p in sys.path if p]
    try:
        dirs += [Path(p) for p in site.getsitepackages()]
    except AttributeError:  # some virtualenv builds lack it
        pass
    return dirs


def _find_site_file(relative: Path) -> Optional[Path]:
    for folder in _site_dirs():
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def _mlx_cpu_libs() -> Optional[Path]:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        libs = Path(location).parent / "mlx_cpu.libs"
        if libs.is_dir():
            return libs
    return None
