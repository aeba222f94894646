"""Notifier benchmark: fan-out latency beside a minimal broadcast server, memory per idle
socket, and end-to-end ``POST /api/pireps`` → ``change``.

Usage: ``python bench/notifier.py [--quick] [--sockets N] [--changes M] [--e2e | --no-e2e]``

Prints one JSON line on stdout (see ``bench/_common.py``); progress goes to stderr.

1. Fan-out: N WebSockets (default 5,000), opened by a separate client process, all allowed to
   see one tenant's changes (one Pilot's session token); M changes (default 50) published on
   the changes stream, one every ``gap`` seconds. Latency of each (socket, change): from just
   before ``js.publish`` to receipt by the client (CLOCK_MONOTONIC is system-wide on Linux, so
   the two processes' clocks agree). The same client process then does the same against a
   minimal aiohttp broadcast server (a core NATS subscription; every message written to every
   socket; no auth, no filter, no queue) in the same run. Target: p99 <= 2x the baseline's.
   Correctness is counted too: every socket must get every change, once, in order.
2. Memory: the server process's resident set size before the sockets connect and once they
   are all authenticated and idle; the growth per socket. Target: <= 40 KiB.
3. End to end (not in ``--quick``): gateway, projector and notifier processes on an embedded
   PostgreSQL, one client subscribed through the gateway's ``/api/ws``; PIREPs posted at
   200/s; latency from the POST to the ``change`` carrying that PIREP.

Servers are embedded and private to the run (nats-server with default sync).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

if __package__:
    from bench import _common as common
else:  # run as a script: bench/ is on sys.path
    import _common as common  # type: ignore[no-redef]

BENCH = "notifier"
HERE = Path(__file__).resolve()
PASSWORD = "bench password 123"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    sockets: int
    changes: int
    gap: float
    e2e: bool
    e2e_rate: int = 200
    e2e_seconds: float = 10.0


# Client process ---------------------------------------------------------------------------
# A bare asyncio WebSocket client: 5,000 aiohttp clients in one Python process cannot read
# 25,000 messages/s, and the benchmark must measure the servers, not its own clients.

class _Change(msgspec.Struct):
    remarks: str | None = None


class _Message(msgspec.Struct):
    type: str
    sequence: int = 0
    data: _Change | None = None


_DECODE = msgspec.json.Decoder(_Message).decode
_MASK = b"\x01\x02\x03\x04"


def masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    body = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + _MASK + body


class RawClient(asyncio.Protocol):
    def __init__(self, host: str, path: str, auth: bytes, book: ClientBook, index: int) -> None:
        self._request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self._auth = masked_frame(1, auth)
        self._book = book
        self._index = index
        self._buffer = bytearray()
        self._open = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()  # one read, one receipt time for all its frames
        buffer = self._buffer
        buffer += data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._book.failed("handshake")
                return
            del buffer[:end + 4]
            self._open = True
            assert self.transport is not None
            self.transport.write(self._auth)
        offset = 0
        size = len(buffer)
        while size - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            head = 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2:offset + 4], "big")
                head = 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2:offset + 10], "big")
                head = 10
            if size - offset < head + length:
                break
            opcode = buffer[offset] & 0x0F
            payload = bytes(buffer[offset + head:offset + head + length])
            offset += head + length
            if opcode == 1:
                self._book.message(self._index, _DECODE(payload), now)
            elif opcode == 9 and self.transport is not None:
                self.transport.write(masked_frame(10, payload[:125]))
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                reason = payload[2:].decode(errors="replace")
                self._book.failed(f"closed by server: {code} {reason}")
        del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self._book.lost(self._index)


class ClientBook:
    """What every socket received."""

    def __init__(self, count: int, changes: int) -> None:
        self.count = count
        self.changes = changes
        self.latencies: list[float] = []
        self.got: list[list[int]] = [[] for _ in range(count)]
        self.ready = 0
        self.complete = 0
        self.errors: dict[str, int] = {}
        self.all_ready = asyncio.Event()
        self.all_done = asyncio.Event()

    def message(self, index: int, message: _Message, now: float) -> None:
        if message.type == "ready":
            self.ready += 1
            if self.ready == self.count:
                self.all_ready.set()
        elif message.type == "change" and message.data is not None:
            self.latencies.append(now - float(message.data.remarks or "nan"))
            mine = self.got[index]
            mine.append(message.sequence)
            if len(mine) == self.changes:
                self.complete += 1
                if self.complete == self.count:
                    self.all_done.set()

    def failed(self, why: str) -> None:
        self.errors[why] = self.errors.get(why, 0) + 1

    def lost(self, index: int) -> None:
        if len(self.got[index]) < self.changes:
            self.failed("connection lost")


async def run_clients(spec: dict[str, Any]) -> None:
    """Open the sockets, say READY, collect every change, print a JSON summary."""
    loop = asyncio.get_running_loop()
    host, port, path = spec["host"], spec["port"], spec["path"]
    count, changes = spec["sockets"], spec["changes"]
    book = ClientBook(count, changes)
    auth = msgspec.json.encode({"type": "auth", "token": spec["token"]})
    opening = asyncio.Semaphore(100)  # below the server's listen backlog
    transports: list[asyncio.BaseTransport] = []

    async def open_one(i: int) -> None:
        async with opening:
            transport, _ = await loop.create_connection(
                lambda: RawClient(f"{host}:{port}", path, auth, book, i), host, port)
            transports.append(transport)

    await asyncio.gather(*(open_one(i) for i in range(count)))
    # If some never get ready, the summary says how many and why: a longer wait would only
    # run into the suite's deadline, which kills the bench before it says anything.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await book.all_ready.wait()
    print("READY", flush=True)
    try:
        async with asyncio.timeout(spec["timeout"]):
            await book.all_done.wait()
    except TimeoutError:
        book.failed("timeout")
    for transport in transports:
        transport.close()
    received = sum(len(g) for g in book.got)
    in_order = (all(g == sorted(set(g)) for g in book.got) if spec["check_sequences"]
                else None)
    print(json.dumps({"latency": common.latency_ms(book.latencies), "received": received,
                      "expected": count * changes, "sockets_ready": book.ready,
                      "sockets_complete": book.complete,
                      "in_order_no_duplicates": in_order, "errors": book.errors}), flush=True)


# Baseline server --------------------------------------------------------------------------

async def serve_baseline(port: int, nats_url: str) -> None:
    """The minimal broadcast server: what the notifier is compared with."""
    import nats
    from aiohttp import web

    sockets: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=25.0)
        await ws.prepare(request)
        await ws.receive()  # the auth message, unchecked
        await ws.send_str('{"type":"ready","user_id":"x","sequence":0}')
        sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    nc = await nats.connect(nats_url)

    async def broadcast(msg: Any) -> None:
        text = msg.data.decode()
        for ws in list(sockets):
            with contextlib.suppress(ConnectionError):
                await ws.send_str(text)

    await nc.subscribe("albatross.changes.>", cb=broadcast)
    app = web.Application()
    app.router.add_get("/api/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


# Orchestration ----------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def wait_http(url: str, timeout: float = 60) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} never became ready")


async def child(*args: str, env: dict[str, str] | None = None,
                stdout: int = asyncio.subprocess.DEVNULL,
                stderr: int | None = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    # Services log JSON lines to stdout: they must not mix with the benchmark's one line.
    return await asyncio.create_subprocess_exec(
        *args, env={**os.environ, **(env or {})}, stdout=stdout, stderr=stderr)


def pirep_change(tenant_id: str, pilot_id: str, sent: float) -> bytes:
    from albatross.application.views import ChangeMessage, PirepView

    view = PirepView(
        id=uuid.uuid4().hex, tenant_id=tenant_id, pilot_id=pilot_id, status="pending",
        flight_number="BNC1", departure="EGLL", arrival="LFPG", aircraft_type="A320",
        aircraft_registration="G-BNCH", block_off_at=T0, block_on_at=T0 + timedelta(hours=1),
        flight_time_minutes=55, fuel_used_kg=2500.0, distance_nm=200.0, landing_rate_fpm=-150.0,
        route="DCT", remarks=repr(sent), source="manual", submitted_at=T0, reviewed_at=None,
        reviewed_by=None, review_comment=None, version=1)
    return msgspec.json.encode(ChangeMessage(sequence=0, entity="pirep", id=view.id,
                                             tenant_id=tenant_id, event="PirepSubmitted",
                                             data=view))


async def fan_out(name: str, server_pid: int, url: str, token: str, js: Any, tenant_id: str,
                  pilot_id: str, config: Config, *, check_sequences: bool) -> dict[str, Any]:
    parts = urlsplit(url)
    spec = {"host": parts.hostname, "port": parts.port, "path": parts.path, "token": token,
            "sockets": config.sockets, "changes": config.changes,
            "check_sequences": check_sequences,
            "timeout": 60 + config.changes * config.gap * 4}
    rss_before = rss_kib(server_pid)
    common.progress(f"{name}: opening {config.sockets} sockets")
    clients = await child(sys.executable, str(HERE), "clients", json.dumps(spec),
                          stdout=asyncio.subprocess.PIPE, stderr=None)
    assert clients.stdout is not None
    try:
        line = await asyncio.wait_for(clients.stdout.readline(), 180)
        assert line.strip() == b"READY", line
        await asyncio.sleep(2.0)  # idle
        rss_idle = rss_kib(server_pid)
        common.progress(f"{name}: {config.sockets} sockets ready; publishing "
                        f"{config.changes} changes")
        subject = f"albatross.changes.{tenant_id}.pirep.bench"
        for _ in range(config.changes):
            await js.publish(subject, pirep_change(tenant_id, pilot_id, time.monotonic()))
            await asyncio.sleep(config.gap)
        out = await asyncio.wait_for(clients.stdout.readline(), spec["timeout"] + 30)
        result: dict[str, Any] = json.loads(out)
    finally:
        if clients.returncode is None:
            clients.terminate()
        await clients.wait()
    result["rss_before_kib"] = rss_before
    result["rss_idle_kib"] = rss_idle
    result["rss_per_idle_socket_kib"] = round((rss_idle - rss_before) / config.sockets, 2)
    common.progress(f"{name}: p50 {result['latency']['p50_ms']} ms, p99 "
                    f"{result['latency']['p99_ms']} ms, "
                    f"{result['rss_per_idle_socket_kib']} KiB/socket")
    return result


async def end_to_end(base: str, api_key: str, config: Config) -> dict[str, Any]:
    """POST /api/pireps at a steady rate; time until the change reaches a subscribed socket."""
    import aiohttp

    sent: dict[str, float] = {}
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    total = int(config.e2e_rate * config.e2e_seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/api/ws")
        await ws.send_str(json.dumps({"type": "auth", "token": api_key}))
        ready = await ws.receive(timeout=10)
        assert '"ready"' in ready.data, ready

        async def listen() -> None:
            async for msg in ws:
                now = time.monotonic()
                data = msgspec.json.decode(msg.data)
                if data.get("type") == "change" and data["entity"] == "pirep":
                    marker = data["data"].get("remarks")
                    if marker in sent and data["event"] == "PirepSubmitted":
                        latencies.append(now - sent.pop(marker))
                        if len(latencies) >= total:
                            return

        async def post(n: int) -> None:
            marker = f"e2e-{n}"
            body = {"flight_number": "BNC1", "departure": "EGLL", "arrival": "LFPG",
                    "block_off_at": "2026-01-01T10:00:00Z",
                    "block_on_at": "2026-01-01T11:10:00Z", "flight_time_minutes": 60,
                    "remarks": marker}
            sent[marker] = time.monotonic()
            try:
                async with http.post(f"{base}/api/pireps", json=body,
                                     headers={"X-API-Key": api_key}) as response:
                    outcome = str(response.status)
                    await response.read()
            except (aiohttp.ClientError, OSError) as exc:
                outcome = type(exc).__name__
                sent.pop(marker, None)
            statuses[outcome] = statuses.get(outcome, 0) + 1

        listener = asyncio.create_task(listen())
        posts = []
        started = time.monotonic()
        for n in range(total):
            delay = started + n / config.e2e_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(n)))
        await asyncio.gather(*posts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener, 15)
        await ws.close()
    return {"rate_per_s": config.e2e_rate, "posted": total, "statuses": statuses,
            "received": len(latencies), "latency": common.latency_ms(latencies)}


async def orchestrate(config: Config) -> None:
    import nats
    from prometheus_client import CollectorRegistry

    from albatross.adapters.jetstream.topology import Topology, ensure_topology
    from albatross.adapters.memory_read_models import InMemoryReadModels
    from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
    from albatross.application.principal import Principal
    from albatross.infra._process import free_port
    from albatross.infra.nats_server import NatsServer
    from albatross.infra.postgres_server import PostgresServer
    from albatross.observability import configure_logging
    from albatross.ops_http import OpsEndpoints
    from albatross.services.gateway.container import build_gateway_deps

    configure_logging("bench", "warning", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="albatross-bench-notifier-"))
    servers: list[Any] = []
    children: list[asyncio.subprocess.Process] = []
    results: dict[str, Any] = {"config": {"sockets": config.sockets, "changes": config.changes,
                                          "gap_s": config.gap},
                               "machine": common.machine()}
    baselines: dict[str, Any] = {}
    completed = False
    try:
        nats_server = NatsServer(work / "nats", sync_always=False)
        await nats_server.start()
        servers.append(nats_server)
        dsn = ""
        if config.e2e:
            pg = PostgresServer(work / "pg")
            await pg.start()
            servers.append(pg)
            dsn = pg.dsn
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        topology = Topology()
        await ensure_topology(js, topology)
        env = {"ALBATROSS_NATS_URL": nats_server.url, "ALBATROSS_LOG_LEVEL": "warning",
               "ALBATROSS_HTTP_HOST": "127.0.0.1"}
        if config.e2e:
            from albatross.config import Settings
            from albatross.services.bootstrap.main import bootstrap

            env["ALBATROSS_DATABASE_URL"] = dsn
            cheap = Argon2PasswordHasher(TEST_ONLY_CHEAP)
            await bootstrap(Settings.from_env({**env, "ALBATROSS_ADMIN_PASSWORD": PASSWORD}),
                            hasher=cheap, out=sys.stderr)
            cheap.close()

        # A tenant, a pilot, a session token and an API key, through the real services.
        hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
        registry = CollectorRegistry()
        deps = await build_gateway_deps(nc, topology, InMemoryReadModels(), registry=registry,
                                        ops=OpsEndpoints(registry),
                                        session_ttl=timedelta(hours=2), hasher=hasher)
        operator = Principal("bench-operator", "PlatformAdmin", None)
        icao = "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])
        tenant = (await deps.commands.create_tenant(operator, name="Bench Air", icao=icao,
                                                    iata=None)).value
        email = f"pilot-{uuid.uuid4().hex[:8]}@bench.test"
        pilot = (await deps.commands.register_user(
            operator, email=email, display_name="Bench Pilot", password=PASSWORD,
            role="Pilot", tenant_id=tenant.id, must_change_password=False)).value
        token = (await deps.login.login(email, PASSWORD)).token
        api_key = (await deps.commands.create_api_key(operator, pilot.id, name="bench")).value.key
        hasher.close()

        notifier_port, baseline_port = free_port(), free_port()
        notifier = await child(sys.executable, "-m", "albatross.services.notifier.main",
                               env={**env, "ALBATROSS_NOTIFIER_PORT": str(notifier_port)})
        children.append(notifier)
        baseline = await child(sys.executable, str(HERE), "baseline", str(baseline_port),
                               nats_server.url)
        children.append(baseline)
        await wait_http(f"http://127.0.0.1:{notifier_port}/readyz")
        await wait_http(f"http://127.0.0.1:{baseline_port}/")

        baselines["broadcast"] = await fan_out(
            "baseline", baseline.pid, f"http://127.0.0.1:{baseline_port}/api/ws", token, js,
            tenant.id, pilot.id, config, check_sequences=False)
        results["notifier"] = await fan_out(
            "notifier", notifier.pid, f"http://127.0.0.1:{notifier_port}/api/ws", token, js,
            tenant.id, pilot.id, config, check_sequences=True)

        if config.e2e:
            gateway_port, projector_port = free_port(), free_port()
            for module, extra in (
                    ("albatross.services.projector.main",
                     {"ALBATROSS_PROJECTOR_PORT": str(projector_port)}),
                    ("albatross.services.gateway.main",
                     {"ALBATROSS_HTTP_PORT": str(gateway_port),
                      "ALBATROSS_NOTIFIER_PORT": str(notifier_port)})):
                log = work / f"{module.rsplit('.', 2)[1]}.log"
                with log.open("wb") as sink:  # kept for the post-mortem if the run fails
                    children.append(await child(sys.executable, "-m", module,
                                                env={**env, **extra}, stderr=sink.fileno()))
            base = f"http://127.0.0.1:{gateway_port}"
            await wait_http(f"{base}/readyz")
            await wait_http(f"http://127.0.0.1:{projector_port}/readyz")
            common.progress(f"end to end: POST /api/pireps at {config.e2e_rate}/s for "
                            f"{config.e2e_seconds:g} s")
            results["end_to_end"] = await end_to_end(base, api_key, config)
            common.progress(f"end to end: p50 {results['end_to_end']['latency']['p50_ms']} ms, "
                            f"p99 {results['end_to_end']['latency']['p99_ms']} ms")
        await nc.close()
        completed = True
    finally:
        if not completed:
            for log in sorted(work.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                common.progress(f"{log.name} (last lines):\n" + "\n".join(tail))
        for process in reversed(children):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        for server in reversed(servers):
            await server.stop()
        shutil.rmtree(work, ignore_errors=True)

    ours, theirs = results["notifier"], baselines["broadcast"]
    targets = [
        common.target("fanout_p99_vs_baseline", common.ratio(
            ours["latency"]["p99_ms"], theirs["latency"]["p99_ms"]), "<=", 2.0),
        common.target("rss_per_idle_socket_kib", ours["rss_per_idle_socket_kib"], "<=", 40.0),
        common.target("changes_delivered_fraction",
                      common.ratio(ours["received"], ours["expected"]), ">=", 1.0),
    ]
    common.emit(BENCH, results, baselines, targets)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in {"clients", "baseline"}:
        if sys.argv[1] == "clients":
            common.run(lambda: run_clients(json.loads(sys.argv[2])))
        else:
            common.run(lambda: serve_baseline(int(sys.argv[2]), sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="500 sockets, 20 changes, no end-to-end part")
    parser.add_argument("--sockets", type=int)
    parser.add_argument("--changes", type=int)
    parser.add_argument("--gap", type=float,
                        help="seconds between two published changes (default: 1, quick: "
                             "0.25); shorter than one fan-out and the clients fall behind")
    parser.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=None,
                        help="run the end-to-end part (default: on unless --quick)")
    args = parser.parse_args()
    config = Config(sockets=args.sockets or (500 if args.quick else 5000),
                    changes=args.changes or (20 if args.quick else 50),
                    gap=args.gap or (0.25 if args.quick else 1.0),
                    e2e=args.e2e if args.e2e is not None else not args.quick,
                    e2e_seconds=3.0 if args.quick else 10.0)
    common.run(lambda: orchestrate(config))


if __name__ == "__main__":
    main()
