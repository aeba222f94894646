"""`make reliability`'s summary sums any figure of any kind and judges the targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults.report import report
from tests.faults.targets import RECOVERY_TARGETS

RECORDS = [
    {"kind": "gateway_kill", "at": 1.0, "faults": 1, "acknowledged": 100, "lost": 0,
     "duplicates": 0, "errors_5xx": 0, "recovery_s": 2.5},
    {"kind": "gateway_kill", "at": 2.0, "faults": 2, "acknowledged": 50, "lost": 0,
     "duplicates": 0, "errors_5xx": 0, "recovery_s": 6.0},
    {"kind": "nats_restart", "at": 3.0, "faults": 1, "acknowledged": 10, "lost": 1,
     "duplicates": 0, "errors_5xx": 2, "recovery_s": 3.0},
    {"kind": "fuzz", "at": 4.0, "target": "rest", "cases": 3000, "errors_5xx": 0},
    {"kind": "fuzz", "at": 5.0, "target": "ws", "cases": 500},
    {"kind": "race", "at": 6.0, "target": "review", "cases": 40, "anomalies": 0},
    {"kind": "security", "at": 7.0, "new_figure": 7},
]


def test_figures_are_summed_per_kind_and_over_all() -> None:
    results, targets = report(RECORDS, pytest_exit=0)
    assert results["faults_injected"] == 4
    assert results["commands_acknowledged"] == 160
    assert (results["commands_lost"], results["errors_5xx"]) == (1, 2)
    assert results["fuzz_cases"] == 3500
    assert results["race_cases"] == 40
    assert results["max_recovery_s"] == {"gateway_kill": 6.0, "nats_restart": 3.0}
    assert results["by_kind"]["security"] == {"new_figure": 7, "records": 1}
    met = {t["name"]: t["met"] for t in targets}
    assert met["commands_lost"] is False
    assert met["errors_5xx"] is False
    assert met["duplicates"] is True
    assert met["max_recovery_s.gateway_kill"] is False  # 6.0 > 5
    assert met["max_recovery_s.nats_restart"] is True
    # A fault kind that was never run is not met: its figure is missing.
    assert met["max_recovery_s.postgres_restart"] is False
    assert {f"max_recovery_s.{k}" for k in RECOVERY_TARGETS} <= set(met)


def test_the_command_prints_one_json_line(tmp_path: Path) -> None:
    figures = tmp_path / "figures.jsonl"
    figures.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "tests.faults.report", str(figures),
                          "--pytest-exit", "1"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    line = json.loads(lines[0])
    assert line["bench"] == "reliability"
    assert line["baselines"] == {}
    assert {"name": "pytest_exit", "value": 1, "op": "<=", "target": 0,
            "met": False} in line["targets"]
