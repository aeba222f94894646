"""Figures for `make reliability`: tests in tests/faults, tests/fuzz and tests/security record
what they injected and what they saw, and the report sums them into one JSON line.

``record("process_kill", faults=1, acknowledged=812, lost=0, duplicates=0, errors_5xx=0,
recovery_s=1.4)`` appends one JSON object to the file named by ``ALBATROSS_RELIABILITY_FILE``;
without that variable (a plain ``pytest`` run) it does nothing, so tests call it freely.
Assertions stay in the tests: a figure is recorded only for what was actually observed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "ALBATROSS_RELIABILITY_FILE"


def record(kind: str, **figures: float | int | str) -> None:
    """Append ``figures`` about one fault (or fuzz run) of ``kind`` to the report file."""
    target = os.environ.get(ENV)
    if not target:
        return
    line = json.dumps({"kind": kind, "at": round(time.time(), 3), **figures}, sort_keys=True)
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(line + "\n")
