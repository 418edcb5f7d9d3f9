"""The reliability suite (issue 8): load, faults and hostile input against real processes.

Short mode is the default (CI runs it inside ``pytest``); ``DIRBRIDGE_RELIABILITY=long``
runs minutes of load per backend (``DIRBRIDGE_RELIABILITY_MINUTES``, default 3) and more
fuzzing examples. Every test adds its figures to the session's ``report``, which is
printed at the end of the run and written to ``$DIRBRIDGE_TEST_ARTIFACTS`` (default
``test-artifacts/``) as ``reliability-report.json``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import REPO

LONG = os.environ.get("DIRBRIDGE_RELIABILITY", "short").strip().lower() == "long"


def load_seconds() -> float:
    """How long the load test runs per backend."""
    if "DIRBRIDGE_RELIABILITY_SECONDS" in os.environ:
        return float(os.environ["DIRBRIDGE_RELIABILITY_SECONDS"])
    if LONG:
        return 60 * float(os.environ.get("DIRBRIDGE_RELIABILITY_MINUTES", "3"))
    return 20.0


def fuzz_examples(short: int) -> int:
    """Hypothesis examples per fuzz target: ``short`` in CI, ten times that in long mode."""
    return short * 10 if LONG else short


class Report:
    """Figures the tests collect: one list of entries per section, plus totals."""

    def __init__(self) -> None:
        self.sections: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, section: str, **figures: Any) -> None:
        with self._lock:
            self.sections.setdefault(section, []).append(figures)

    def totals(self) -> dict[str, Any]:
        """The headline figures: load held, faults survived, inputs tried, writes lost."""
        load = self.sections.get("load", [])
        faults = self.sections.get("faults", [])
        inputs = self.sections.get("inputs", [])
        ledger = self.sections.get("acknowledged", [])
        return {
            "mode": "long" if LONG else "short",
            "load_runs": len(load),
            "load_clients": max((e.get("clients", 0) for e in load), default=0),
            "load_operations": sum(e.get("operations", 0) for e in load),
            "load_minutes": round(sum(e.get("minutes", 0.0) for e in load), 2),
            "load_errors": sum(e.get("errors", 0) for e in load),
            "faults_survived": sum(1 for e in faults if e.get("survived")),
            "faults_injected": len(faults),
            "inputs_tried": sum(e.get("tried", 0) for e in inputs),
            "acknowledged_writes_checked": sum(e.get("checked", 0) for e in ledger),
            "acknowledged_writes_lost": sum(e.get("lost", 0) for e in ledger),
        }

    def as_json(self) -> dict[str, Any]:
        return {"totals": self.totals(), "sections": self.sections}


_REPORT = Report()


@pytest.fixture(scope="session")
def report() -> Report:
    """The session's reliability report (see Report.add)."""
    return _REPORT


def artifacts_dir() -> Path:
    return Path(os.environ.get("DIRBRIDGE_TEST_ARTIFACTS") or REPO / "test-artifacts")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Print the figures and write them as JSON, when a reliability test ran."""
    if not _REPORT.sections:
        return
    path = artifacts_dir() / "reliability-report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_REPORT.as_json(), indent=2, default=str) + "\n")
    write = terminalreporter.write_line
    terminalreporter.section("dirbridge reliability report")
    totals = _REPORT.totals()
    write(f"mode: {totals['mode']}")
    for entry in _REPORT.sections.get("load", []):
        write(f"load [{entry.get('backend')}]: {entry.get('clients')} clients, {entry.get('operations')} operations "
              f"in {entry.get('minutes')} min, {entry.get('errors')} errors ({entry.get('error_rate')}), "
              f"p50 {entry.get('p50_ms')} ms, p99 {entry.get('p99_ms')} ms, "
              f"{entry.get('ops_per_second')} ops/s, If-Match increments {entry.get('increments')} "
              f"({entry.get('precondition_retries')} retries on 412)")
    for entry in _REPORT.sections.get("faults", []):
        write(f"fault: {entry.get('name')}: {'survived' if entry.get('survived') else 'NOT survived'}"
              f"{' - ' + str(entry['detail']) if entry.get('detail') else ''}")
    for entry in _REPORT.sections.get("inputs", []):
        write(f"inputs: {entry.get('target')}: {entry.get('tried')} tried, {entry.get('failures', 0)} failures")
    for section in ("timing", "lockout", "slow_clients", "directory_down", "bulk_beside_logins"):
        for entry in _REPORT.sections.get(section, []):
            write(f"{section.replace('_', ' ')}: {entry}")
    write(f"totals: {json.dumps(totals)}")
    write(f"written to {path}")
