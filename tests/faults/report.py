"""`make reliability`'s summary: the figures recorded by tests/faults, tests/fuzz, tests/security
(and tests/concurrency) summed into the benches' one JSON line.

    python -m tests.faults.report FILE [--pytest-exit CODE]

Each line of FILE is one ``record(kind, **figures)`` (tests/reliability_figures.py). Every
numeric figure is summed per kind and over all kinds, whatever its name, so a new test's
figures show up without a change here; times (``recovery_s``, ``startup_s``,
``recovery_once_running_s``) are maxima instead.
The targets: nothing lost, nothing doubled, no 5xx, each fault kind recovered within its
target (tests/faults/targets.py), and the test run itself passed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._common import emit, machine, target
from tests.faults.targets import RECOVERY_TARGETS

MAXIMA = {"recovery_s", "startup_s", "recovery_once_running_s"}
FUZZ_KINDS = {"fuzz"}


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kind: every numeric figure summed (maxima for times), plus ``records``."""
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for rec in records:
        figures = kinds[str(rec.get("kind", "unknown"))]
        figures["records"] += 1
        for name, value in rec.items():
            if name in {"kind", "at"} or isinstance(value, bool) or not isinstance(
                    value, int | float):
                continue
            if name in MAXIMA:
                figures[name] = max(figures.get(name, 0.0), float(value))
            else:
                figures[name] += value
    return {kind: {name: _number(v) for name, v in sorted(figures.items())}
            for kind, figures in sorted(kinds.items())}


def total(kinds: dict[str, dict[str, float]], figure: str,
          only: set[str] | None = None) -> float:
    return sum(f.get(figure, 0) for kind, f in kinds.items() if only is None or kind in only)


def report(records: list[dict[str, Any]], pytest_exit: int | None) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    kinds = summarise(records)
    fault_kinds = {k for k in kinds if k not in FUZZ_KINDS | {"race", "security"}}
    recovery = {kind: kinds[kind]["recovery_s"] for kind in sorted(kinds)
                if "recovery_s" in kinds[kind]}
    results: dict[str, Any] = {
        "faults_injected": _number(total(kinds, "faults", fault_kinds)),
        "commands_acknowledged": _number(total(kinds, "acknowledged")),
        "commands_lost": _number(total(kinds, "lost")),
        "duplicates": _number(total(kinds, "duplicates")),
        "errors_5xx": _number(total(kinds, "errors_5xx")),
        "hangs": _number(total(kinds, "hangs")),
        "fuzz_cases": _number(total(kinds, "cases", FUZZ_KINDS)),
        "race_cases": _number(total(kinds, "cases", {"race"})),
        "race_anomalies": _number(total(kinds, "anomalies", {"race"})),
        "max_recovery_s": recovery,
        # The same without the restarted process's own start-up (see tests/faults/targets.py).
        "max_recovery_once_running_s": {
            kind: kinds[kind]["recovery_once_running_s"] for kind in sorted(kinds)
            if "recovery_once_running_s" in kinds[kind]},
        "by_kind": kinds,
        "records": len(records),
        "pytest_exit": pytest_exit,
        "machine": machine(),
    }
    targets = [
        target("commands_lost", results["commands_lost"], "<=", 0),
        target("duplicates", results["duplicates"], "<=", 0),
        target("errors_5xx", results["errors_5xx"], "<=", 0),
        target("hangs", results["hangs"], "<=", 0),
        target("race_anomalies", results["race_anomalies"], "<=", 0),
    ]
    for kind, goal in RECOVERY_TARGETS.items():
        targets.append(target(f"max_recovery_s.{kind}", recovery.get(kind, math.nan), "<=",
                              goal))
    if pytest_exit is not None:
        targets.append(target("pytest_exit", pytest_exit, "<=", 0))
    return results, targets


def _number(value: float) -> float:
    return int(value) if float(value).is_integer() else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--pytest-exit", type=int, default=None)
    args = parser.parse_args()
    text = args.file.read_text(encoding="utf-8") if args.file.exists() else ""
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    results, targets = report(records, args.pytest_exit)
    emit("reliability", results, {}, targets)


if __name__ == "__main__":
    main()
