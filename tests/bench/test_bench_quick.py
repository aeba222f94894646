"""CI smoke run of the benchmark suite: ``python -m bench --quick`` runs every bench in
``bench/`` at its tiny size, so none of them rots between full runs.

Quick sizes measure nothing, so no target is asserted here: only that every bench ran and
printed a well-formed JSON line with numeric values, and that the docs were left alone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import _suite as suite
from bench import _table as table

pytestmark = [pytest.mark.real, pytest.mark.slow]

# bench/instructions.py counts with valgrind's callgrind, a system package (.ci/run installs it).
NEEDS_VALGRIND = {"instructions"}
HAS_VALGRIND = all(shutil.which(tool) for tool in ("valgrind", "callgrind_control"))


def smoke_tested() -> list[str]:
    return [script.stem for script in suite.discover()
            if HAS_VALGRIND or script.stem not in NEEDS_VALGRIND]


def digest(path: Path) -> str | None:
    """The file's marked table block if it has one (others may edit the rest of the doc
    while this runs), else the whole file."""
    if not path.exists():
        return None
    text = path.read_bytes()
    begin, end = table.BEGIN.encode(), table.END.encode()
    if begin in text and end in text:
        text = text[text.index(begin):text.index(end)]
    return hashlib.sha256(text).hexdigest()


@pytest.mark.timeout(suite.QUICK_LIMIT_S + 90)
def test_every_bench_runs_at_its_quick_size(tmp_path: Path) -> None:
    out = tmp_path / "quick.jsonl"
    docs_before = {path: digest(path) for path in (suite.DOC, suite.LATEST)}
    began = time.monotonic()
    expected = smoke_tested()
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out),
                           *(f"--only={name}" for name in expected)],
                          cwd=suite.ROOT, capture_output=True, text=True,
                          timeout=suite.QUICK_LIMIT_S + 60)
    seconds = time.monotonic() - began
    report = f"exit {done.returncode} after {seconds:.0f} s; stderr tail:\n" + "\n".join(
        done.stderr.splitlines()[-40:])
    assert out.exists(), report

    header, runs = table.from_jsonl(out.read_text(encoding="utf-8"))
    assert header.mode == "quick"
    assert [run.name for run in runs] == expected, report
    for run in runs:
        assert run.status == "ok", f"{run.name}: {run.status}: {run.reason}\n{report}"
        assert run.args == ["--quick"]
        assert run.line is not None
        assert run.line["bench"] == run.name
        assert table.line_problems(run.line, numeric_values=True) == [], run.name
    assert done.returncode == 0, report

    # The table went to stdout, marked as quick; the docs and their raw lines are untouched.
    assert done.stdout.startswith(table.BEGIN), done.stdout[:300]
    assert "(quick sizes: not measurements)" in done.stdout
    for name in expected:
        assert f"| {name} | ok, " in done.stdout
    assert {path: digest(path) for path in docs_before} == docs_before
    if not HAS_VALGRIND:
        # Everything else passed; say what was left out instead of passing quietly (a skip
        # fails in CI, which installs valgrind).
        pytest.skip("valgrind is not installed: bench/instructions.py was not smoke-tested")
