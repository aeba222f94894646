"""Projector benchmark: rebuild throughput against raw drain/COPY rates, and steady-state lag.

Usage: ``python bench/projector.py [--quick] [--events N] [--keep]``

Prints one JSON line on stdout (see ``bench/_common.py``); progress goes to stderr.

1. Seeds a stream with N public events (a realistic mix: registrations with their credential
   events, PIREPs submitted and reviewed, API keys).
2. Baselines: the rate of draining those events with a plain pull consumer (batches of 1,000,
   one ack per batch), and the rate of COPYing N rows into a PostgreSQL table with asyncpg.
3. Rebuild: :func:`albatross.services.projector.rebuild.rebuild` of the N events into a fresh
   schema (no swap). Target: at least 40% of the slower baseline.
4. Lag (run first, on its own PostgreSQL): a real projector process on an empty stream and
   database, events appended at a steady
   1,000/s; for each event, the time from its append's acknowledgement to the NOTIFY of a
   checkpoint covering it (what a read-your-writes caller waits). Target: p99 <= 100 ms.

Both servers are embedded and private to the run (nats-server with default sync, so seeding is
quick; PostgreSQL with fsync on every commit, as in production).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from albatross.adapters.codec import EventCodec, event_subject
from albatross.adapters.jetstream.event_store import H_TYPE
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.adapters.postgres.migrations import apply_migrations
from albatross.domain.aggregates import default_registry
from albatross.domain.events import Event
from albatross.domain.pireps import FlightDetails, PirepAccepted, PirepRejected, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyCreated,
    ApiKeyHashIssued,
    PasswordHashSet,
    UserRegistered,
)
from albatross.infra._process import free_port
from albatross.infra.nats_server import NatsServer
from albatross.infra.postgres_server import PostgresServer
from albatross.observability import configure_logging
from albatross.ports import StreamId
from albatross.services.projector.rebuild import rebuild

if __package__:
    from bench import _common as common
else:  # run as a script: bench/ is on sys.path
    import _common as common  # type: ignore[no-redef]

BENCH = "projector"
TOPOLOGY = Topology()
T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Config:
    quick: bool
    events: int
    lag_seconds: float
    rate: int = 1000


# Workload ----------------------------------------------------------------------------------

def details(rng: random.Random) -> FlightDetails:
    off = T0 - timedelta(hours=rng.randrange(3, 48))
    minutes = rng.randrange(40, 600)
    return FlightDetails(flight_number=f"BAW{rng.randrange(1, 9999)}", departure="EGLL",
                         arrival="KJFK", block_off_at=off,
                         block_on_at=off + timedelta(minutes=minutes + 15),
                         flight_time_minutes=minutes, fuel_used_kg=float(minutes * 40),
                         distance_nm=float(minutes * 7), aircraft_type="B77W", source="acars")


def workload(count: int, seed: int = 1) -> list[tuple[StreamId, Event, datetime]]:
    """``count`` public events (plus the credential events that go with them), in order."""
    rng = random.Random(seed)
    out: list[tuple[StreamId, Event, datetime]] = []
    clock = T0
    public = 0

    def add(stream: StreamId, *events: Event) -> None:
        nonlocal clock, public
        clock += timedelta(milliseconds=rng.randrange(1, 50))
        for event in events:
            out.append((stream, event, clock))
            public += 0 if event.secret else 1

    tenants = [f"t{n:03d}" for n in range(max(2, min(50, count // 1000)))]
    for tid in tenants:
        add(StreamId("tenant", tid), TenantCreated(tenant_id=tid, name=f"Airline {tid}",
                                                   icao="AAA", iata=None))
    pilots: dict[str, list[str]] = {tid: [] for tid in tenants}
    pending: list[tuple[str, str]] = []
    n = 0
    while public < count:
        n += 1
        tid = rng.choice(tenants)
        roll = rng.random()
        if roll < 0.1 or not pilots[tid]:
            uid = f"u{n:07d}"
            add(StreamId("user", uid, tid),
                UserRegistered(user_id=uid, email=f"{uid}@bench.io", display_name="Pilot",
                               role="Pilot", tenant_id=tid, must_change_password=False),
                PasswordHashSet(user_id=uid, password_hash="h" * 90))
            pilots[tid].append(uid)
        elif roll < 0.55:
            pid = f"r{n:07d}"
            add(StreamId("pirep", pid, tid),
                PirepSubmitted(pirep_id=pid, tenant_id=tid, pilot_id=rng.choice(pilots[tid]),
                               details=details(rng)))
            pending.append((pid, tid))
        elif roll < 0.95 and pending:
            pid, ptid = pending.pop(rng.randrange(len(pending)))
            kind = PirepAccepted if rng.random() < 0.8 else PirepRejected
            add(StreamId("pirep", pid, ptid), kind(pirep_id=pid, reviewed_by="admin",
                                                  comment=None))
        else:
            uid = rng.choice(pilots[tid])
            kid = f"k{n:07d}"
            add(StreamId("user", uid, tid),
                ApiKeyCreated(user_id=uid, key_id=kid, name="acars", prefix="alb_abcd"),
                ApiKeyHashIssued(user_id=uid, key_id=kid, key_hash="k" * 64))
    return out


async def seed(nc: NATS, events: list[tuple[StreamId, Event, datetime]]) -> int:
    """Publish pipelined (no expectations needed: one writer); the stream's last sequence."""
    codec = EventCodec(default_registry())
    js = nc.jetstream(timeout=30)
    window: list[asyncio.Future[Any]] = []
    for stream, event, moment in events:
        window.append(await js.publish_async(
            event_subject(stream, event), codec.encode(event, moment, "bench"),
            headers={H_TYPE: event.event_type}))
        if len(window) >= 2000:
            # publish_async's future never completes on an error reply: bound the wait.
            await asyncio.wait_for(asyncio.gather(*window), 60)
            window = []
    await asyncio.wait_for(asyncio.gather(*window), 60)
    info = await js.stream_info(TOPOLOGY.events_stream)
    return int(info.state.last_seq)


# Baselines ---------------------------------------------------------------------------------

async def raw_drain(nc: NATS, expected: int) -> dict[str, Any]:
    js = nc.jetstream(timeout=10)
    sub = await js.pull_subscribe(
        "albatross.events.>", stream=TOPOLOGY.events_stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.ALL,
                              max_ack_pending=10_000, filter_subject="albatross.events.>"))
    got = 0
    began = time.perf_counter()
    try:
        while got < expected:
            messages = await sub.fetch(1000, timeout=5)
            got += len(messages)
            await messages[-1].ack()
    finally:
        seconds = time.perf_counter() - began
        await sub.unsubscribe()
    return {"events": got, "seconds": round(seconds, 3), "per_s": round(got / seconds)}


async def raw_copy(dsn: str, rows: int) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE bench_copy (id text PRIMARY KEY, tenant_id text NOT NULL, "
            "pilot_id text NOT NULL, status text NOT NULL, submitted_at timestamptz NOT NULL, "
            "flight_time_minutes integer NOT NULL, remarks text)")
        records = [(f"r{n:08d}", f"t{n % 50:03d}", f"u{n % 5000:07d}", "pending",
                    T0 + timedelta(seconds=n), n % 600, None) for n in range(rows)]
        began = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table("bench_copy", records=records)
        seconds = time.perf_counter() - began
        await connection.execute("DROP TABLE bench_copy")
    finally:
        await connection.close()
    return {"rows": rows, "seconds": round(seconds, 3), "per_s": round(rows / seconds)}


# Lag ---------------------------------------------------------------------------------------

async def steady_lag(root: Path, pg_dsn: str, cfg: Config) -> dict[str, Any]:
    """A projector process; events at ``cfg.rate``/s; append-ack to checkpoint NOTIFY."""
    server = NatsServer(root / "nats-lag", sync_always=False)
    await server.start()
    dsn = await create_database(pg_dsn, "lag")
    await apply_migrations(dsn)
    nc = await nats.connect(server.url)
    await ensure_topology(nc.jetstream(), TOPOLOGY)
    port = free_port()
    env = {**os.environ, "ALBATROSS_NATS_URL": server.url, "ALBATROSS_DATABASE_URL": dsn,
           "ALBATROSS_PROJECTOR_PORT": str(port), "ALBATROSS_LOG_LEVEL": "warning"}
    log = (root / "projector.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "albatross.services.projector.main"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    listener = await asyncpg.connect(dsn)
    notified: list[tuple[float, int]] = []
    listener_ready = asyncio.Event()

    def on_notify(_c: Any, _p: int, _ch: str, payload: str) -> None:
        notified.append((time.perf_counter(), int(payload)))
        listener_ready.set()

    await listener.add_listener("read_model_checkpoint", on_notify)
    codec = EventCodec(default_registry())
    js = nc.jetstream(timeout=10)
    rng = random.Random(5)
    acked: list[tuple[float, int]] = []

    async def publish(stream: StreamId, event: Event) -> None:
        ack = await js.publish(event_subject(stream, event),
                               codec.encode(event, datetime.now(UTC), "bench"),
                               headers={H_TYPE: event.event_type})
        acked.append((time.perf_counter(), ack.seq))

    try:
        pilots = [f"lag-u{n}" for n in range(50)]
        await publish(StreamId("tenant", "lag"), TenantCreated(
            tenant_id="lag", name="Lag Air", icao="LAG", iata=None))
        for uid in pilots:
            await publish(StreamId("user", uid, "lag"), UserRegistered(
                user_id=uid, email=f"{uid}@x.io", display_name="L", role="Pilot",
                tenant_id="lag", must_change_password=False))
        await asyncio.wait_for(listener_ready.wait(), 30)  # the projector is up and leading
        while not notified or notified[-1][1] < acked[-1][1]:
            await asyncio.sleep(0.05)
        acked.clear()
        notified.clear()
        ticks = int(cfg.lag_seconds * 100)
        per_tick = cfg.rate // 100
        began = time.perf_counter()
        for tick in range(ticks):
            delay = began + tick / 100 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = []
            for _ in range(per_tick):
                pid = f"lag-r{tick}-{len(batch)}"
                batch.append(publish(StreamId("pirep", pid, "lag"), PirepSubmitted(
                    pirep_id=pid, tenant_id="lag", pilot_id=rng.choice(pilots),
                    details=details(rng))))
            await asyncio.gather(*batch)
        sent_seconds = time.perf_counter() - began
        deadline = time.perf_counter() + 30
        while (not notified or notified[-1][1] < max(s for _, s in acked)) \
                and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        lags = []
        index = 0
        ordered = sorted(notified, key=lambda pair: pair[0])
        for acked_at, sequence in sorted(acked, key=lambda pair: pair[1]):
            while index < len(ordered) and ordered[index][1] < sequence:
                index += 1
            if index == len(ordered):
                lags.append(float("inf"))
                continue
            lags.append(max(0.0, ordered[index][0] - acked_at))
        return {"events": len(acked), "offered_per_s": cfg.rate,
                "achieved_per_s": round(len(acked) / sent_seconds),
                "append_ack_to_visible": common.latency_ms(lags),
                "commits": len(notified)}
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        await listener.close()
        await nc.close()
        await server.stop()


async def create_database(dsn: str, name: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


# Main --------------------------------------------------------------------------------------

async def bench(cfg: Config, keep: bool) -> None:
    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="albatross-bench-projector-"))
    common.progress(f"work dir {root}; quick={cfg.quick}; events={cfg.events}")
    pg = PostgresServer(root / "pg")
    server = NatsServer(root / "nats", sync_always=False)
    lag_pg = PostgresServer(root / "pg-lag")
    try:
        # The lag phase first, on a PostgreSQL of its own: the bulk phases leave the other one
        # checkpointing hundreds of MB, which is not the steady state being measured.
        await lag_pg.start()
        common.progress(f"steady lag at {cfg.rate} events/s for {cfg.lag_seconds:.0f} s")
        lag = await steady_lag(root, lag_pg.dsn, cfg)
        common.progress(f"lag {lag['append_ack_to_visible']}")
        await lag_pg.stop()
        await pg.start()
        await server.start()
        nc = await nats.connect(server.url)
        await ensure_topology(nc.jetstream(), TOPOLOGY)
        events = workload(cfg.events)
        common.progress(f"seeding {len(events)} messages ({cfg.events} public events)")
        seeded_at = time.perf_counter()
        last = await seed(nc, events)
        seed_seconds = time.perf_counter() - seeded_at
        common.progress(f"seeded in {seed_seconds:.1f} s; draining with a plain consumer")
        drain = await raw_drain(nc, cfg.events)
        common.progress(f"drain {drain['per_s']}/s; COPY of {cfg.events} rows")
        dsn = await create_database(pg.dsn, "bench")
        copy = await raw_copy(dsn, cfg.events)
        common.progress(f"COPY {copy['per_s']}/s; rebuild")
        await apply_migrations(dsn)
        result = await rebuild(nc, dsn, stream=TOPOLOGY.events_stream, swap=False, until=last,
                               shadow="read_model_bench")
        rebuild_rate = result.events / result.seconds
        common.progress(f"rebuild {rebuild_rate:.0f} events/s ({result.seconds:.1f} s)")
        await nc.close()
    finally:
        await server.stop()
        await pg.stop()
        await lag_pg.stop()
        if keep:
            common.progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    slower = min(drain["per_s"], copy["per_s"])
    results = {
        "config": {"quick": cfg.quick, "events": cfg.events, "messages": len(events),
                   "lag_seconds": cfg.lag_seconds, "rebuild_batch": 2000,
                   "uvloop": common.uvloop_version(), **common.machine()},
        "rebuild": {"events": result.events, "seconds": round(result.seconds, 2),
                    "per_s": round(rebuild_rate)},
        "lag": lag,
        "seed_seconds": round(seed_seconds, 1),
        "runtime_s": round(time.perf_counter() - began, 1),
    }
    baselines = {"raw_drain": drain, "raw_copy": copy}
    p99 = float(lag["append_ack_to_visible"]["p99_ms"])
    targets = [
        common.target("rebuild_vs_slower_raw_rate", common.ratio(rebuild_rate, slower), ">=",
                      0.4),
        common.target("steady_1000_per_s_lag_p99_ms", p99, "<=", 100.0),
    ]
    for t in targets:
        common.progress(f"target {t['name']}: {t['value']} {t['op']} {t['target']} -> "
                        f"{'met' if t['met'] else 'NOT met'}")
    common.emit(BENCH, results, baselines, targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--events", type=int, default=None, help="events to rebuild")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data dirs")
    args = parser.parse_args(argv)
    cfg = (Config(quick=True, events=5_000, lag_seconds=3.0) if args.quick
           else Config(quick=False, events=200_000, lag_seconds=30.0))
    if args.events is not None:
        cfg = Config(quick=cfg.quick, events=args.events, lag_seconds=cfg.lag_seconds)
    configure_logging("bench", level="warning", stream=sys.stderr)
    common.run(lambda: bench(cfg, args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
