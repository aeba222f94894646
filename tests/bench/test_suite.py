"""The suite runner (``python -m bench``) against small fake benchmarks: statuses, deadlines,
stopping what a bench started, and where the table goes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import _suite as suite
from bench import _table as table

GOOD_LINE = {"bench": "fake", "results": {"x": {"per_s": 10.0}}, "baselines": {},
             "targets": [{"name": "t", "value": 1.0, "op": ">=", "target": 0.5, "met": True}]}


def fake(directory: Path, name: str, body: str) -> Path:
    script = directory / f"{name}.py"
    script.write_text("import json, os, signal, subprocess, sys, time\n"
                      + textwrap.dedent(body), encoding="utf-8")
    return script


def spec(script: Path, budget: float = 30.0, args: tuple[str, ...] = ()) -> suite.BenchSpec:
    return suite.BenchSpec(script.stem, script, args, budget)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


PRINTS_LINE = f"""
print("2026-11-26 [info] a library logging to stdout")
print(json.dumps({GOOD_LINE!r}))
print("progress", file=sys.stderr)
"""


# Discovery and plans -------------------------------------------------------------------------

def test_discover_takes_every_public_script(tmp_path: Path) -> None:
    for name in ("b.py", "a.py", "_common.py", "__init__.py", "__main__.py", "notes.md"):
        (tmp_path / name).write_text("")
    assert [p.name for p in suite.discover(tmp_path)] == ["a.py", "b.py"]


def test_the_repository_benches_are_all_discovered() -> None:
    names = {p.stem for p in suite.discover()}
    assert {"event_store", "gateway", "notifier", "projector"} <= names
    assert not any(name.startswith("_") for name in names)


def test_the_full_suite_is_planned_within_ten_minutes() -> None:
    specs = suite.plan_suite(suite.discover(), quick=False)
    total = sum(s.budget_s for s in specs)
    assert total <= suite.FULL_LIMIT_S - suite.RUNNER_SLACK_S, (
        f"budgets add up to {total:.0f} s: give the new bench a plan in FULL_PLANS and "
        "shrink others so the suite stays within 10 minutes")
    assert suite.FULL_LIMIT_S <= 600
    # A bench whose default size is replaced says so in the table.
    assert all(s.size_note for s in specs if s.args)


def test_quick_plans_pass_quick_to_every_bench() -> None:
    specs = suite.plan_suite(suite.discover(), quick=True)
    assert specs
    assert all(s.args == ("--quick",) for s in specs)


def test_planned_options_exist_in_the_benches() -> None:
    missing = [name for name in suite.FULL_PLANS if not (suite.BENCH_DIR / f"{name}.py").exists()]
    assert not missing, f"FULL_PLANS names benches that are not in bench/: {missing}"
    # All --help at once: each costs a second or more of imports.
    helps = {name: subprocess.Popen([sys.executable, str(suite.BENCH_DIR / f"{name}.py"),
                                     "--help"], cwd=suite.ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
             for name in suite.FULL_PLANS}
    for name, process in helps.items():
        shown, _ = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name} --help failed"
        for option in (a for a in suite.FULL_PLANS[name].args if a.startswith("--")):
            assert option in shown, f"{name} has no {option} option any more"


# One bench -----------------------------------------------------------------------------------

def test_a_good_bench_is_ok_with_its_line(tmp_path: Path) -> None:
    script = fake(tmp_path, "good", PRINTS_LINE)
    run = suite.run_bench(spec(script, args=("--quick",)), time.monotonic() + 30,
                          log_dir=tmp_path)
    assert run.status == "ok", run.reason
    assert run.line == GOOD_LINE
    assert run.args == ["--quick"]
    assert (tmp_path / "good.stderr.log").read_text() == "progress\n"


def test_arguments_reach_the_bench(tmp_path: Path) -> None:
    script = fake(tmp_path, "echo", f"""
        line = {GOOD_LINE!r}
        line["results"]["argv"] = sys.argv[1:]
        print(json.dumps(line))
    """)
    run = suite.run_bench(spec(script, args=("--events", "5")), time.monotonic() + 30,
                          log_dir=tmp_path)
    assert run.line is not None
    assert run.line["results"]["argv"] == ["--events", "5"]


def test_benches_do_not_inherit_albatross_settings(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/gateway.py would use these servers instead of starting its own.
    monkeypatch.setenv("ALBATROSS_NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("ALBATROSS_DATABASE_URL", "postgresql://x@127.0.0.1/x")
    monkeypatch.setenv("BENCH_TEST_KEPT", "yes")
    script = fake(tmp_path, "env", f"""
        line = {GOOD_LINE!r}
        line["results"]["env"] = {{k: v for k, v in os.environ.items()
                                  if k.startswith(("ALBATROSS_", "BENCH_TEST_"))}}
        print(json.dumps(line))
    """)
    run = suite.run_bench(spec(script), time.monotonic() + 30, log_dir=tmp_path)
    assert run.line is not None
    assert run.line["results"]["env"] == {"BENCH_TEST_KEPT": "yes"}


def test_a_crash_is_a_failure_with_its_last_words(tmp_path: Path) -> None:
    script = fake(tmp_path, "crashy", 'raise RuntimeError("boom")\n')
    run = suite.run_bench(spec(script), time.monotonic() + 30, log_dir=tmp_path)
    assert run.status == "failed"
    assert run.reason.startswith("exit code 1: RuntimeError: boom")
    assert str(tmp_path / "crashy.stderr.log") in run.reason


def test_no_line_and_a_malformed_line_are_failures(tmp_path: Path) -> None:
    silent = fake(tmp_path, "silent", 'print("just logs")\n')
    run = suite.run_bench(spec(silent), time.monotonic() + 30, log_dir=tmp_path)
    assert (run.status, run.reason) == ("failed", "exit code 0 but no JSON line on stdout")
    broken = fake(tmp_path, "broken", 'print(json.dumps({"bench": "broken", "results": {}, '
                                      '"baselines": {}, "targets": []}))\n')
    run = suite.run_bench(spec(broken), time.monotonic() + 30, log_dir=tmp_path)
    assert run.status == "failed"
    assert run.reason == "malformed JSON line: 'targets' is not a non-empty list"


@pytest.mark.parametrize("inherited_sigint", ["default", "ignored"])
def test_a_bench_past_its_deadline_is_interrupted_and_fails(
        tmp_path: Path, inherited_sigint: str) -> None:
    # Like a real bench: SIGINT runs its clean-up, which is given the time it needs; also when
    # the runner was started with SIGINT ignored (a background job of a shell without job
    # control), which its children would otherwise inherit.
    previous = signal.getsignal(signal.SIGINT)
    if inherited_sigint == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _interrupt_slow_bench(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_slow_bench(tmp_path: Path) -> None:
    script = fake(tmp_path, "slow", """
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            print("cleaning up", file=sys.stderr)
            time.sleep(0.5)
            sys.exit(1)
    """)
    began = time.monotonic()
    run = suite.run_bench(spec(script), began + 2.0, log_dir=tmp_path, grace=10)
    assert run.status == "timeout"
    assert 1.9 <= run.seconds < 9
    assert run.reason.startswith("stopped at its deadline (2 s): cleaning up")


def test_what_a_stuck_bench_started_is_killed_with_it(tmp_path: Path) -> None:
    # Ignores SIGINT and holds a child in a session of its own, as the embedded servers are.
    pid_file = tmp_path / "server.pid"
    script = fake(tmp_path, "stuck", f"""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                  start_new_session=True)
        open({str(pid_file)!r}, "w").write(str(server.pid))
        time.sleep(120)
    """)
    run = suite.run_bench(spec(script), time.monotonic() + 2, log_dir=tmp_path, grace=1)
    assert run.status == "timeout"
    server = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(server)


# The suite -------------------------------------------------------------------------------------

def test_time_a_bench_leaves_goes_to_the_next(tmp_path: Path) -> None:
    quick = fake(tmp_path, "a_quick", PRINTS_LINE)
    slow = fake(tmp_path, "b_slow", "time.sleep(2)\n" + textwrap.dedent(PRINTS_LINE))
    runs = suite.run_suite([spec(quick, budget=20), spec(slow, budget=1)], limit_s=60,
                           log_dir=tmp_path)
    # b_slow's own budget is 1 s, but its deadline is 21 s after the start.
    assert [(r.name, r.status) for r in runs] == [("a_quick", "ok"), ("b_slow", "ok")]


def test_the_suite_limit_stops_and_skips(tmp_path: Path) -> None:
    hog = fake(tmp_path, "a_hog", "time.sleep(60)\n")
    after = fake(tmp_path, "b_after", PRINTS_LINE)
    began = time.monotonic()
    runs = suite.run_suite([spec(hog, budget=100), spec(after, budget=100)], limit_s=1.5,
                           log_dir=tmp_path, grace=5)
    assert time.monotonic() - began < 10
    assert [(r.name, r.status) for r in runs] == [("a_hog", "timeout"), ("b_after", "skipped")]
    assert runs[1].reason == "not started: the suite's time limit was used up"


def test_parallel_runs_overlap_and_keep_their_order(tmp_path: Path) -> None:
    body = "time.sleep(1.5)\n" + textwrap.dedent(PRINTS_LINE)
    scripts = [fake(tmp_path, name, body) for name in ("z_first", "a_second", "m_third")]
    began = time.monotonic()
    runs = suite.run_suite([spec(s) for s in scripts], limit_s=60, log_dir=tmp_path, jobs=3)
    assert time.monotonic() - began < 4.4  # three 1.5 s benches one after the other: >= 4.5 s
    assert [r.name for r in runs] == ["z_first", "a_second", "m_third"]
    assert all(r.status == "ok" for r in runs)


# The command line ----------------------------------------------------------------------------

def saved_run(tmp_path: Path, mode: str) -> Path:
    runs = [table.BenchRun("fake", [], 30.0, "ok", 3.0, line=GOOD_LINE),
            table.BenchRun("crashy", [], 30.0, "failed", 1.0, reason="exit code 1")]
    header = table.Suite(date="2026-11-26 10:00 UTC", command="python -m bench", mode=mode,
                         machine={"cpus": 2}, limit_s=600.0, seconds=4.0)
    path = tmp_path / f"{mode}.jsonl"
    path.write_text(table.to_jsonl(header, runs))
    return path


DOC = "# Performance\n\n" + table.BEGIN + "\nold\n" + table.END + "\n\n## Hand-written\n\nkept\n"


def test_render_rewrites_only_the_marked_block(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(DOC)
    code = suite.main(["--render", str(saved_run(tmp_path, "full")), "--doc", str(doc)])
    assert code == 1  # a failed bench fails the run, even when only re-rendered
    text = doc.read_text()
    assert text.startswith("# Performance\n\n" + table.BEGIN + "\n")
    assert text.endswith(table.END + "\n\n## Hand-written\n\nkept\n")
    assert "| crashy | **failed** after 1 s (budget 30 s) | exit code 1 |" in text
    assert "old" not in text
    assert capsys.readouterr().out == ""


def test_a_quick_run_never_writes_the_doc(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(DOC)
    suite.main(["--render", str(saved_run(tmp_path, "quick")), "--doc", str(doc)])
    assert doc.read_text() == DOC
    assert "(quick sizes: not measurements)" in capsys.readouterr().out


def test_parallel_measurements_are_refused() -> None:
    assert suite.main(["--jobs", "2"]) == 2


def test_an_unknown_bench_is_refused() -> None:
    assert suite.main(["--only", "no_such_bench"]) == 2


def test_machine_reads_cores_cpu_ram_and_load() -> None:
    facts = suite.machine()
    assert facts["cpus"] == len(os.sched_getaffinity(0))
    assert isinstance(facts["cpu_model"], str)
    assert facts["cpu_model"]
    assert isinstance(facts["ram_gib"], float)
    assert facts["ram_gib"] > 0
    load = facts["loadavg_before"]
    assert isinstance(load, list)
    assert len(load) == 3
    json.dumps(facts)  # it goes into the JSONL header
