"""The suite's records and the one table ``make bench`` writes into ``docs/performance.md``.

Pure functions only (no processes, no clock): the runner (``bench/_suite.py``) produces the
records, this module checks benches' JSON lines, renders the table and splices it between the
markers, so a table can be regenerated from a saved JSONL file without rerunning anything.

The JSONL file: one ``{"kind": "suite", ...}`` header (machine, date, command, mode), then one
``{"kind": "bench", ...}`` record per benchmark with its status and its JSON line verbatim
under ``"line"`` (``null`` when the bench printed none).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeGuard

BEGIN = "<!-- bench-table:begin -->"
END = "<!-- bench-table:end -->"
LINE_KEYS = ("bench", "results", "baselines", "targets")
TARGET_KEYS = ("name", "value", "op", "target", "met")
Status = Literal["ok", "failed", "timeout", "skipped"]


@dataclass(frozen=True)
class Suite:
    """What, where and when: the table's header."""

    date: str  # UTC, ISO 8601
    command: str
    mode: Literal["full", "quick"]
    machine: dict[str, Any]
    limit_s: float
    commit: str = ""
    seconds: float = 0.0  # wall time of the whole suite, filled in at the end

    def record(self) -> dict[str, Any]:
        return {"kind": "suite", **asdict(self)}


@dataclass(frozen=True)
class BenchRun:
    """One benchmark's run: how it went and its JSON line (when it printed one)."""

    name: str
    args: list[str]
    budget_s: float
    status: Status
    seconds: float
    reason: str = ""  # why it failed, or a note (a size the runner passed, a leaked process)
    size_note: str = ""  # which size the runner chose instead of the bench's default, and why
    line: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"kind": "bench", **asdict(self)}


# The JSON line -------------------------------------------------------------------------------

def find_line(stdout: str) -> dict[str, Any] | None:
    """The bench's JSON line: the last stdout line that is a JSON object naming a bench.

    Some benches' libraries log to stdout too, so other lines are ignored rather than fatal.
    """
    for raw in reversed(stdout.splitlines()):
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict) and "bench" in value:
            return value
    return None


def line_problems(line: Mapping[str, Any], *, numeric_values: bool = False) -> list[str]:
    """What is wrong with a bench's JSON line (empty when it is well-formed).

    ``numeric_values`` also requires every target's value to be a number (a missing
    measurement is ``null``, which is well-formed but says the bench measured nothing).
    """
    problems = [f"missing key {key!r}" for key in LINE_KEYS if key not in line]
    if problems:
        return problems
    if not isinstance(line["bench"], str) or not line["bench"]:
        problems.append("'bench' is not a non-empty string")
    for key in ("results", "baselines"):
        if not isinstance(line[key], dict):
            problems.append(f"{key!r} is not an object")
    targets = line["targets"]
    if not isinstance(targets, list) or not targets:
        return [*problems, "'targets' is not a non-empty list"]
    for index, item in enumerate(targets):
        where = f"targets[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} is not an object")
            continue
        missing = [key for key in TARGET_KEYS if key not in item]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        where = f"target {item['name']!r}"
        if item["op"] not in (">=", "<="):
            problems.append(f"{where}: op {item['op']!r} is not '>=' or '<='")
        if not _is_number(item["target"]):
            problems.append(f"{where}: target {item['target']!r} is not a number")
        if not isinstance(item["met"], bool):
            problems.append(f"{where}: met {item['met']!r} is not a boolean")
        value = item["value"]
        if value is None:
            if numeric_values:
                problems.append(f"{where}: value is null (nothing measured)")
            elif item["met"] is True:
                problems.append(f"{where}: met without a value")
        elif not _is_number(value):
            problems.append(f"{where}: value {value!r} is not a number")
        elif (item["op"] in (">=", "<=") and _is_number(item["target"])
              and isinstance(item["met"], bool) and item["met"] != _meets(item)):
            problems.append(f"{where}: met={item['met']} contradicts {value} {item['op']} "
                            f"{item['target']}")
    return problems


def _is_number(value: object) -> TypeGuard[int | float]:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _meets(item: Mapping[str, Any]) -> bool:
    value, goal = float(item["value"]), float(item["target"])
    return value >= goal if item["op"] == ">=" else value <= goal


# JSONL ---------------------------------------------------------------------------------------

def to_jsonl(suite: Suite, runs: Iterable[BenchRun]) -> str:
    records = [suite.record(), *(run.record() for run in runs)]
    return "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records)


def from_jsonl(text: str) -> tuple[Suite, list[BenchRun]]:
    suite: Suite | None = None
    runs: list[BenchRun] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        record = json.loads(raw)
        kind = record.pop("kind", None)
        if kind == "suite":
            suite = Suite(**record)
        elif kind == "bench":
            runs.append(BenchRun(**record))
        else:
            raise ValueError(f"line {number}: unknown record kind {kind!r}")
    if suite is None:
        raise ValueError("no suite header record in the file")
    return suite, runs


# Key results ---------------------------------------------------------------------------------

# (label, dotted path into the bench's line, unit). A path the line lacks is left out, so a
# bench that changes shape loses a figure here instead of breaking the table. An empty label
# continues the previous figure ("p50 / p99 at 100/s 12 ms / 40 ms").
KEY_RESULTS: dict[str, list[tuple[str, str, str]]] = {
    "e2e": [
        ("p50 / p99 at 100/s", "results.at_100_per_s.e2e.p50_ms", " ms"),
        ("", "results.at_100_per_s.e2e.p99_ms", " ms"),
        ("p50 / p99 / p999 at 500/s", "results.at_500_per_s.e2e.p50_ms", " ms"),
        ("", "results.at_500_per_s.e2e.p99_ms", " ms"),
        ("", "results.at_500_per_s.e2e.p999_ms", " ms"),
        ("baseline pipeline p99 at 500/s", "baselines.minimal_pipeline_at_500_per_s.e2e.p99_ms",
         " ms"),
        ("max sustainable rate", "results.max_sustainable_rate_per_s", "/s"),
        ("share of the CPU time the host stole during the 500/s step",
         "results.at_500_per_s.steal_fraction", ""),
    ],
    "growth": [
        ("events, small / large store", "results.size.small_events", ""),
        ("", "results.size.large_events", ""),
        ("POST p99 small / large", "results.small.post.p99_ms", " ms"),
        ("", "results.large.post.p99_ms", " ms"),
        ("list p99 small / large", "results.small.list.p99_ms", " ms"),
        ("", "results.large.list.p99_ms", " ms"),
        ("GET by id p99 small / large", "results.small.get.p99_ms", " ms"),
        ("", "results.large.get.p99_ms", " ms"),
        ("projector catch-up", "results.large_fill.projector_catch_up_per_s", " events/s"),
        ("share of the CPU time the host stole during the large store's GET load",
         "results.large.get.steal_fraction", ""),
    ],
    "event_store": [
        ("append, 64 writers, sync always", "results.append.sync_always.64.per_s", "/s"),
        ("raw js.publish, 64 writers, sync always",
         "baselines.raw_publish.sync_always.64.per_s", "/s"),
        ("eventsourcing save, 64 threads", "baselines.eventsourcing.save.64.per_s", "/s"),
        ("append p99, 1 writer, sync always", "results.append.sync_always.1.p99_ms", " ms"),
        ("other events in the big stream", "results.config.big_stream", ""),
    ],
    "gateway": [
        ("POST /api/pireps", "results.post_pireps.rate", "/s"),
        ("GET /api/pireps/{id}", "results.get_pirep.rate", "/s"),
        ("the same GET past the cache", "results.get_pirep_uncached.rate", "/s"),
        ("its ratio to the slower baseline",
         "results.get_pirep_uncached.vs_slower_of_hello_and_select", ""),
        ("gateway processes", "results.gateway_processes", ""),
        ("hello world", "baselines.hello.rate", "/s"),
        ("raw publish", "baselines.js_publish.rate", "/s"),
        ("raw SELECT", "baselines.pg_select.rate", "/s"),
        ("POST p99 at half rate", "results.post_pireps_half.p99_ms", " ms"),
        ("clients", "results.config.clients", ""),
        ("seconds per load", "results.config.seconds", " s"),
    ],
    "instructions": [
        ("POST /api/pireps", "results.post_pireps_instructions", " instructions"),
        ("its floor", "baselines.floor_post_instructions", ""),
        ("GET /api/pireps/{id}", "results.get_pirep_instructions", ""),
        ("hello world", "baselines.hello_get_instructions", ""),
        ("requests counted", "results.requests_counted", ""),
    ],
    "projector": [
        ("rebuild", "results.rebuild.per_s", " events/s"),
        ("raw drain", "baselines.raw_drain.per_s", " events/s"),
        ("raw COPY", "baselines.raw_copy.per_s", " rows/s"),
        ("lag p50", "results.lag.append_ack_to_visible.p50_ms", " ms"),
        ("lag p99", "results.lag.append_ack_to_visible.p99_ms", " ms"),
        ("events rebuilt", "results.config.events", ""),
    ],
    "notifier": [
        ("fan-out p99", "results.notifier.latency.p99_ms", " ms"),
        ("baseline fan-out p99", "baselines.broadcast.latency.p99_ms", " ms"),
        ("memory per idle socket", "results.notifier.rss_per_idle_socket_kib", " KiB"),
        ("end to end p50", "results.end_to_end.latency.p50_ms", " ms"),
        ("end to end p99", "results.end_to_end.latency.p99_ms", " ms"),
        ("sockets", "results.config.sockets", ""),
    ],
}
_GENERIC_KEYS = ("per_s", "rate", "p50_ms", "p99_ms", "p999_ms")
_GENERIC_LIMIT = 8


def key_results(name: str, line: Mapping[str, Any]) -> list[str]:
    """A few figures that say what the targets' ratios were made of."""
    picked: list[str] = []
    known = KEY_RESULTS.get(name)
    if known is not None:
        head_shown = False  # whether the figure a continuation belongs to was shown
        for label, path, unit in known:
            value = _at(line, path)
            if label:
                head_shown = False
                if _is_number(value):
                    head_shown = True
                    picked.append(f"{label} {format_number(value)}{unit}")
            elif head_shown and _is_number(value):
                picked[-1] += f" / {format_number(value)}{unit}"
        return picked
    # A bench the table does not know yet: its rates and latencies, by their path.
    for path, value in _leaves(line.get("results", {}), "", depth=4):
        if path.rsplit(".", 1)[-1] in _GENERIC_KEYS and _is_number(value):
            picked.append(f"{path} {format_number(value)}")
            if len(picked) == _GENERIC_LIMIT:
                break
    return picked


def _at(line: Mapping[str, Any], path: str) -> object:
    node: object = line
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(node: object, prefix: str, depth: int) -> Iterable[tuple[str, object]]:
    if isinstance(node, Mapping) and depth > 0:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key), depth - 1)
    elif not isinstance(node, Mapping):
        yield prefix, node


def format_number(value: float) -> str:
    """Readable figures: 12,345 / 123 / 50 / 12.3 / 0.123 / 1.23e-04."""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.3g}"
    return f"{value:.2e}"


# Rendering ---------------------------------------------------------------------------------

def render(suite: Suite, runs: Sequence[BenchRun], *, source: str = "") -> str:
    """The Markdown between (and including) the markers."""
    machine = suite.machine
    load = machine.get("loadavg_before")
    load_text = " / ".join(f"{x:.2f}" for x in load) if load else "unknown"
    failed = [run.name for run in runs if run.status != "ok"]
    targets = [t for run in runs if run.line for t in run.line.get("targets", [])]
    met = sum(1 for t in targets if t.get("met") is True)
    lines = [
        BEGIN,
        "<!-- Generated by `make bench` (`python -m bench`); edit bench/_table.py, not this "
        "block. -->",
        "",
        "## Benchmark suite: latest run" + (" (quick sizes: not measurements)"
                                             if suite.mode == "quick" else ""),
        "",
        f"- **Date**: {suite.date}. **Command**: `{suite.command}`"
        + (f" at commit `{suite.commit}`" if suite.commit else "") + ".",
        f"- **Machine**: {machine.get('cpus', '?')} cores, {machine.get('cpu_model', '?')}, "
        f"{machine.get('ram_gib', '?')} GiB RAM, {machine.get('system', '?')}, Python "
        f"{machine.get('python', '?')}; load average before the run {load_text} (1/5/15 min). "
        "Everything (servers, services, load generators) runs on this one machine.",
        f"- **Outcome**: {len(runs) - len(failed)} of {len(runs)} benchmarks ran"
        + (f" (**failed: {', '.join(failed)}**)" if failed else "")
        + f"; {met} of {len(targets)} targets met; suite wall time "
        f"{suite.seconds:.0f} s (limit {suite.limit_s:.0f} s).",
    ]
    if source:
        lines.append(f"- **Raw lines**: `{source}` (`python -m bench --render {source}` "
                     "regenerates this block without rerunning).")
    lines += ["", "| bench | run | target | value | op | goal | met |",
              "|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.extend(_target_rows(run))
    lines += ["", "| bench | key results |", "|---|---|"]
    for run in runs:
        figures = key_results(run.name, run.line) if run.line else []
        lines.append(f"| {_cell(run.name)} | {_cell('; '.join(figures) or '—')} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _target_rows(run: BenchRun) -> list[str]:
    how = _run_cell(run)
    targets = run.line.get("targets", []) if run.line else []
    if run.status != "ok" or not targets:
        reason = run.reason or "no JSON line"
        return [f"| {_cell(run.name)} | {how} | {_cell(reason)} | — | — | — | **fail** |"]
    rows = []
    for index, item in enumerate(targets):
        value = item.get("value")
        shown = format_number(value) if _is_number(value) else "missing"
        goal = format_number(item["target"]) if _is_number(item.get("target")) else "?"
        verdict = "pass" if item.get("met") is True else "**fail**"
        first = index == 0
        rows.append(f"| {_cell(run.name) if first else ''} | {how if first else ''} | "
                    f"{_cell(str(item.get('name')))} | {shown} | `{item.get('op')}` | {goal} | "
                    f"{verdict} |")
    return rows


def _run_cell(run: BenchRun) -> str:
    if run.status == "ok":
        text = f"ok, {run.seconds:.0f} s of {run.budget_s:.0f} s"
    else:
        text = f"**{run.status}** after {run.seconds:.0f} s (budget {run.budget_s:.0f} s)"
    if run.args:
        text += f"; `{' '.join(run.args)}`"
    if run.size_note:
        text += f" ({run.size_note})"
    for note in run.notes:
        text += f"; {note}"
    return _cell(text)


def _cell(text: str) -> str:
    """Table-safe: no pipe or newline may end the cell early."""
    return " ".join(text.replace("|", "\\|").split())


# The document ------------------------------------------------------------------------------

def splice(document: str, block: str) -> str:
    """``document`` with the marked block replaced by ``block`` (everything else unchanged).

    Without markers the block goes right after the first top-level heading (or at the top).
    A lone or repeated marker is an error: guessing could eat hand-written text.
    """
    begins, ends = document.count(BEGIN), document.count(END)
    if begins == 1 and ends == 1:
        start, stop = document.index(BEGIN), document.index(END)
        if stop < start:
            raise ValueError("the end marker comes before the begin marker")
        stop += len(END)
        if document[stop:stop + 1] == "\n":
            stop += 1
        return document[:start] + block + document[stop:]
    if begins or ends:
        raise ValueError(f"expected one begin marker {BEGIN} and one end marker {END}, "
                         f"found {begins} and {ends}")
    lines = document.splitlines(keepends=True)
    for index, text in enumerate(lines):
        if text.startswith("# "):
            head = "".join(lines[:index + 1])
            return head + "\n" + block + "\n" + "".join(lines[index + 1:]).lstrip("\n")
    return block + "\n" + document
