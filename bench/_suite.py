"""``make bench``: every benchmark in ``bench/``, each in its own process, one table.

    python -m bench                 # full suite; rewrites the table in docs/performance.md
    python -m bench --quick         # tiny sizes (CI smoke); table on stdout, docs untouched
    python -m bench --render FILE   # the table again from a saved JSONL file, no rerun

A benchmark is any ``bench/<name>.py`` whose name does not start with ``_``; it prints one
JSON line (``bench/_common.py``) and accepts ``--quick``. Time is bounded: each bench has a
budget (:data:`FULL_PLANS`; unknown benches get :data:`DEFAULT_FULL_BUDGET_S`), deadlines are
cumulative (time a bench leaves unused goes to the next ones) and capped by the suite limit.
A bench over its deadline is interrupted (SIGINT, so its ``finally`` blocks stop its servers),
then killed with everything it started. Crashes and timeouts are failures: the table shows
them with their reason and the runner exits non-zero. Unmet targets are results, not
failures (``--strict`` makes them fail the run too).

Servers are not shared between benches, on purpose: every bench starts its own nats-server and
PostgreSQL from an empty directory. A shared server would carry the previous bench's streams,
WAL and page cache into the next measurement (the projector bench already runs its lag phase
on a PostgreSQL of its own for that reason), and the saving is small: an embedded PostgreSQL
starts in ~1.4 s and nats-server in ~0.03 s on this machine, a few seconds for the suite.
For the same reason the benches do not inherit the caller's ``ALBATROSS_*`` variables.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from bench import _table as table
from bench._common import descendants, process_table

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DOC = ROOT / "docs" / "performance.md"
LATEST = ROOT / "docs" / "bench" / "latest.jsonl"

FULL_LIMIT_S = 600.0  # issue 9: the whole suite in at most 10 minutes on 2 cores
# The smoke run takes ~2 minutes on 2 idle cores. Its limits only stop a hung bench: they are
# generous because a shared machine (load 10 on 2 cores) makes it 2-3 times slower.
QUICK_LIMIT_S = 480.0
QUICK_BUDGET_S = 240.0  # per bench, quick sizes
DEFAULT_FULL_BUDGET_S = 75.0  # a bench this file has no plan for yet
# Kept out of the benches' budgets: the last bench's stop (grace and kill), reaping what it
# left, writing the table. With it, even a suite whose last bench times out ends by the limit.
RUNNER_SLACK_S = 35.0
QUICK_JOBS = 2  # smoke runs measure nothing, so two at a time halve the wait on 2 cores
STOP_GRACE_S = 20.0  # after SIGINT, time to stop servers before everything is killed


@dataclass(frozen=True)
class Plan:
    """How the full suite runs one bench: its time budget and, if its default size cannot
    fit, the arguments that make it fit (recorded in the table with ``why``)."""

    budget_s: float
    args: tuple[str, ...] = ()
    why: str = ""


# The budgets are timeouts; they sum to FULL_LIMIT_S - RUNNER_SLACK_S (565 s). Each is the
# bench's run time in the last suite run (docs/bench/latest.jsonl) at the size given here plus
# a share of the 45 s those runs left; deadlines are cumulative, so a bench that needs more can
# use what earlier ones left. None of the benches fits at its default size together with the
# others (their defaults add up to ~15 minutes), so each gets a smaller one; the table records
# which and why.
FULL_PLANS: dict[str, Plan] = {
    # Default: ~2 min of load plus start-up. Shorter steps keep every rate and the search.
    "e2e": Plan(65.0, ("--seconds", "5", "--search-seconds", "3", "--search-steps", "4"),
                "5 s fixed-rate steps and 4 search steps of 3 s instead of 10 s and 5 of 4 s"),
    # 192 s at 1M other events on a loaded machine (the fill alone ~45 s, the rate rounds
    # ~70 s): 100k other events are still 100x the small stream for the flatness targets.
    "event_store": Plan(130.0, ("--events", "100000"),
                        "big stream of 100,000 other events instead of 1,000,000"),
    # 9 loads of 8 s plus ~25 s of set-up; 3 s per load is still thousands of requests.
    "gateway": Plan(70.0, ("--seconds", "3"), "3 s per load instead of 8"),
    # Default 100,000 events (2-4 min), the 1,000,000 ~8-9 min: neither fits. 50,000 is
    # 5x the small store; run `python bench/growth.py --events 1000000` for the size.
    # 8-s loads (800 requests: a p99 is the 8th-slowest, not the 6th of the default 600).
    "growth": Plan(115.0, ("--events", "50000", "--seconds", "8"),
                   "large store of 50,000 events instead of 100,000 (issue: 1,000,000), "
                   "8-s loads"),
    # ~40 s at 300 requests (three servers under valgrind); 200 still counts to ~0.1%.
    "instructions": Plan(40.0, ("--requests", "200"), "200 requests per count instead of 600"),
    # Two fan-outs of 5,000 sockets; 15 changes (75,000 samples each) instead of 50, and no
    # end-to-end part, which bench/e2e.py measures on its own.
    "notifier": Plan(95.0, ("--changes", "15", "--no-e2e"),
                     "15 changes instead of 50; end to end left to bench/e2e.py"),
    # The 30 s steady-lag phase is kept whole; the rebuild runs over 50,000 events.
    "projector": Plan(50.0, ("--events", "50000"),
                      "rebuild of 50,000 events instead of 200,000"),
}


@dataclass(frozen=True)
class BenchSpec:
    """One bench to run: its script, arguments and time budget."""

    name: str
    script: Path
    args: tuple[str, ...]
    budget_s: float
    size_note: str = ""


def discover(directory: Path = BENCH_DIR) -> list[Path]:
    """Every benchmark script in ``directory``: ``*.py`` not starting with ``_``."""
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def plan_suite(scripts: Sequence[Path], *, quick: bool) -> list[BenchSpec]:
    specs = []
    for script in scripts:
        name = script.stem
        if quick:
            specs.append(BenchSpec(name, script, ("--quick",), QUICK_BUDGET_S))
            continue
        plan = FULL_PLANS.get(name, Plan(DEFAULT_FULL_BUDGET_S))
        specs.append(BenchSpec(name, script, plan.args, plan.budget_s, plan.why))
    return specs


# Running -------------------------------------------------------------------------------------

@dataclass
class _Output:
    """A child's stdout kept in memory and its stderr relayed (prefixed) and kept on disk."""

    stdout: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def attach(self, process: subprocess.Popen[str], name: str, log: IO[str],
               relay: IO[str] | None) -> None:
        def read_stdout() -> None:
            assert process.stdout is not None
            for text in process.stdout:
                self.stdout.append(text)

        def read_stderr() -> None:
            assert process.stderr is not None
            for text in process.stderr:
                self.stderr_tail = [*self.stderr_tail[-39:], text.rstrip("\n")]
                # A process the bench left holding the pipe can outlive the log file.
                with contextlib.suppress(ValueError):
                    log.write(text)
                if relay is not None:
                    relay.write(f"[{name}] {text}")
                    relay.flush()

        self.threads = [threading.Thread(target=read_stdout, daemon=True),
                        threading.Thread(target=read_stderr, daemon=True)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)


def run_bench(spec: BenchSpec, deadline: float, *, python: str = sys.executable,
              log_dir: Path, relay: IO[str] | None = None,
              clock: Callable[[], float] = time.monotonic,
              active: set[subprocess.Popen[str]] | None = None,
              grace: float = STOP_GRACE_S) -> table.BenchRun:
    """Run one bench until it exits or ``deadline`` (a ``clock()`` time) passes."""
    argv = [python, str(spec.script), *spec.args]
    began = clock()
    budget = max(0.0, deadline - began)
    if budget < 1.0:
        return table.BenchRun(spec.name, list(spec.args), spec.budget_s, "skipped", 0.0,
                              "not started: the suite's time limit was used up",
                              spec.size_note)
    output = _Output()
    log_path = log_dir / f"{spec.name}.stderr.log"
    with log_path.open("w", encoding="utf-8") as log:
        # A session of its own: a Ctrl-C at the terminal reaches the runner only, which then
        # stops the bench the same way as on a timeout (and can kill its whole group).
        process = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   errors="replace", start_new_session=True,
                                   preexec_fn=_interruptible,
                                   env=bench_environment(os.environ))
        output.attach(process, spec.name, log, relay)
        if active is not None:
            active.add(process)
        timed_out = False
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_tree(process, grace)
        except BaseException:  # Ctrl-C: stop the bench and its servers, then go on stopping
            stop_tree(process, grace)
            raise
        finally:
            output.join()
            if active is not None:
                active.discard(process)
    seconds = clock() - began
    stdout = "".join(output.stdout)
    line = table.find_line(stdout)
    if timed_out:
        return table.BenchRun(spec.name, list(spec.args), spec.budget_s, "timeout", seconds,
                              f"stopped at its deadline ({budget:.0f} s)"
                              + _tail_hint(output.stderr_tail, log_path), spec.size_note,
                              line)
    if process.returncode != 0:
        return table.BenchRun(spec.name, list(spec.args), spec.budget_s, "failed", seconds,
                              f"exit code {process.returncode}"
                              + _tail_hint(output.stderr_tail, log_path), spec.size_note,
                              line)
    if line is None:
        return table.BenchRun(spec.name, list(spec.args), spec.budget_s, "failed", seconds,
                              "exit code 0 but no JSON line on stdout", spec.size_note)
    problems = table.line_problems(line)
    if problems:
        return table.BenchRun(spec.name, list(spec.args), spec.budget_s, "failed", seconds,
                              "malformed JSON line: " + "; ".join(problems[:3]),
                              spec.size_note, line)
    return table.BenchRun(spec.name, list(spec.args), spec.budget_s, "ok", seconds, "",
                          spec.size_note, line)


def bench_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any ``ALBATROSS_*`` setting.

    The suite measures the configuration each bench sets itself: a shell's
    ``ALBATROSS_NATS_URL``/``ALBATROSS_DATABASE_URL`` (which bench/gateway.py would use
    instead of starting its own servers) or any other setting inherited by the services a
    bench starts would change what is measured, and would share servers between benches.
    """
    env = {key: value for key, value in parent.items() if not key.startswith("ALBATROSS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail_hint(tail: Sequence[str], log: Path) -> str:
    """The last meaningful stderr line (usually the exception) and where the rest is."""
    last = next((text.strip() for text in reversed(tail) if text.strip()), "")
    return (f": {last[:300]}" if last else "") + f" (stderr: {log})"


def _interruptible() -> None:
    # Run in the child before exec. A shell without job control starts background jobs
    # (`nohup make bench &`) with SIGINT ignored, which the bench would inherit; Python then
    # installs no KeyboardInterrupt handler and the graceful stop below would be ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_tree(process: subprocess.Popen[str], grace: float = STOP_GRACE_S) -> None:
    """SIGINT to the bench's process group (its ``finally`` blocks stop its servers), then
    SIGKILL to whatever it started that is still there, servers in their own sessions too."""
    family = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        family |= descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for pid in family:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def become_subreaper() -> bool:
    """Make processes orphaned by a bench (a server it failed to stop) children of the runner,
    so :func:`reap_leftovers` can find and stop them before the next bench measures."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_leftovers(keep: frozenset[int] = frozenset()) -> list[str]:
    """Stop the runner's children other than ``keep``: processes a finished bench left behind."""
    me = os.getpid()
    left = [pid for pid, (_, parent) in process_table().items()
            if parent == me and pid not in keep]
    names = []
    for pid in left:
        names.append(_name(pid))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 10
    for pid in left:
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return [name for name in names if name]


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def run_suite(specs: Sequence[BenchSpec], *, limit_s: float, log_dir: Path,
              relay: IO[str] | None = None, reap: bool = False, jobs: int = 1,
              grace: float = STOP_GRACE_S,
              clock: Callable[[], float] = time.monotonic) -> list[table.BenchRun]:
    """Run ``specs``, never past ``limit_s`` in all; the runs come back in ``specs`` order.

    One at a time (``jobs=1``, what measurements need): bench i's deadline is the start plus
    the budgets of benches 0..i (capped by the limit), so a bench that finishes early leaves
    its time to the next and a slow one cannot eat theirs. With ``jobs > 1`` (smoke runs only:
    concurrent benches distort each other) each bench gets its own budget from its start.
    """
    start = clock()
    active: set[subprocess.Popen[str]] = set()

    def one(spec: BenchSpec, deadline: float) -> table.BenchRun:
        _say(relay, f"{spec.name}: starting, deadline in {max(0.0, deadline - clock()):.0f} s"
             + (f", {' '.join(spec.args)}" if spec.args else ""))
        run = run_bench(spec, deadline, log_dir=log_dir, relay=relay, clock=clock,
                        active=active, grace=grace)
        if reap and jobs == 1:
            leftovers = reap_leftovers()
            if leftovers:
                run = replace(run, notes=[*run.notes, f"left {', '.join(leftovers)} running "
                                          "(stopped by the runner)"])
        _say(relay, f"{spec.name}: {run.status} in {run.seconds:.1f} s"
             + (f" ({run.reason})" if run.reason else ""))
        return run

    if jobs == 1:
        runs = []
        planned = 0.0
        for spec in specs:
            planned += spec.budget_s
            runs.append(one(spec, start + min(planned, limit_s)))
        return runs
    futures: list[Future[table.BenchRun]] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            futures = [pool.submit(lambda s: one(s, min(clock() + s.budget_s,
                                                        start + limit_s)), spec)
                       for spec in specs]
            runs = [future.result() for future in futures]
        except BaseException:  # Ctrl-C: stop whatever runs now, the rest will not start
            for future in futures:
                future.cancel()
            for process in list(active):
                stop_tree(process, grace)
            raise
    if reap:
        leftovers = reap_leftovers()
        if leftovers:
            _say(relay, f"benches left {', '.join(leftovers)} running (stopped)")
    return runs


def _say(relay: IO[str] | None, text: str) -> None:
    if relay is not None:
        relay.write(f"[suite] {text}\n")
        relay.flush()


# Machine -------------------------------------------------------------------------------------

def machine() -> dict[str, object]:
    """What the suite ran on, read before the first bench starts."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 0
    return {"cpus": cpus, "cpu_model": _cpuinfo("model name") or platform.processor() or "?",
            "ram_gib": _ram_gib(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()]}


def _cpuinfo(key: str) -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for text in handle:
            if text.lower().startswith(key):
                return text.split(":", 1)[1].strip()
    return ""


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as handle:
        for text in handle:
            if text.startswith("MemTotal:"):
                return round(int(text.split()[1]) / 1024 / 1024, 1)
    return None


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, check=True, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + (" + uncommitted changes" if dirty else "")


# Command line ------------------------------------------------------------------------------

def write_doc(doc: Path, suite: table.Suite, runs: Sequence[table.BenchRun],
              source: str) -> None:
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n"
    doc.write_text(table.splice(text, table.render(suite, runs, source=source)),
                   encoding="utf-8")


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    # Started in the background by a shell, SIGINT arrives ignored, and the benches would
    # inherit that: they could not be stopped cleanly at their deadline. A handler (unlike an
    # ignored signal) is reset to the default for every bench the runner starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = _parser().parse_args(argv)
    raw_args = list(argv if argv is not None else sys.argv[1:])
    if args.render is not None:
        suite, runs = table.from_jsonl(args.render.read_text(encoding="utf-8"))
        return _publish(args, suite, runs, _relative(args.render),
                        to_doc=not args.no_doc and suite.mode == "full")

    scripts = discover()
    if args.only:
        unknown = set(args.only) - {s.stem for s in scripts}
        if unknown:
            print(f"no such bench: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.stem in args.only]
    jobs = args.jobs if args.jobs is not None else (QUICK_JOBS if args.quick else 1)
    if jobs < 1 or (jobs > 1 and not args.quick):
        print("--jobs above 1 needs --quick: benches measured at once distort each other",
              file=sys.stderr)
        return 2
    specs = plan_suite(scripts, quick=args.quick)
    limit = QUICK_LIMIT_S if args.quick else FULL_LIMIT_S
    # Quick runs are smoke tests and subsets are partial: neither may rewrite the docs' table,
    # nor the raw lines it was made from.
    to_doc = not (args.quick or args.only or args.no_doc)
    out = args.out or (LATEST if to_doc else
                       Path(tempfile.gettempdir()) / f"albatross-bench-{suite_mode(args)}.jsonl")
    suite = table.Suite(
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=shlex.join(["python", "-m", "bench", *raw_args]),
        mode="quick" if args.quick else "full", machine=machine(), limit_s=limit,
        commit=_commit())
    log_dir = Path(tempfile.mkdtemp(prefix="albatross-bench-logs-"))
    reap = become_subreaper()
    print(f"[suite] {len(specs)} benches: {', '.join(s.name for s in specs)}; limit "
          f"{limit:.0f} s; stderr logs in {log_dir}", file=sys.stderr, flush=True)
    ignored = sorted(key for key in os.environ if key.startswith("ALBATROSS_"))
    if ignored:
        print(f"[suite] not passed to the benches (each starts its own servers and sets its "
              f"own configuration): {', '.join(ignored)}", file=sys.stderr, flush=True)
    began = time.monotonic()
    try:
        runs = run_suite(specs, limit_s=limit - RUNNER_SLACK_S, log_dir=log_dir,
                         relay=sys.stderr, reap=reap, jobs=jobs)
    except KeyboardInterrupt:
        print("[suite] interrupted; nothing written", file=sys.stderr)
        return 130
    suite = _with_seconds(suite, began)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table.to_jsonl(suite, runs), encoding="utf-8")
    print(f"[suite] raw lines: {out}", file=sys.stderr)
    return _publish(args, suite, runs, _relative(out), to_doc=to_doc)


def suite_mode(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "partial" if args.only else "full"


def _with_seconds(suite: table.Suite, began: float) -> table.Suite:
    record = suite.record()
    record.pop("kind")
    record["seconds"] = round(time.monotonic() - began, 1)
    return table.Suite(**record)


def _publish(args: argparse.Namespace, suite: table.Suite, runs: Sequence[table.BenchRun],
             source: str, *, to_doc: bool) -> int:
    if to_doc:
        write_doc(args.doc, suite, runs, source)
        print(f"[suite] table written to {args.doc}", file=sys.stderr)
    else:
        sys.stdout.write(table.render(suite, runs, source=source))
    failed = [run for run in runs if run.status != "ok"]
    unmet = [f"{run.name}: {t['name']}" for run in runs if run.line
             for t in run.line.get("targets", []) if t.get("met") is not True]
    for run in failed:
        print(f"[suite] FAILED {run.name}: {run.status}: {run.reason}", file=sys.stderr)
    if unmet:
        print(f"[suite] {len(unmet)} target(s) not met: {'; '.join(unmet)}", file=sys.stderr)
    if failed or (args.strict and unmet):
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every bench at its tiny --quick size (CI smoke); the table goes "
                             "to stdout, docs/performance.md is not touched")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this bench (repeatable); the docs are not touched")
    parser.add_argument("--out", type=Path,
                        help="JSONL file for the raw lines (default: docs/bench/latest.jsonl "
                             "when the docs' table is written, else a temporary file)")
    parser.add_argument("--doc", type=Path, default=DOC,
                        help="document whose marked table is regenerated")
    parser.add_argument("--no-doc", action="store_true",
                        help="print the table instead of writing it into the document")
    parser.add_argument("--render", type=Path, metavar="JSONL",
                        help="regenerate the table from a saved JSONL file; runs nothing (a "
                             "quick run's table is printed, never written into the docs)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="benches run at once; only with --quick (default 2 there): "
                             "concurrent benches distort each other's figures")
    parser.add_argument("--strict", action="store_true",
                        help="exit non-zero when a target is not met, too")
    return parser
