"""The suite's table: JSON-line checks, rendering, and the splice into docs/performance.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import _table as table

ROOT = Path(__file__).resolve().parents[2]


def line(name: str = "demo", **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "bench": name,
        "results": {"rate": {"per_s": 1234.0, "p99_ms": 9.5}},
        "baselines": {"raw": {"per_s": 2000.0}},
        "targets": [
            {"name": "ours_vs_raw", "value": 0.617, "op": ">=", "target": 0.5, "met": True},
            {"name": "p99_ms", "value": 120.0, "op": "<=", "target": 100.0, "met": False},
        ],
    }
    return {**base, **overrides}


def suite(mode: str = "full") -> table.Suite:
    return table.Suite(date="2026-11-26 10:00 UTC", command="python -m bench", mode=mode,
                       machine={"cpus": 2, "cpu_model": "AMD EPYC 7B13", "ram_gib": 23.5,
                                "system": "Linux 6.18", "python": "3.11.7",
                                "loadavg_before": [0.29, 1.01, 1.25]},
                       limit_s=600.0, commit="abc1234", seconds=321.0)


def ok(name: str = "demo", **extra: Any) -> table.BenchRun:
    return table.BenchRun(name, ["--events", "5"], 60.0, "ok", 42.0,
                          size_note="5 events to fit", line=line(name), **extra)


def rows_of(block: str, bench: str) -> list[str]:
    return [row for row in block.splitlines() if row.startswith(f"| {bench} |")]


# The JSON line ---------------------------------------------------------------------------------

def test_a_well_formed_line_has_no_problem() -> None:
    assert table.line_problems(line()) == []
    assert table.line_problems(line(), numeric_values=True) == []


@pytest.mark.parametrize(("broken", "expected"), [
    ({"targets": []}, "'targets' is not a non-empty list"),
    ({"results": [1]}, "'results' is not an object"),
    ({"targets": [{"name": "x", "value": 1, "op": ">", "target": 1, "met": True}]},
     "op '>'"),
    ({"targets": [{"name": "x", "value": "fast", "op": ">=", "target": 1, "met": True}]},
     "value 'fast' is not a number"),
    ({"targets": [{"name": "x", "value": 1, "op": ">=", "target": 2, "met": True}]},
     "met=True contradicts 1 >= 2"),
    ({"targets": [{"name": "x", "value": None, "op": ">=", "target": 2, "met": True}]},
     "met without a value"),
    ({"targets": [{"name": "x", "value": 3, "op": ">=", "target": 2}]}, "lacks met"),
])
def test_malformed_lines_are_named(broken: dict[str, Any], expected: str) -> None:
    problems = table.line_problems(line(**broken))
    assert any(expected in problem for problem in problems), problems


def test_a_missing_key_is_reported() -> None:
    incomplete = line()
    del incomplete["baselines"]
    assert table.line_problems(incomplete) == ["missing key 'baselines'"]


def test_null_value_is_well_formed_but_not_numeric() -> None:
    missing = line(targets=[{"name": "x", "value": None, "op": "<=", "target": 1, "met": False}])
    assert table.line_problems(missing) == []
    assert table.line_problems(missing, numeric_values=True) == [
        "target 'x': value is null (nothing measured)"]


def test_find_line_skips_log_lines_on_stdout() -> None:
    wanted = line("gateway")
    stdout = "\n".join([
        "2026-11-26 10:03:34 [info] nats-server started",
        '{"event": "a structured log line", "level": "info"}',
        json.dumps(wanted),
        "{not json",
    ])
    assert table.find_line(stdout) == wanted
    assert table.find_line("only logs\n") is None


# Rendering -------------------------------------------------------------------------------------

def test_render_shows_machine_command_and_every_target() -> None:
    block = table.render(suite(), [ok()], source="docs/bench/latest.jsonl")
    assert block.startswith(table.BEGIN + "\n")
    assert block.endswith(table.END + "\n")
    assert "2 cores, AMD EPYC 7B13, 23.5 GiB RAM" in block
    assert "load average before the run 0.29 / 1.01 / 1.25" in block
    assert "2026-11-26 10:00 UTC" in block
    assert "`python -m bench` at commit `abc1234`" in block
    assert "1 of 2 targets met" in block
    rows = rows_of(block, "demo")
    assert rows[0].startswith("| demo | ok, 42 s of 60 s; `--events 5` (5 events to fit) | "
                              "ours_vs_raw | 0.617 | `>=` | 0.5 | pass |")
    assert "| p99_ms | 120 | `<=` | 100 | **fail** |" in block
    assert "docs/bench/latest.jsonl" in block


@pytest.mark.parametrize("status", ["failed", "timeout", "skipped"])
def test_a_bench_that_did_not_finish_is_a_failed_row_with_its_reason(status: str) -> None:
    broken = table.BenchRun("crashy", [], 90.0, status, 12.0,  # type: ignore[arg-type]
                            reason="exit code 1: RuntimeError: boom")
    block = table.render(suite(), [ok(), broken])
    rows = rows_of(block, "crashy")
    assert len(rows) == 2  # one in the targets table, one in the key results
    assert rows[0] == (f"| crashy | **{status}** after 12 s (budget 90 s) | exit code 1: "
                       "RuntimeError: boom | — | — | — | **fail** |")
    assert rows[1] == "| crashy | — |"
    assert "1 of 2 benchmarks ran (**failed: crashy**)" in block


def test_a_timed_out_bench_with_a_line_still_shows_as_failed() -> None:
    late = table.BenchRun("late", [], 30.0, "timeout", 30.0, reason="stopped at its deadline",
                          line=line("late"))
    row = rows_of(table.render(suite(), [late]), "late")[0]
    assert "**timeout**" in row
    assert row.endswith("| stopped at its deadline | — | — | — | **fail** |")


def test_cells_cannot_break_the_table() -> None:
    odd = line(targets=[{"name": "a | b\nc", "value": 1, "op": "<=", "target": 2, "met": True}])
    run = table.BenchRun("odd", [], 10.0, "ok", 1.0, line=odd)
    row = rows_of(table.render(suite(), [run]), "odd")[0]
    assert "a \\| b c" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 9  # 7 cells between 8 unescaped pipes


def test_quick_tables_say_they_are_not_measurements() -> None:
    assert "(quick sizes: not measurements)" in table.render(suite("quick"), [ok()])
    assert "not measurements" not in table.render(suite("full"), [ok()])


def test_key_results_of_a_known_bench_follow_their_paths() -> None:
    projector = {"results": {"rebuild": {"per_s": 5190}, "config": {"events": 200000},
                             "lag": {"append_ack_to_visible": {"p50_ms": 96.1, "p99_ms": 719}}},
                 "baselines": {"raw_drain": {"per_s": 5768}}}
    # raw_copy is missing: left out, not an error.
    assert table.key_results("projector", projector) == [
        "rebuild 5,190 events/s", "raw drain 5,768 events/s", "lag p50 96.1 ms",
        "lag p99 719 ms", "events rebuilt 200,000"]


def test_continued_figures_share_their_label_and_vanish_with_it() -> None:
    e2e = {"results": {"at_100_per_s": {"e2e": {"p50_ms": 12.0, "p99_ms": 40.5}},
                       "at_500_per_s": {"e2e": {"p99_ms": 80.0}}}}
    # At 500/s the p50 (the head) is missing, so its p99 must not join the 100/s figure.
    assert table.key_results("e2e", e2e) == ["p50 / p99 at 100/s 12 ms / 40.5 ms"]


def test_key_results_of_an_unknown_bench_are_its_rates_and_latencies() -> None:
    figures = table.key_results("newcomer", line("newcomer"))
    assert figures == ["rate.per_s 1,234", "rate.p99_ms 9.5"]


@pytest.mark.parametrize(("value", "shown"), [
    (1234567, "1,234,567"), (1234.5, "1,234"), (123.0, "123"), (50.0, "50"), (12.34, "12.3"),
    (0.6174, "0.617"), (0.0, "0"), (0.000123, "1.23e-04"), (2, "2")])
def test_numbers_are_readable(value: float, shown: str) -> None:
    assert table.format_number(value) == shown


def test_jsonl_round_trip_regenerates_the_same_table() -> None:
    runs = [ok(), table.BenchRun("crashy", [], 90.0, "failed", 3.0, reason="exit code 1")]
    text = table.to_jsonl(suite(), runs)
    assert [json.loads(raw)["kind"] for raw in text.splitlines()] == ["suite", "bench", "bench"]
    again_suite, again_runs = table.from_jsonl(text)
    assert again_suite == suite()
    assert again_runs == runs
    assert table.render(again_suite, again_runs) == table.render(suite(), runs)


def test_jsonl_without_a_header_is_refused() -> None:
    with pytest.raises(ValueError, match="no suite header"):
        table.from_jsonl(json.dumps(ok().record()) + "\n")


# The document ----------------------------------------------------------------------------------

DOC = """# Performance

<!-- bench-table:begin -->
old table
<!-- bench-table:end -->

## Web UI

Hand-written | text with a | pipe, and a marker-like `bench-table` mention.
"""


def test_splice_replaces_only_the_marked_block() -> None:
    block = table.render(suite(), [ok()])
    out = table.splice(DOC, block)
    head, rest = DOC.split(table.BEGIN)
    tail = rest.split(table.END, 1)[1]
    assert out == head + block + tail.removeprefix("\n")
    assert "old table" not in out
    # Splicing again is stable: the hand-written part never drifts.
    assert table.splice(out, block) == out
    assert table.splice(out, "X\n").endswith("X\n\n## Web UI\n\nHand-written | text with a | "
                                            "pipe, and a marker-like `bench-table` mention.\n")


def test_splice_without_markers_puts_the_block_under_the_title() -> None:
    doc = "# Performance\n\n## Web UI\n\ntext\n"
    out = table.splice(doc, table.BEGIN + "\nT\n" + table.END + "\n")
    assert out == ("# Performance\n\n" + table.BEGIN + "\nT\n" + table.END + "\n\n"
                   "## Web UI\n\ntext\n")
    # ... and the next run replaces it in place.
    assert table.splice(out, table.BEGIN + "\nU\n" + table.END + "\n") == out.replace("\nT\n",
                                                                                        "\nU\n")


@pytest.mark.parametrize("doc", [
    "# P\n" + table.BEGIN + "\nno end\n",
    "# P\nno begin\n" + table.END + "\n",
    "# P\n" + table.END + "\n" + table.BEGIN + "\n",
    "# P\n" + (table.BEGIN + "\n" + table.END + "\n") * 2,
])
def test_splice_refuses_broken_markers(doc: str) -> None:
    with pytest.raises(ValueError, match="marker"):
        table.splice(doc, table.BEGIN + "\n" + table.END + "\n")


def test_the_performance_doc_has_one_marked_block_near_the_top() -> None:
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert text.count(table.BEGIN) == 1
    assert text.count(table.END) == 1
    assert text.index(table.BEGIN) < text.index("\n## ")  # before the hand-written sections
