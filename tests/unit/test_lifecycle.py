"""run_main in real child processes: signals, deadlines and exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from albatross.lifecycle import EXIT_FAILURE, EXIT_STUCK

_SCRIPT = textwrap.dedent('''
    import asyncio, sys, time
    from albatross.lifecycle import Shutdown, StartupError, connect_dependency, run_main

    MODE = sys.argv[1]
    USE_UVLOOP = sys.argv[2] == "uvloop"

    def say(text):
        sys.stdout.write(text + "\\n")
        sys.stdout.flush()

    async def refuse():
        raise ConnectionRefusedError("connection refused")

    async def serve(shutdown: Shutdown) -> None:
        if MODE == "startup-failure":
            await connect_dependency("NATS at nats://127.0.0.1:1", refuse(), timeout=1)
        if MODE == "crash":
            raise RuntimeError("boom")
        loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
        say(f"ready {loop_name}")
        if MODE == "graceful":
            await shutdown.wait()
            await asyncio.sleep(0.2)  # "finishes what it holds"
            say(f"stopped on {shutdown.reason}")
        elif MODE == "ignores-request":
            await asyncio.sleep(3600)
        elif MODE == "blocks-loop":
            await shutdown.wait()
            time.sleep(3600)
        elif MODE == "returns":
            return

    run_main(serve, name="lifecycle-test", deadline=float(sys.argv[3]),
             cancel_after=None if sys.argv[4] == "none" else float(sys.argv[4]),
             use_uvloop=USE_UVLOOP)
''')


def _start(tmp_path: Path, mode: str, *, loop: str = "uvloop", deadline: float = 10.0,
           cancel_after: str = "8") -> subprocess.Popen[str]:
    script = tmp_path / "service.py"
    script.write_text(_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), mode, loop, str(deadline), cancel_after],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2])


def _wait_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready"), (line, process.stderr.read() if process.stderr else "")
    return line.strip()


@pytest.mark.parametrize(("loop", "sig"), [("uvloop", signal.SIGTERM),
                                           ("asyncio", signal.SIGINT)])
def test_a_stop_signal_stops_the_service_gracefully_with_exit_0(
        tmp_path: Path, loop: str, sig: signal.Signals) -> None:
    process = _start(tmp_path, "graceful", loop=loop)
    assert _wait_ready(process) == f"ready {loop}"
    started = time.monotonic()
    process.send_signal(sig)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert time.monotonic() - started < 10
    assert out.strip() == f"stopped on {sig.name}"
    assert err == ""


def test_repeated_signals_do_not_abort_a_graceful_stop(tmp_path: Path) -> None:
    process = _start(tmp_path, "graceful")
    _wait_ready(process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert out.strip() == "stopped on SIGINT"


def test_a_service_that_ends_on_its_own_exits_0(tmp_path: Path) -> None:
    process = _start(tmp_path, "returns")
    _out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


def test_a_startup_failure_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    process = _start(tmp_path, "startup-failure")
    out, err = process.communicate(timeout=10)
    assert process.returncode == EXIT_FAILURE
    assert out == ""
    assert err == ("lifecycle-test: error: cannot reach NATS at nats://127.0.0.1:1: "
                   "ConnectionRefusedError: connection refused\n")


def test_a_crash_exits_non_zero_with_a_traceback_and_a_last_line(tmp_path: Path) -> None:
    process = _start(tmp_path, "crash")
    _out, err = process.communicate(timeout=10)
    assert process.returncode == EXIT_FAILURE
    assert "Traceback" in err
    assert err.splitlines()[-1] == "lifecycle-test: error: RuntimeError: boom"


def test_a_service_ignoring_the_request_is_cancelled_and_exits_0(tmp_path: Path) -> None:
    process = _start(tmp_path, "ignores-request", deadline=3.0, cancel_after="0.5")
    _wait_ready(process)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert 0.4 < time.monotonic() - started < 3.0
    assert "still stopping after 0.5 s; cancelling" in err


def test_a_stuck_process_is_forced_out_non_zero_at_the_deadline(tmp_path: Path) -> None:
    process = _start(tmp_path, "blocks-loop", deadline=1.0, cancel_after="none")
    _wait_ready(process)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=10)
    elapsed = time.monotonic() - started
    assert process.returncode == EXIT_STUCK
    assert 0.9 < elapsed < 3.0
    assert "did not stop within 1 s" in err
