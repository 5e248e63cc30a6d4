"""The reliability report: every reliability test records what it tried and what happened.

``reliability_report.record(item=..., case=..., outcome=..., items_lost=...)`` adds one row; at the
end of the session the rows are written as a Markdown table to ``outputs/reliability_report.md``
and summed up at the end of pytest's output. ``items_lost`` is what the test counted from real
data (expected ids minus ids found; the test asserts it is 0), or None where nothing is counted
(a config rejected at start-up). A row also says whether its test passed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_PATH = REPO_ROOT / "outputs" / "reliability_report.md"

# the seven items, in its order
ITEMS = ("bad documents", "bad configuration", "LLM faults", "interruption", "tracking faults", "concurrency", "safety")


@dataclass
class Row:
    item: str
    case: str
    outcome: str
    items_lost: Optional[int]
    test: str
    result: str = "not run to the end"


@dataclass
class ReliabilityReport:
    rows: list[Row] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        if row.item not in ITEMS:
            raise ValueError(f"unknown reliability item {row.item!r}: one of {ITEMS}")
        self.rows.append(row)

    def finished_rows(self) -> list[Row]:
        for row in self.rows:
            row.result = self.results.get(row.test, row.result)
        return self.rows

    def markdown(self) -> str:
        rows = self.finished_rows()
        lost = sum(r.items_lost or 0 for r in rows)
        results = ", ".join(f"{n} {result}" for result, n in Counter(r.result for r in rows).most_common())
        lines = [
            "# Reliability report",
            "",
            f"pytest session of {time.strftime('%Y-%m-%d %H:%M')}: {len(rows)} cases ({results}); items lost: {lost} (must be 0).",
            "",
            "| item | bad input / fault injected | outcome | items lost | test |",
            "|---|---|---|---|---|",
        ]
        for row in sorted(rows, key=lambda r: ITEMS.index(r.item)):
            counted = "n/a" if row.items_lost is None else str(row.items_lost)
            lines.append(f"| {row.item} | {_cell(row.case)} | {_cell(row.outcome)} | {counted} | {row.result} |")
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_REPORT = pytest.StashKey[ReliabilityReport]()


def _report(config: pytest.Config) -> ReliabilityReport:
    if _REPORT not in config.stash:
        config.stash[_REPORT] = ReliabilityReport()
    return config.stash[_REPORT]


class Recorder:
    """What a test sees as ``reliability_report``."""

    def __init__(self, report: ReliabilityReport, test: str):
        self._report = report
        self._test = test

    def record(self, *, item: str, case: str, outcome: str, items_lost: Optional[int] = None) -> None:
        self._report.add(Row(item, case, outcome, items_lost, self._test))


@pytest.fixture
def reliability_report(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(_report(request.config), request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _report(item.config).results[item.nodeid] = "xfail (known gap)" if hasattr(report, "wasxfail") else report.outcome
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = _report(session.config)
    if report.rows:
        REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
        REPORT_PATH.write_text(report.markdown())


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    report = _report(config)
    rows = report.finished_rows()
    if not rows:
        return
    terminalreporter.section("reliability report")
    per_item = Counter(r.item for r in rows)
    passed = Counter(r.item for r in rows if r.result == "passed")
    for item in ITEMS:
        if per_item[item]:
            lost_here = sum(r.items_lost or 0 for r in rows if r.item == item)
            terminalreporter.write_line(f"{item:<18} {passed[item]:>3}/{per_item[item]:<3} cases passed, items lost {lost_here}")
    total_lost = sum(r.items_lost or 0 for r in rows)
    terminalreporter.write_line(f"items lost in all: {total_lost} (must be 0); table: {REPORT_PATH}")


# ---------------------------------------------------------------- the real CLI, in a folder of its own


@dataclass
class RunnerCLI:
    """``python -m runner`` with every output (cache, Hydra folders, MLflow store) under ``workdir``."""

    workdir: Path

    @property
    def cache(self) -> Path:
        return self.workdir / "outputs" / "cache"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.workdir / 'mlruns' / 'mlflow.db'}"

    def command(self, *overrides: str) -> list[str]:
        """The CLI with ``overrides``; outputs and MLflow store in ``workdir`` unless an override names its own."""
        own = [
            f"paths.output_dir={self.workdir / 'outputs'}",
            f"paths.mlruns_dir={self.workdir / 'mlruns'}",
            f"tracking.uri={self.tracking_uri}",
        ]
        given = {o.split("=", 1)[0] for o in overrides}
        return [sys.executable, "-m", "runner", *overrides, *(o for o in own if o.split("=", 1)[0] not in given)]

    @staticmethod
    def env() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}

    def run(self, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*overrides), cwd=REPO_ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout)

    def start(self, *overrides: str, log: Path) -> subprocess.Popen:
        """Start in a session of its own, so ``kill`` reaches the job and any worker it started."""
        with open(log, "w") as handle:
            return subprocess.Popen(
                self.command(*overrides), cwd=REPO_ROOT, env=self.env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """kill -9 of a job started by ``start``: the runner and any worker it started, no clean-up possible."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def runs(self) -> list:
        """Every MLflow run of the experiment, oldest first."""
        client = self.client()
        experiment = client.get_experiment_by_name("doc2lora")
        if experiment is None:
            return []
        return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000)


@pytest.fixture(scope="session")
def runner_cli_at() -> Callable[[Path], RunnerCLI]:
    """For module-scoped fixtures: ``runner_cli_at(folder)``."""
    return RunnerCLI


@pytest.fixture
def runner_cli(tmp_path: Path) -> RunnerCLI:
    return RunnerCLI(tmp_path)
