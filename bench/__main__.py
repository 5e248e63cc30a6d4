"""Run every ``bench/bench_*.py`` benchmark in turn: ``python -m bench``."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

log = logging.getLogger("bench")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    failed = []
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        log.info("running %s", script.name)
        try:
            importlib.import_module(f"bench.{script.stem}").main([])
        except Exception:  # one broken benchmark must not hide the others' results
            log.exception("%s failed", script.name)
            failed.append(script.name)
    if failed:
        log.error("failed: %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
