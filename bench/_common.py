"""Helpers shared by the benchmarks in ``bench/``.

Every benchmark prints exactly one JSON line on stdout::

    {"bench": <name>, "results": {...}, "baselines": {...}, "targets": [...]}

where each target is ``{"name", "value", "op", "target", "met"}``. Human progress goes to
stderr (:func:`progress`), so ``python bench/x.py | jq`` keeps working.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

Op = Literal[">=", "<="]
T = TypeVar("T")

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """A line for the human watching (stderr), stamped with the seconds since start."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def elapsed() -> float:
    """Seconds since this module was imported (roughly: since the benchmark started)."""
    return time.perf_counter() - _STARTED


# CPU accounting: where the two cores go during a load ---------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, parent pid) of a live process, or (0, 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0
    fields = stat[stat.rindex(")") + 2:].split()
    return sum(int(f) for f in fields[11:15]) / _TICK, int(fields[1])


def process_table() -> dict[int, tuple[float, int]]:
    """pid -> (user+system CPU seconds, parent pid) of every process (Linux /proc)."""
    table: dict[int, tuple[float, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            table[int(entry.name)] = _proc_cpu(int(entry.name))  # (0, 0) once it is gone
    return table


def descendants(pid: int, table: Mapping[int, tuple[float, int]] | None = None) -> set[int]:
    """Every process below ``pid`` (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for child, (_, parent) in (process_table() if table is None else table).items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def cpu_by_role(roots: Mapping[str, int | Sequence[int]]) -> dict[str, float]:
    """CPU seconds used so far by each role's root processes (one pid or several, e.g. the
    gateway's processes) and all their descendants (Linux /proc)."""
    table = process_table()

    def tree(pid: int) -> float:
        return sum(table.get(member, (0.0, 0))[0] for member in {pid, *descendants(pid, table)})

    return {role: sum(tree(pid) for pid in ((pids,) if isinstance(pids, int) else pids))
            for role, pids in roots.items()}


def cpu_ticks() -> tuple[int, int]:
    """(stolen, total) CPU time of the whole machine so far, in clock ticks, from the first
    line of Linux's /proc/stat; (0, 0) where there is none.

    Steal is time this virtual machine's CPUs had work but the hypervisor ran someone else's:
    every process here stands still meanwhile, so a load that met some measures the host's
    neighbours as much as our code.
    """
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
        fields = [int(value) for value in line.split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    # user nice system idle iowait irq softirq steal (guest time is counted in user already)
    return (fields[7] if len(fields) == 8 else 0), sum(fields)


def steal_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time stolen between two :func:`cpu_ticks` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


# A load during which the hypervisor stole more than this share of the CPU time is measured
# again, at most STEAL_REPEATS more times (:func:`least_disturbed`).
STEAL_LIMIT = 0.01
STEAL_REPEATS = 2


async def stolen_during(load: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """``load``'s figure, with the share of the CPU time stolen while it ran
    (``steal_fraction``)."""
    before = cpu_ticks()
    figure = await load
    figure["steal_fraction"] = round(steal_fraction(before, cpu_ticks()), 4)
    return figure


async def least_disturbed(load: Callable[[], Awaitable[dict[str, Any]]], label: str, *,
                          keep: Sequence[str] = ("p50_ms", "p99_ms", "errors")
                          ) -> dict[str, Any]:
    """Run ``load`` (whose figure has a ``steal_fraction``, see :func:`stolen_during`) again
    while the host stole more than ``STEAL_LIMIT`` of the CPU time during it, at most
    ``STEAL_REPEATS`` more times; the least disturbed attempt's figure, with each attempt's
    steal and ``keep`` figures under ``attempts``.

    Chosen by the disturbance, never by the latency, so a repeat is not a second draw at a
    better number: a load is replaced only by one the host disturbed less.
    """
    attempts = [await load()]
    while attempts[-1]["steal_fraction"] > STEAL_LIMIT and len(attempts) <= STEAL_REPEATS:
        progress(f"{label}: the host stole {attempts[-1]['steal_fraction']:.1%} of the CPU "
                 "time during the load; measuring it again")
        attempts.append(await load())
    figure = dict(min(attempts, key=lambda attempt: float(attempt["steal_fraction"])))
    figure["attempts"] = [{"steal_fraction": attempt["steal_fraction"],
                           **{key: attempt[key] for key in keep if key in attempt}}
                          for attempt in attempts]
    return figure


# Statistics ---------------------------------------------------------------------------------

def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(samples_s: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/max of latencies given in seconds, reported in milliseconds."""
    return {
        "n": len(samples_s),
        "p50_ms": _round(percentile(samples_s, 50) * 1000),
        "p90_ms": _round(percentile(samples_s, 90) * 1000),
        "p99_ms": _round(percentile(samples_s, 99) * 1000),
        "max_ms": _round(max(samples_s) * 1000) if samples_s else math.nan,
    }


def _round(value: float, digits: int = 4) -> float:
    if math.isnan(value) or math.isinf(value):
        return value
    return float(f"{value:.{digits}g}")


@dataclass
class RateSample:
    """Operations completed by ``writers`` concurrent workers in ``seconds`` of wall time."""

    writers: int
    ops: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    # Exception type name -> count, and one message of each, to say what went wrong.
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)

    def failed(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors += 1
        self.error_kinds[name] = self.error_kinds.get(name, 0) + 1
        self.error_examples.setdefault(name, str(exc)[:300])

    @property
    def per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def merge(self, other: RateSample) -> RateSample:
        """Two runs of the same measurement (for example two interleaved rounds) as one."""
        kinds = dict(self.error_kinds)
        for name, count in other.error_kinds.items():
            kinds[name] = kinds.get(name, 0) + count
        return RateSample(self.writers, self.ops + other.ops, self.seconds + other.seconds,
                          self.errors + other.errors, [*self.latencies, *other.latencies],
                          kinds, {**other.error_examples, **self.error_examples})

    def summary(self) -> dict[str, Any]:
        lat = latency_ms(self.latencies)
        out: dict[str, Any] = {
            "writers": self.writers, "ops": self.ops, "seconds": _round(self.seconds),
            "per_s": _round(self.per_s), "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
            "errors": self.errors}
        if self.errors:
            out["error_kinds"] = self.error_kinds
            out["error_examples"] = self.error_examples
        return out


async def async_rate(writers: int, duration: float,
                     operation: Callable[[int, int], Awaitable[object]]) -> RateSample:
    """Run ``operation(writer, i)`` in a loop on ``writers`` concurrent tasks for ``duration``.

    Each worker starts its next operation only when the previous one has completed, so the
    concurrency is exactly ``writers``. Exceptions count as errors and are not retried.
    """
    sample = RateSample(writers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def worker(writer: int) -> None:
        i = 0
        clock = time.perf_counter
        while loop.time() < deadline:
            began = clock()
            try:
                await operation(writer, i)
            except Exception as exc:  # counted as an error, the run goes on
                sample.failed(exc)
            else:
                sample.ops += 1
                sample.latencies.append(clock() - began)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(writers)))
    sample.seconds = time.perf_counter() - began
    return sample


def threaded_rate(writers: int, duration: float,
                  operation: Callable[[int, int], object]) -> RateSample:
    """:func:`async_rate` for blocking code: ``writers`` threads, each in its own loop."""
    sample = RateSample(writers)
    lock = threading.Lock()
    start = threading.Barrier(writers + 1)
    deadline = 0.0

    def worker(writer: int) -> None:
        start.wait()
        ops = 0
        failures: list[BaseException] = []
        latencies: list[float] = []
        i = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                operation(writer, i)
            except Exception as exc:  # counted as an error, the run goes on
                failures.append(exc)
            else:
                ops += 1
                latencies.append(time.perf_counter() - began)
            i += 1
        with lock:
            sample.ops += ops
            for failure in failures:
                sample.failed(failure)
            sample.latencies.extend(latencies)

    with ThreadPoolExecutor(max_workers=writers) as pool:
        futures = [pool.submit(worker, w) for w in range(writers)]
        deadline = time.perf_counter() + duration
        began = time.perf_counter()
        start.wait()
        for future in futures:
            future.result()
        sample.seconds = time.perf_counter() - began
    return sample


async def async_latencies(operation: Callable[[int], Awaitable[object]],
                          count: int) -> list[float]:
    """Seconds taken by ``operation(i)`` for ``i`` in ``range(count)``, one at a time."""
    out = []
    clock = time.perf_counter
    for i in range(count):
        began = clock()
        await operation(i)
        out.append(clock() - began)
    return out


def latencies(operation: Callable[[int], object], count: int) -> list[float]:
    """:func:`async_latencies` for blocking code."""
    out = []
    clock = time.perf_counter
    for i in range(count):
        began = clock()
        operation(i)
        out.append(clock() - began)
    return out


# Targets and output -------------------------------------------------------------------------

def target(name: str, value: float, op: Op, goal: float) -> dict[str, Any]:
    """One target record; ``met`` is false when the value is missing (NaN)."""
    met = not math.isnan(value) and (value >= goal if op == ">=" else value <= goal)
    return {"name": name, "value": _round(value), "op": op, "target": _round(goal), "met": met}


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def emit(bench: str, results: dict[str, Any], baselines: dict[str, Any],
         targets: list[dict[str, Any]]) -> None:
    """Print the benchmark's one JSON line on stdout."""
    line = {"bench": bench, "results": results, "baselines": baselines, "targets": targets}
    text = json.dumps(_strict(line), separators=(",", ":"), allow_nan=False, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _strict(value: object) -> object:
    """JSON has no NaN/Infinity: a missing measurement becomes null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


# Environment --------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {"cpus": cpus, "cpu_model": _cpu_model(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def uvloop_version() -> str | None:
    """uvloop's version when it can be used, else None."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    return importlib.metadata.version("uvloop")


def run(main: Callable[[], Coroutine[Any, Any, T]], *, prefer_uvloop: bool = True) -> T:
    """Run ``main()`` on uvloop when it is installed (and wanted), else on asyncio's loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if prefer_uvloop and uvloop_version() is not None:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
