"""The ``albatross up`` supervisor with fake children (``python -c`` scripts), real signals.

The real services and servers are not used here: the supervisor, the bootstrap step and the
readiness announcement get injected commands and a fake infrastructure.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import CapturingLogger
from structlog.typing import FilteringBoundLogger

from albatross.config import Settings, local_url
from albatross.lifecycle import Shutdown, StartupError
from albatross.services.up import (
    Backoff,
    ServiceSpec,
    Supervisor,
    default_services,
    gateway_process_count,
    gateway_services,
    port_in_use,
    up,
)

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

CRASHER = ("import sys; print('{\"event\": \"crasher up\"}'); sys.stderr.write('dying\\n'); "
           "sys.exit(3)")
SHORT_LIVED = "import sys, time; time.sleep(0.4); sys.exit(1)"


def _capturing_log() -> tuple[FilteringBoundLogger, CapturingLogger]:
    capture = CapturingLogger()
    log: FilteringBoundLogger = structlog.wrap_logger(
        capture, processors=[], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    return log, capture


def _events(capture: CapturingLogger, event: str) -> list[dict[str, Any]]:
    return [call.kwargs for call in capture.calls if call.kwargs.get("event") == event]


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_crashing_child_is_restarted_with_growing_backoff() -> None:
    log, capture = _capturing_log()
    out, err = io.BytesIO(), io.BytesIO()
    supervisor = Supervisor([ServiceSpec("crasher", (PY, "-c", CRASHER))], env=dict(os.environ),
                            log=log, backoff=Backoff(initial=0.05, maximum=0.2, reset_after=30),
                            stdout=out, stderr=err)
    stopping = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stopping))
    await _until(lambda: supervisor.restarts["crasher"] >= 4, timeout=8)
    stopping.set()
    await asyncio.wait_for(running, 3)

    restarts = _events(capture, "service exited; restarting")
    assert [entry["restart_in_seconds"] for entry in restarts[:4]] == [0.05, 0.1, 0.2, 0.2]
    assert restarts[0]["reason"] == "exit code 3: dying"
    assert out.getvalue().count(b'{"event": "crasher up"}\n') >= 4
    assert err.getvalue().count(b"dying\n") >= 4
    assert supervisor.pid("crasher") is None


async def test_the_backoff_resets_after_a_child_stayed_up_long_enough() -> None:
    log, capture = _capturing_log()
    supervisor = Supervisor([ServiceSpec("short", (PY, "-c", SHORT_LIVED))], env=dict(os.environ),
                            log=log, backoff=Backoff(initial=0.05, maximum=5, reset_after=0.3),
                            stdout=io.BytesIO(), stderr=io.BytesIO())
    stopping = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stopping))
    await _until(lambda: supervisor.restarts["short"] >= 2, timeout=8)
    stopping.set()
    await asyncio.wait_for(running, 3)
    delays = [entry["restart_in_seconds"]
              for entry in _events(capture, "service exited; restarting")]
    assert delays[:2] == [0.05, 0.05]


async def test_stopping_sigkills_a_child_that_ignores_sigterm() -> None:
    log, capture = _capturing_log()
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ignoring', flush=True); time.sleep(60)")
    out = io.BytesIO()
    supervisor = Supervisor([ServiceSpec("stubborn", (PY, "-c", stubborn))], env=dict(os.environ),
                            log=log, stop_timeout=0.5, stdout=out, stderr=io.BytesIO())
    stopping = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stopping))
    await _until(lambda: b"ignoring" in out.getvalue(), timeout=5)
    pid = supervisor.pid("stubborn")
    assert pid is not None
    stopping.set()
    started = time.monotonic()
    await asyncio.wait_for(running, 5)
    assert 0.4 < time.monotonic() - started < 3
    assert [entry["child"] for entry in _events(capture, "service ignored SIGTERM; killing it")
            ] == ["stubborn"]
    assert _events(capture, "service stopped")[0]["code"] == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert supervisor.restarts["stubborn"] == 0


async def test_with_no_services_the_supervisor_still_runs_until_stopped() -> None:
    log, _capture = _capturing_log()
    stopping = asyncio.Event()
    running = asyncio.create_task(Supervisor([], env={}, log=log).run(stopping))
    await asyncio.sleep(0.2)
    assert not running.done()
    stopping.set()
    await asyncio.wait_for(running, 1)


_SUPERVISOR_SCRIPT = textwrap.dedent('''
    import json, os, sys
    from albatross.lifecycle import run_main
    from albatross.observability import configure_logging, get_logger
    from albatross.services.up import ServiceSpec, Supervisor

    async def serve(shutdown):
        configure_logging("up")
        children = json.loads(sys.argv[1])
        specs = [ServiceSpec(name, (sys.executable, "-c", code)) for name, code in children.items()]
        supervisor = Supervisor(specs, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                log=get_logger("up"), stop_timeout=float(sys.argv[2]))
        await supervisor.run(shutdown.requested)

    run_main(serve, name="supervisor-test", cancel_after=None)
''')

_GRACEFUL_CHILD = textwrap.dedent('''
    import json, os, signal, sys, time
    def bye(*_):
        time.sleep(0.2)
        print(json.dumps({"event": "graceful bye"}), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    print(json.dumps({"event": "child up", "name": "graceful", "pid": os.getpid()}), flush=True)
    time.sleep(60)
''')

_STUBBORN_CHILD = textwrap.dedent('''
    import json, os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(json.dumps({"event": "child up", "name": "stubborn", "pid": os.getpid()}), flush=True)
    time.sleep(60)
''')


def test_sigterm_to_the_supervisor_stops_every_child_and_exits_0(tmp_path: Path) -> None:
    script = tmp_path / "supervisor.py"
    script.write_text(_SUPERVISOR_SCRIPT)
    children = {"graceful": _GRACEFUL_CHILD, "stubborn": _STUBBORN_CHILD}
    process = subprocess.Popen([PY, str(script), json.dumps(children), "1.0"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    pids: dict[str, int] = {}
    lines: list[str] = []
    while len(pids) < 2:
        line = process.stdout.readline()
        assert line, f"supervisor ended early: {lines} {process.stderr and process.stderr.read()}"
        lines.append(line)
        record = json.loads(line)
        if record.get("event") == "child up":
            pids[record["name"]] = record["pid"]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest, err = process.communicate(timeout=10)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, err
    assert elapsed < 5
    records = [json.loads(line) for line in rest.splitlines()]
    events = [(record["event"], record.get("child")) for record in records]
    assert ("graceful bye", None) in events
    assert ("service ignored SIGTERM; killing it", "stubborn") in events
    assert not any(record["event"] == "service exited; restarting" for record in records)
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@dataclass
class _FakeServers:
    nats_url: str = "nats://127.0.0.1:4999"
    database_url: str = "postgresql://fake@127.0.0.1:5999/albatross"
    calls: list[tuple[Path, str | None, str | None]] = field(default_factory=list)
    stopped: bool = False

    @asynccontextmanager
    async def __call__(self, data_dir: Path, *, nats_url: str | None = None,
                       database_url: str | None = None) -> AsyncIterator[_FakeServers]:
        self.calls.append((data_dir, nats_url, database_url))
        try:
            yield self
        finally:
            self.stopped = True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_FAKE_GATEWAY = textwrap.dedent('''
    import http.server, json, os, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(json.dumps({"event": "gateway up", "nats": os.environ["ALBATROSS_NATS_URL"],
                      "db": os.environ["ALBATROSS_DATABASE_URL"]}), flush=True)
    server.serve_forever()
''')


async def test_up_runs_bootstrap_then_services_and_announces_the_url(tmp_path: Path) -> None:
    port = _free_port()
    settings = Settings.from_env({"ALBATROSS_HTTP_PORT": str(port),
                                  "ALBATROSS_DATA_DIR": str(tmp_path / "data")})
    servers = _FakeServers()
    shutdown = Shutdown()
    announce, out = io.StringIO(), io.BytesIO()
    bootstrap = ServiceSpec("bootstrap", (PY, "-c", "print('admin password: s3cret')"))
    gateway = ServiceSpec("gateway", (PY, "-c", _FAKE_GATEWAY, str(port)))
    running = asyncio.create_task(up(
        settings, shutdown, environ=dict(os.environ), infrastructure=servers,
        services=[gateway], bootstrap=bootstrap, announce=announce, stdout=out,
        stderr=io.BytesIO(), stop_timeout=2))
    await _until(lambda: announce.getvalue() != "", timeout=8)
    assert announce.getvalue() == f"Albatross is ready: http://127.0.0.1:{port}\n"
    shutdown.request("test")
    await asyncio.wait_for(running, 5)

    assert servers.calls == [(tmp_path / "data", None, None)]
    assert servers.stopped
    lines = out.getvalue().decode().splitlines()
    assert lines[0] == "admin password: s3cret"
    assert json.loads(lines[1]) == {"event": "gateway up", "nats": servers.nats_url,
                                    "db": servers.database_url}


async def test_up_fails_with_the_bootstrap_message_and_stops_the_servers(
        tmp_path: Path) -> None:
    settings = Settings.from_env({"ALBATROSS_DATA_DIR": str(tmp_path),
                                  "ALBATROSS_NATS_URL": "nats://elsewhere:4222"})
    servers = _FakeServers()
    failing = ServiceSpec("bootstrap", (PY, "-c", "import sys; "
                                        "sys.exit('albatross-bootstrap: NATS is unreachable')"))
    never = ServiceSpec("gateway", (PY, "-c", "raise SystemExit('must not start')"))
    with pytest.raises(StartupError) as failure:
        await up(settings, Shutdown(), environ={}, infrastructure=servers, services=[never],
                 bootstrap=failing, stdout=io.BytesIO(), stderr=io.BytesIO())
    assert str(failure.value) == ("bootstrap failed (exit code 1: "
                                  "albatross-bootstrap: NATS is unreachable)")
    assert servers.calls == [(tmp_path, "nats://elsewhere:4222", None)]
    assert servers.stopped


async def test_up_refuses_a_port_another_process_listens_on(tmp_path: Path) -> None:
    servers = _FakeServers()
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        settings = Settings.from_env({"ALBATROSS_HTTP_PORT": str(port),
                                      "ALBATROSS_DATA_DIR": str(tmp_path)})
        never = ServiceSpec("gateway", (PY, "-c", "raise SystemExit('must not start')"))
        with pytest.raises(StartupError, match=f"port {port} .ALBATROSS_HTTP_PORT. is in use"):
            await up(settings, Shutdown(), environ={}, infrastructure=servers,
                     services=[never], stdout=io.BytesIO(), stderr=io.BytesIO())
    assert servers.calls == []  # nothing started
    assert not port_in_use("127.0.0.1", port)  # free again: not a false alarm


async def test_a_stop_while_the_servers_start_stops_them_without_waiting(
        tmp_path: Path) -> None:
    spawned: list[subprocess.Popen[bytes]] = []

    @asynccontextmanager
    async def slow(data_dir: Path, *, nats_url: str | None = None,
                   database_url: str | None = None) -> AsyncIterator[_FakeServers]:
        # Like a first initdb: a server process is up, and the start takes a while yet.
        spawned.append(subprocess.Popen([PY, "-c", "import time; time.sleep(300)"]))
        try:
            await asyncio.sleep(15)
            yield _FakeServers()
        finally:
            spawned[0].kill()
            spawned[0].wait()

    shutdown = Shutdown()
    running = asyncio.create_task(up(
        Settings.from_env({"ALBATROSS_DATA_DIR": str(tmp_path)}), shutdown, environ={},
        infrastructure=slow, services=[], stdout=io.BytesIO(), stderr=io.BytesIO()))
    await _until(lambda: spawned != [], timeout=5)
    shutdown.request("test")
    await asyncio.wait_for(running, 3)  # not the 15 s of the start
    assert spawned[0].poll() is not None  # and nothing left behind


async def test_up_reports_servers_that_cannot_start(tmp_path: Path) -> None:
    @asynccontextmanager
    async def broken(data_dir: Path, *, nats_url: str | None = None,
                     database_url: str | None = None) -> AsyncIterator[_FakeServers]:
        if data_dir.exists():
            raise OSError("address already in use")
        yield _FakeServers()

    with pytest.raises(StartupError, match="cannot start NATS/PostgreSQL: OSError: address"):
        await up(Settings.from_env({"ALBATROSS_DATA_DIR": str(tmp_path)}), Shutdown(),
                 environ={}, infrastructure=broken, services=[])


def test_default_services_lists_only_modules_that_exist() -> None:
    specs = default_services(("bootstrap", "no_such_service"))
    assert [(spec.name, spec.command[1:]) for spec in specs] == [
        ("bootstrap", ("-m", "albatross.services.bootstrap.main"))]


def test_local_url_shows_a_reachable_address() -> None:
    assert local_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert local_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert local_url("::", 8080) == "http://[::1]:8080"
    assert local_url("192.0.2.2", 8082) == "http://192.0.2.2:8082"


def test_one_gateway_process_is_the_plain_gateway(tmp_path: Path) -> None:
    specs = gateway_services(1, tmp_path)
    assert [(spec.name, spec.command[1:], dict(spec.env)) for spec in specs] == [
        ("gateway", ("-m", "albatross.services.gateway.main"), {})]
    assert list(tmp_path.iterdir()) == []


def test_several_gateway_processes_share_the_port_and_their_metrics(tmp_path: Path) -> None:
    metrics = tmp_path / "gateway-metrics"
    metrics.mkdir()
    (metrics / "counter_123.db").write_bytes(b"an earlier run's counts")
    specs = gateway_services(3, tmp_path)
    assert [spec.name for spec in specs] == ["gateway-1", "gateway-2", "gateway-3"]
    for spec in specs:
        assert spec.command[1:] == ("-m", "albatross.services.gateway.main")
        assert spec.env == {"ALBATROSS_HTTP_REUSE_PORT": "true",
                            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
                            "ALBATROSS_HASHING_SLOTS_DIR": str(tmp_path / "hashing-slots")}
    assert list(metrics.iterdir()) == []
    services = default_services(("gateway", "projector"), gateways=specs)
    assert [spec.name for spec in services] == ["gateway-1", "gateway-2", "gateway-3",
                                                "projector"]


@pytest.mark.parametrize(("configured", "cpus", "expected"),
                         [(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 2), (0, 6, 3), (0, 16, 4),
                          (3, 16, 3), (6, 1, 6)])
def test_gateway_processes_default_to_one_per_two_cpus_from_one_to_four(configured: int, cpus: int,
                                                               expected: int) -> None:
    assert gateway_process_count(configured, cpus) == expected


async def test_up_announces_the_url_when_the_gateway_runs_as_several_processes(
        tmp_path: Path) -> None:
    port = _free_port()
    settings = Settings.from_env({"ALBATROSS_HTTP_PORT": str(port),
                                  "ALBATROSS_DATA_DIR": str(tmp_path / "data")})
    shutdown = Shutdown()
    announce = io.StringIO()
    gateways = [ServiceSpec(f"gateway-{n}", (PY, "-c", _FAKE_GATEWAY, str(listen)))
                for n, listen in ((1, port), (2, _free_port()))]
    running = asyncio.create_task(up(
        settings, shutdown, environ=dict(os.environ), infrastructure=_FakeServers(),
        services=gateways, bootstrap=ServiceSpec("bootstrap", (PY, "-c", "pass")),
        announce=announce, stdout=io.BytesIO(), stderr=io.BytesIO(), stop_timeout=2))
    await _until(lambda: announce.getvalue() != "", timeout=8)
    assert announce.getvalue() == f"Albatross is ready: http://127.0.0.1:{port}\n"
    shutdown.request("test")
    await asyncio.wait_for(running, 5)
