"""Growth (issue 9): command and query latency, and the services' memory, with a small and a
large event store, 100 tenants, on ``albatross up``.

Usage: ``python bench/growth.py [--quick] [--events N] [--small N] [--tenants N] [--rate R]
[--seconds S]``

Prints one JSON line on stdout (see ``bench/_common.py``); progress goes to stderr.

The mesh is the real ``albatross up`` over embedded servers (``bench/_mesh.py``), with one
difference from production: nats-server runs with its default sync (not ``sync_interval:
always``), because filling the store through fsync-per-message would take most of the time
budget; both phases run on the same server, so the ratios compare like with like.

Setup: ``--tenants`` (100) tenants through the API; in the first five, one Pilot with an API
key through the API (the measured clients); 5 more Pilots per tenant appended directly.

Growing the store (never through HTTP): events are appended with the event store adapter's own
message layout (:meth:`JetStreamEventStore._messages`: the same subjects, payload encoding and
headers the gateway's appends carry, plus the same expectation headers), but pipelined: core
publishes with a reply subject each, a bounded window of unacknowledged ones, every ack
checked. Users (UserRegistered + PasswordHashSet + email claim, an atomic batch) go through
``JetStreamEventStore.append`` itself. The mix: 65% PirepSubmitted (new PIREP, expected
version 0), 35% reviews of an earlier, acknowledged PIREP (80% PirepAccepted, expected
version = that PIREP's sequence), spread uniformly over all tenants and their pilots.
"Events in the store" counts event messages (public and secret), not uniqueness claims.

Phases: fill to ``--small`` (10,000) events, wait until the projector's checkpoint covers the
last one (its catch-up rate is recorded), then measure; fill to ``--events`` and measure again.
Before each measurement the read model is brought to the state of a store that grew slowly:
``VACUUM (ANALYZE)`` of its tables and a ``CHECKPOINT`` (a fill of minutes otherwise leaves
autovacuum and the checkpointer busy during the measurement, which a store grown over months
would not have); the plans of the two queries (``EXPLAIN ANALYZE``: which index, how long) are
recorded beside the figures.
Each measurement: in a separate load process, open-loop at ``--rate`` (100) requests/s for
``--seconds`` (6) s each, one after the other: ``POST /api/pireps`` (API keys of the measured
pilots in turn), ``GET /api/pireps?limit=50`` (a tenant's newest 50; every answer must hold
50), ``GET /api/pireps/{id}`` (random PIREPs of the measured tenants, from the whole history).
Latency is from the moment a request was due. A load during which the hypervisor stole more
than 1% of the machine's CPU time (``steal`` in ``/proc/stat``: every process here stood
still meanwhile) is run again, at most twice more, and the attempt with the least steal is
the figure, whatever its latency; every attempt is recorded under ``attempts`` (its steal,
p50, p99, errors), and every attempt's errors count. On this VM a p99 at 100 requests/s
followed the steal during its load more than anything in the mesh (a 10,000-event GET load
with one second of 80% steal: p99 480 ms). After each measurement: VmRSS and VmHWM (peak)
of the gateway, the projector and the notifier, from ``/proc/<pid>/status``. A WebSocket of a
measured pilot stays open during the fills (a separate process), so the notifier handles
every change as in production (filters all, sends its tenant's).

Targets: large/small ratio <= 1.3 of p50 and p99 for each of the three requests (the issue's
1M/10k); resident memory growth from the small to the large store <= 20 MiB for the gateway
and the notifier (flat: at 1M events, 20 MiB is 21 bytes per event, at 100k 210 bytes, either
way below the cost of one retained Python object per event, so a per-event leak cannot hide in
it; a 10% rule would depend on the process's base size); the projector's peak (VmHWM) growth
<= 20 MiB as well (bounded by its batch of 500 events, not by the store's size); no request
error or short page, and every appended PIREP in the read model.

Sizes: 1,000,000 events is the issue's size, but the live projector catches up at 600-2,000
events/s on these 2 shared cores (measured: 660/s with the machine's load average near 10), so
1M takes 8-28 minutes alone. The default ``--events`` is therefore **100,000** (10x the small
store; about 2-4 minutes in all here, depending on the machine's load); the JSON's
``results.size`` says loudly whether the issue's full size was run, and every target's name
carries the sizes. ``--events 1000000`` runs the full size. 5 filler Pilots per tenant (500)
keep the setup short. ``--quick``: 10 tenants, 2,000 and 6,000 events, 1-second loads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

if __package__:
    from bench import _common as common
    from bench import _mesh as mesh_mod
else:  # run as a script: bench/ is on sys.path
    import _common as common  # type: ignore[no-redef]
    import _mesh as mesh_mod  # type: ignore[no-redef]

BENCH = "growth"
HERE = Path(__file__).resolve()
ISSUE_EVENTS = 1_000_000
MEASURED_TENANTS = 5
FILLER_PILOTS_PER_TENANT = 5
WINDOW = 4000
RATIO_TARGET = 1.3
FLAT_MIB = 20.0


@dataclass(frozen=True)
class Config:
    quick: bool
    tenants: int
    small: int
    events: int
    rate: float
    seconds: float


# Load process -------------------------------------------------------------------------------

async def load(spec: dict[str, Any]) -> dict[str, Any]:
    """Open-loop requests of one kind at ``rate`` for ``seconds``; latency from the due time."""
    import aiohttp

    rate, seconds, kind = float(spec["rate"]), float(spec["seconds"]), spec["kind"]
    keys: list[str] = spec["keys"]
    ids: list[str] = spec.get("ids", [])
    rng = random.Random(7)
    total = max(1, int(rate * seconds))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    short_pages = [0]
    first_problem: dict[str, str] = {}
    body = msgspec.json.encode({
        "flight_number": "GRW1", "departure": "EGLL", "arrival": "LFPG",
        "block_off_at": "2026-01-01T10:00:00Z", "block_on_at": "2026-01-01T11:10:00Z",
        "flight_time_minutes": 60})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        async def one(n: int, at: float) -> None:
            key = keys[n % len(keys)]
            headers = {"X-API-Key": key, "Content-Type": "application/json"}
            try:
                if kind == "post":
                    request = http.post(f"{spec['base']}/api/pireps", data=body, headers=headers)
                    ok = 201
                elif kind == "list":
                    request = http.get(f"{spec['base']}/api/pireps?limit=50", headers=headers)
                    ok = 200
                else:
                    # ids[i] belongs to the tenant of keys[i % len(keys)]: pick a matching pair.
                    index = rng.randrange(len(ids) // len(keys)) * len(keys) + n % len(keys)
                    request = http.get(f"{spec['base']}/api/pireps/{ids[index]}",
                                       headers=headers)
                    ok = 200
                async with request as response:
                    data = await response.read()
                    outcome = str(response.status)
                    if response.status == ok:
                        latencies.append(time.monotonic() - at)
                        if kind == "list" and len(msgspec.json.decode(data)["items"]) != 50:
                            short_pages[0] += 1
                            first_problem.setdefault("short", data[:200].decode(errors="replace"))
                    else:
                        first_problem.setdefault(outcome, data[:200].decode(errors="replace"))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcome = type(exc).__name__
            statuses[outcome] = statuses.get(outcome, 0) + 1

        tasks = []
        started = time.monotonic()
        for n in range(total):
            at = started + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, at)))
        await asyncio.gather(*tasks)
    errors = sum(c for s, c in statuses.items() if s not in {"200", "201"})
    summary = common.latency_ms(latencies)
    return {"kind": kind, "rate_per_s": rate, "seconds": seconds, "statuses": statuses,
            "errors": errors, "short_pages": short_pages[0], **summary,
            **({"first_problems": first_problem} if first_problem else {})}


async def sink(spec: dict[str, Any]) -> None:
    """A pilot's WebSocket held open during the fills; counts changes until SIGTERM."""
    import aiohttp

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    count = [0]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(spec["ws_url"], max_msg_size=0)
        await ws.send_str(json.dumps({"type": "auth", "token": spec["api_key"]}))
        ready = json.loads((await ws.receive(timeout=15)).data)
        await ws.send_str(json.dumps({"type": "resume", "after": ready.get("sequence", 0)}))
        print("READY", flush=True)

        async def listen() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and '"change"' in msg.data:
                    count[0] += 1

        listener = asyncio.create_task(listen())
        await stop.wait()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    print(json.dumps({"changes_received": count[0]}), flush=True)


# Filling the store --------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Store:
    """Pipelined appends in the adapter's message layout; tracks what it wrote."""

    def __init__(self, nc: Any, stream_name: str) -> None:
        from albatross.adapters.codec import EventCodec
        from albatross.adapters.jetstream.acks import decode_ack
        from albatross.adapters.jetstream.event_store import JetStreamEventStore
        from albatross.domain.aggregates import default_registry

        self._nc = nc
        self._decode_ack = decode_ack
        self._stream_name = stream_name
        self.store = JetStreamEventStore(nc, EventCodec(default_registry()), stream_name)
        self._inbox = nc.new_inbox()
        self._waiting: dict[int, Any] = {}
        self._progress = asyncio.Event()
        self.sent = 0
        self.acked = 0
        self.errors: list[str] = []
        self.last_seq = 0
        self.rng = random.Random(11)
        self.pilots: dict[str, list[str]] = {}
        self.submitted: deque[tuple[str, str, int]] = deque()
        self.ids_by_tenant: dict[str, list[str]] = {}
        self._measured: set[str] = set()
        self.appended_events = 0
        self.pireps_submitted = 0

    async def start(self, measured_tenants: list[str]) -> None:
        self._measured = set(measured_tenants)
        self.ids_by_tenant = {t: [] for t in measured_tenants}
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def _on_ack(self, msg: Any) -> None:
        n = int(msg.subject.rsplit(".", 1)[1])
        ack = self._decode_ack(msg.data)
        self.acked += 1
        after = self._waiting.pop(n, None)
        if ack.error is not None:
            self.errors.append(f"{ack.error.err_code}: {ack.error.description}")
        else:
            self.last_seq = max(self.last_seq, ack.seq)
            if after is not None:
                after(ack.seq)
        self._progress.set()

    async def add_users(self, tenants: list[str], per_tenant: int) -> None:
        """Pilots through ``JetStreamEventStore.append`` (atomic batch with their claim)."""
        from albatross.domain.rules import normalise_email
        from albatross.domain.users import PasswordHashSet, UserRegistered
        from albatross.ports import AppendRequest, Claim, StreamId

        gate = asyncio.Semaphore(32)

        async def one(tenant: str, i: int) -> None:
            user_id = str(uuid.uuid4())
            email = f"pilot-{i}-{user_id[:8]}@{tenant[:8]}.bench"
            request = AppendRequest(
                stream=StreamId("user", user_id, tenant), expected_version=0,
                events=[UserRegistered(user_id=user_id, email=email, display_name=f"Pilot {i}",
                                       role="Pilot", tenant_id=tenant,
                                       must_change_password=False),
                        PasswordHashSet(user_id=user_id, password_hash="$argon2id$" + "x" * 80)],
                occurred_at=datetime.now(UTC), actor_id="bench-admin",
                claims=[Claim("email", normalise_email(email))])
            async with gate:
                result = await self.store.append(request)
            self.last_seq = max(self.last_seq, result.sequence)
            self.pilots.setdefault(tenant, []).append(user_id)
            self.appended_events += 2

        await asyncio.gather(*(one(t, i) for t in tenants for i in range(per_tenant)))

    async def _send(self, stream: Any, event: Any, expected: int, after: Any = None) -> None:
        from albatross.adapters.jetstream.event_store import _expectation
        from albatross.ports import AppendRequest

        if self.sent - self.acked >= WINDOW:
            while self.sent - self.acked > WINDOW // 2:
                self._progress.clear()
                await self._progress.wait()
        request = AppendRequest(stream=stream, events=[event], expected_version=expected,
                                occurred_at=T0 + timedelta(seconds=self.sent),
                                actor_id=getattr(event, "pilot_id", None) or "bench-admin")
        append_id = uuid.uuid4().hex
        [message] = self.store._messages(request, append_id, expected)
        headers = {**message.headers, **_expectation(stream, expected),
                   "Nats-Expected-Stream": self._stream_name}
        n = self.sent
        if after is not None:
            self._waiting[n] = after
        await self._nc.publish(message.subject, message.data, reply=f"{self._inbox}.{n}",
                               headers=headers)
        self.sent += 1
        self.appended_events += 1

    async def add_pireps(self, count: int) -> None:
        """``count`` PIREP events: submissions and reviews of acknowledged submissions."""
        from albatross.domain.pireps import (
            FlightDetails,
            PirepAccepted,
            PirepRejected,
            PirepSubmitted,
        )
        from albatross.ports import StreamId

        tenants = list(self.pilots)
        rng = self.rng
        for _ in range(count):
            if self.submitted and rng.random() < 0.35:
                pirep_id, tenant, seq = self.submitted.popleft()
                kind = PirepAccepted if rng.random() < 0.8 else PirepRejected
                await self._send(StreamId("pirep", pirep_id, tenant),
                                 kind(pirep_id=pirep_id, reviewed_by="bench-admin",
                                      comment=None), seq)
                continue
            tenant = tenants[rng.randrange(len(tenants))]
            pirep_id = str(uuid.uuid4())
            minutes = rng.randrange(40, 600)
            off = T0 + timedelta(minutes=self.sent)
            details = FlightDetails(
                flight_number=f"BAW{rng.randrange(1, 9999)}", departure="EGLL",
                arrival="KJFK", block_off_at=off,
                block_on_at=off + timedelta(minutes=minutes + 15), flight_time_minutes=minutes,
                fuel_used_kg=float(minutes * 40), distance_nm=float(minutes * 7),
                aircraft_type="B77W", aircraft_registration="G-VIIA", landing_rate_fpm=-180.0,
                route="DCT", remarks=None, source="acars")
            event = PirepSubmitted(pirep_id=pirep_id, tenant_id=tenant,
                                   pilot_id=rng.choice(self.pilots[tenant]), details=details)

            def acked(seq: int, p: str = pirep_id, t: str = tenant) -> None:
                self.submitted.append((p, t, seq))
                if t in self._measured:
                    self.ids_by_tenant[t].append(p)

            await self._send(StreamId("pirep", pirep_id, tenant), event, 0, acked)
            self.pireps_submitted += 1

    async def drain(self, timeout: float = 120.0) -> None:
        await self._nc.flush()
        async with asyncio.timeout(timeout):
            while self.acked < self.sent:
                self._progress.clear()
                await self._progress.wait()
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} appends refused: {self.errors[0]}")


async def events_in_store(js: Any, stream: str) -> tuple[int, int]:
    """(event messages, last sequence): messages minus uniqueness claims."""
    info = await js.stream_info(stream, subjects_filter="albatross.claims.>")
    claims = sum((info.state.subjects or {}).values())
    return int(info.state.messages) - claims, int(info.state.last_seq)


class Checkpoint:
    """Polls the projector's checkpoint; records when it reached each target."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.value = 0
        self._connection: Any = None

    @property
    def connection(self) -> Any:
        assert self._connection is not None, "read() first"
        return self._connection

    async def read(self) -> int:
        import asyncpg

        if self._connection is None:
            self._connection = await asyncpg.connect(self._dsn)
        self.value = int(await self._connection.fetchval(
            "SELECT last_sequence FROM read_model.projection_checkpoint"))
        return self.value

    async def wait_for(self, sequence: int, timeout: float) -> float:
        """Seconds until the checkpoint covers ``sequence`` (from now)."""
        began = time.perf_counter()
        deadline = began + timeout
        last_report = began
        while await self.read() < sequence:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"projector at {self.value}, not at {sequence} after "
                                   f"{timeout:.0f} s")
            if now - last_report > 15:
                common.progress(f"  projector checkpoint {self.value:,} of {sequence:,}")
                last_report = now
            await asyncio.sleep(0.1)
        return time.perf_counter() - began

    async def pireps(self) -> int:
        """PIREP rows in the read model (a check that the fill was projected, not poisoned)."""
        await self.read()
        return int(await self._connection.fetchval("SELECT count(*) FROM read_model.pireps"))

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def grow(store: Store, js: Any, stream: str, checkpoint: Checkpoint,
               target_events: int) -> dict[str, Any]:
    """Append PIREP events until the store holds ``target_events``; wait for the projector."""
    have, _ = await events_in_store(js, stream)
    add = max(0, target_events - have)
    start_checkpoint = await checkpoint.read()
    began = time.perf_counter()
    common.progress(f"appending {add:,} events ({have:,} -> {target_events:,})")
    chunk = 50_000
    done = 0
    while done < add:
        step = min(chunk, add - done)
        await store.add_pireps(step)
        done += step
        if add > chunk:
            common.progress(f"  {done:,} of {add:,} appended; projector at "
                            f"{await checkpoint.read():,}")
    await store.drain()
    fill_seconds = time.perf_counter() - began
    at_fill_end = await checkpoint.read()
    common.progress(f"appended in {fill_seconds:.1f} s ({add / fill_seconds:,.0f}/s); "
                    f"projector at {at_fill_end:,} of {store.last_seq:,}")
    backlog_seconds = await checkpoint.wait_for(store.last_seq, timeout=900)
    total_seconds = time.perf_counter() - began
    events, last_seq = await events_in_store(js, stream)
    projected = last_seq - start_checkpoint
    backlog = store.last_seq - at_fill_end
    result = {"appended": add, "fill_seconds": round(fill_seconds, 1),
              "fill_per_s": round(add / fill_seconds) if fill_seconds else None,
              "events_in_store": events, "stream_last_seq": last_seq,
              "projector_caught_up_after_s": round(total_seconds, 1),
              "projector_catch_up_per_s": round(projected / total_seconds),
              "backlog_at_fill_end": backlog,
              "backlog_drain_per_s": (round(backlog / backlog_seconds)
                                      if backlog_seconds > 0.5 else None),
              "pireps_submitted_directly": store.pireps_submitted,
              "pireps_in_read_model": await checkpoint.pireps()}
    common.progress(f"projector caught up {total_seconds:.1f} s after the fill began "
                    f"({result['projector_catch_up_per_s']:,}/s overall, backlog of "
                    f"{backlog:,} drained at {result['backlog_drain_per_s']}/s)")
    return result


# Orchestration ------------------------------------------------------------------------------

async def settle(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a store that grew over months has had: vacuumed, analysed, checkpointed.

    A bulk fill of minutes leaves PostgreSQL with stale statistics, dead tuples and dirty
    buffers that autovacuum and the checkpointer would work off in the background, during the
    measurement; both phases get the same treatment, so the ratio compares steady states.
    """
    began = time.perf_counter()
    connection = checkpoint.connection
    await connection.execute("VACUUM (ANALYZE) read_model.pireps, read_model.pirep_history, "
                             "read_model.users, read_model.change_outbox")
    await connection.execute("CHECKPOINT")
    await asyncio.sleep(2.0)  # the last commits and their changes
    return {"seconds": round(time.perf_counter() - began, 1)}


async def plans(checkpoint: Checkpoint, tenant_id: str, pirep_id: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the two queries as the read models issue them: which index, how long."""
    connection = checkpoint.connection
    out: dict[str, Any] = {}
    for name, sql, args in (
            ("list", "SELECT * FROM read_model.pireps WHERE tenant_id = $1 "
                     "ORDER BY submitted_at DESC, id DESC LIMIT 51", (tenant_id,)),
            ("get", "SELECT * FROM read_model.pireps WHERE id = $1 AND tenant_id = $2",
             (pirep_id, tenant_id))):
        raw = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        nodes: list[str] = []

        def walk(node: dict[str, Any], into: list[str] = nodes) -> None:
            into.append(" ".join(str(node[k]) for k in ("Node Type", "Index Name")
                                 if k in node))
            for child in node.get("Plans", []):
                walk(child)

        walk(plan["Plan"])
        out[name] = {"nodes": nodes, "execution_ms": plan.get("Execution Time"),
                     "shared_hit_blocks": plan["Plan"].get("Shared Hit Blocks"),
                     "shared_read_blocks": plan["Plan"].get("Shared Read Blocks")}
    return out


async def measure(label: str, mesh: Any, keys: list[str], ids: list[str],
                  cfg: Config, checkpoint: Checkpoint, tenant_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"settle": await settle(checkpoint),
                           "plans": await plans(checkpoint, tenant_id, ids[0])}
    common.progress(f"{label} plans: " + "; ".join(
        f"{k} {v['nodes']} {v['execution_ms']} ms" for k, v in out["plans"].items()))
    for kind in ("post", "list", "get"):
        spec = {"kind": kind, "base": mesh.base, "keys": keys, "ids": ids, "rate": cfg.rate,
                "seconds": cfg.seconds}
        out[kind] = await common.least_disturbed(
            functools.partial(measured_load, label, mesh, spec, cfg), f"{label} {kind}",
            keep=("p50_ms", "p99_ms", "errors", "short_pages", "created"))
    out["memory_kib"] = mesh.memory_kib()
    common.progress(f"{label} memory (KiB): {out['memory_kib']}")
    out["loadavg"] = mesh_mod.loadavg()
    return out


async def measured_load(label: str, mesh: Any, spec: dict[str, Any],
                        cfg: Config) -> dict[str, Any]:
    """One load in its own process, with what the machine did meanwhile: each process's share
    of a core, and the share of the CPU time the hypervisor stole."""
    before = mesh.cpu_seconds()
    figure = await common.stolen_during(mesh_mod.run_child(HERE, "load", spec,
                                                           timeout=cfg.seconds * 10 + 60))
    after = mesh.cpu_seconds()
    figure["cpu_cores"] = {role: round((after[role] - before[role]) / cfg.seconds, 3)
                           for role in after}
    figure["created"] = figure["statuses"].get("201", 0)  # PIREPs the projector owes
    common.progress(f"{label} {spec['kind']}: p50 {figure['p50_ms']} ms, p99 "
                    f"{figure['p99_ms']} ms, {figure['errors']} errors, {figure['short_pages']} "
                    f"short pages; steal {figure['steal_fraction']:.1%}; cores used "
                    f"{figure['cpu_cores']}")
    return figure


async def orchestrate(cfg: Config) -> None:
    import aiohttp
    import nats

    from albatross.adapters.jetstream.topology import Topology
    from albatross.observability import configure_logging

    configure_logging("bench", "warning", stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="albatross-bench-growth-"))
    mesh = mesh_mod.Mesh(root, sync_always=False)
    full = cfg.events >= ISSUE_EVENTS
    size = {"small_events": cfg.small, "large_events": cfg.events,
            "issue_large_events": ISSUE_EVENTS, "full_issue_size": full,
            "note": ("the issue's full size (1,000,000 events)" if full else
                     f"REDUCED SIZE: {cfg.events:,} events, not the issue's 1,000,000 "
                     "(the live projector's catch-up does not fit the time budget on 2 "
                     "cores); run with --events 1000000 for the full size")}
    if not full:
        common.progress(f"NOTE: {size['note']}")
    results: dict[str, Any] = {"size": size, "config": {
        "quick": cfg.quick, "tenants": cfg.tenants, "rate_per_s": cfg.rate,
        "seconds_per_load": cfg.seconds, "measured_tenants": MEASURED_TENANTS,
        "filler_pilots_per_tenant": FILLER_PILOTS_PER_TENANT, "nats_sync_always": False,
        "uvloop": common.uvloop_version(), **common.machine(),
        "loadavg_at_start": mesh_mod.loadavg()}}
    topology = Topology()
    sink_process: asyncio.subprocess.Process | None = None
    nc: Any = None
    checkpoint: Checkpoint | None = None
    began = time.perf_counter()
    try:
        await mesh.start()
        checkpoint = Checkpoint(mesh.pg.dsn)
        tenants: list[str] = []
        keys: list[str] = []
        async with aiohttp.ClientSession() as http:
            token = await mesh.admin_token(http)
            common.progress(f"creating {cfg.tenants} tenants and {MEASURED_TENANTS} pilots "
                            "through the API")
            for n in range(cfg.tenants):
                icao = "G" + chr(65 + n // 26) + chr(65 + n % 26)
                tenant = await mesh_mod.api(http, "POST", f"{mesh.base}/api/tenants",
                                            token=token, expect=201,
                                            json={"name": f"Growth {n}", "icao": icao})
                tenants.append(tenant["id"])
            for n in range(MEASURED_TENANTS):
                _, key = await mesh_mod.pilot_with_key(http, mesh, token, tenants[n],
                                                       f"growth-{n}@albatross.test")
                keys.append(key)
        nc = await nats.connect(mesh.nats.url)
        js = nc.jetstream(timeout=30)
        store = Store(nc, topology.events_stream)
        await store.start(tenants[:MEASURED_TENANTS])
        common.progress(f"appending {cfg.tenants * FILLER_PILOTS_PER_TENANT} pilots")
        await store.add_users(tenants, FILLER_PILOTS_PER_TENANT)

        sink_process = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "sink", json.dumps({
                "ws_url": f"{mesh.base.replace('http', 'ws', 1)}/api/ws",
                "api_key": keys[0]}), stdout=asyncio.subprocess.PIPE)
        assert sink_process.stdout is not None
        if (await asyncio.wait_for(sink_process.stdout.readline(), 30)).strip() != b"READY":
            raise RuntimeError("the WebSocket sink did not start")

        results["small_fill"] = await grow(store, js, topology.events_stream, checkpoint,
                                           cfg.small)
        ids_small = interleave(store.ids_by_tenant, tenants[:MEASURED_TENANTS])
        results["small"] = await measure(f"{cfg.small:,} events", mesh, keys, ids_small, cfg,
                                         checkpoint, tenants[0])
        results["large_fill"] = await grow(store, js, topology.events_stream, checkpoint,
                                           cfg.events)
        ids_large = interleave(store.ids_by_tenant, tenants[:MEASURED_TENANTS])
        results["large"] = await measure(f"{cfg.events:,} events", mesh, keys, ids_large, cfg,
                                         checkpoint, tenants[0])
        results["restarts_seen"] = mesh.restarts_seen()
        sink_process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(sink_process.communicate(), 30)
        results["websocket_sink"] = json.loads(out.decode().strip().splitlines()[-1])
    except Exception:
        common.progress(f"albatross up (last lines):\n{mesh.log_tail()}")
        raise
    finally:
        if sink_process is not None and sink_process.returncode is None:
            sink_process.kill()
            await sink_process.wait()
        if checkpoint is not None:
            await checkpoint.close()
        if nc is not None:
            await nc.close()
        await mesh.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["runtime_s"] = round(time.perf_counter() - began, 1)
    results["loadavg_at_end"] = mesh_mod.loadavg()
    # The small store is what the large one is compared with: its figures, restated.
    baselines = {"small_store": {
        "events": results["small_fill"]["events_in_store"],
        **{kind: {q: results["small"][kind][q] for q in ("p50_ms", "p99_ms")}
           for kind in ("post", "list", "get")}}}
    common.emit(BENCH, results, baselines, targets_of(results, cfg))


def interleave(by_tenant: dict[str, list[str]], tenants: list[str]) -> list[str]:
    """Ids laid out so that ``ids[i]`` belongs to ``tenants[i % len(tenants)]``, sampled."""
    rng = random.Random(3)
    per = min(len(by_tenant[t]) for t in tenants)
    take = min(per, 2000)
    picks = {t: rng.sample(by_tenant[t], take) for t in tenants}
    return [picks[t][i] for i in range(take) for t in tenants]


def targets_of(results: dict[str, Any], cfg: Config) -> list[dict[str, Any]]:
    label = f"{cfg.events // 1000}k" if cfg.events < ISSUE_EVENTS else f"{cfg.events // 10**6}M"
    small = f"{cfg.small // 1000}k" if cfg.small >= 1000 else str(cfg.small)
    out = []
    for kind, name in (("post", "command_post_pirep"), ("list", "query_list_50"),
                       ("get", "query_get_by_id")):
        for q in ("p50_ms", "p99_ms"):
            out.append(common.target(
                f"{name}_{q[:3]}_ratio_{label}_vs_{small}",
                common.ratio(results["large"][kind][q], results["small"][kind][q]), "<=",
                RATIO_TARGET))
    for service in ("gateway", "notifier"):
        growth = (results["large"]["memory_kib"][service]["rss_kib"]
                  - results["small"]["memory_kib"][service]["rss_kib"]) / 1024
        out.append(common.target(f"{service}_rss_growth_mib_{label}_vs_{small}", growth, "<=",
                                 FLAT_MIB))
    peak = (results["large"]["memory_kib"]["projector"]["hwm_kib"]
            - results["small"]["memory_kib"]["projector"]["hwm_kib"]) / 1024
    out.append(common.target(f"projector_peak_rss_growth_mib_{label}_vs_{small}", peak, "<=",
                             FLAT_MIB))
    # Every attempt's errors count, the repeated ones' too.
    errors = sum(attempt["errors"] + attempt["short_pages"]
                 for phase in ("small", "large") for kind in ("post", "list", "get")
                 for attempt in results[phase][kind]["attempts"])
    out.append(common.target("request_errors_and_short_pages", float(errors), "<=", 0.0))
    # Every PIREP appended (directly, or posted during the first measurement) is in the read
    # model once the projector caught up: the fill was projected, not poisoned or skipped.
    fill = results["large_fill"]
    owed = fill["pireps_submitted_directly"] + sum(
        attempt["created"] for attempt in results["small"]["post"]["attempts"])
    out.append(common.target("pireps_projected_fraction",
                             common.ratio(fill["pireps_in_read_model"], owed), ">=", 1.0))
    for t in out:
        common.progress(f"target {t['name']}: {t['value']} {t['op']} {t['target']} -> "
                        f"{'met' if t['met'] else 'NOT met'}")
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] in {"load", "sink"}:
        spec = mesh_mod.child_spec(sys.argv[2])
        if sys.argv[1] == "load":
            print(json.dumps(common.run(lambda: load(spec))), flush=True)
        else:
            common.run(lambda: sink(spec))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10 tenants, 2,000 and 6,000 events, 1-second loads (CI smoke)")
    parser.add_argument("--events", type=int, help="events in the large store (100,000)")
    parser.add_argument("--small", type=int, help="events in the small store (10,000)")
    parser.add_argument("--tenants", type=int, help="tenants (100)")
    parser.add_argument("--rate", type=float, help="requests/s of each measured load (100)")
    parser.add_argument("--seconds", type=float, help="seconds of each measured load (6)")
    args = parser.parse_args()
    quick = args.quick
    cfg = Config(quick=quick, tenants=args.tenants or (10 if quick else 100),
                 small=args.small or (2_000 if quick else 10_000),
                 events=args.events or (6_000 if quick else 100_000),
                 # 600 samples per load: a p99 of 300 is the third-slowest request, mostly noise.
                 rate=args.rate or (20.0 if quick else 100.0),
                 seconds=args.seconds or (1.0 if quick else 6.0))
    if cfg.events <= cfg.small:
        parser.error("--events must be larger than --small")
    common.run(lambda: orchestrate(cfg))


if __name__ == "__main__":
    main()
