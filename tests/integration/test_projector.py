"""The projector against real servers: exactly-once under redelivery and SIGKILL, the outbox,
read-your-writes, poison events, leader failover and the rebuild's atomic swap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.adapters.postgres.applier import BatchApplier, OutboxRow
from albatross.adapters.postgres.migrations import apply_migrations, load_migrations, migrate
from albatross.adapters.postgres.pool import connect
from albatross.adapters.postgres.read_models import PostgresReadModels
from albatross.application.principal import Principal
from albatross.domain.aggregates import default_registry
from albatross.domain.events import Event
from albatross.domain.pireps import FlightDetails, PirepAccepted, PirepRejected, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyCreated,
    ApiKeyHashIssued,
    ApiKeyRevoked,
    PasswordHashSet,
    UserRegistered,
)
from albatross.infra._process import free_port, http_get
from albatross.infra.nats_server import NatsServer
from albatross.ports import AppendRequest, StreamId
from albatross.services.projector.metrics import ProjectorMetrics
from albatross.services.projector.outbox import (
    ATOMIC_FROM,
    CHUNK,
    DELETE_EVERY,
    HANDED_LIMIT,
    OutboxPublisher,
)
from albatross.services.projector.rebuild import rebuild, replay, swap_in
from albatross.services.projector.runner import Projector

pytestmark = [pytest.mark.real, pytest.mark.slow]
TOPOLOGY = Topology()
TABLES = {"tenants": "id", "users": "id", "api_keys": "id", "pireps": "id",
          "pirep_history": "pirep_id, sequence", "poison_events": "sequence"}
ADMIN = Principal(user_id="admin", role="PlatformAdmin", tenant_id=None, session_id="s")


# Servers ---------------------------------------------------------------------------------

@pytest.fixture
def dsn(database_url: str) -> Iterator[str]:
    """A private database for one test, on the session's PostgreSQL."""
    name = f"projector_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(database_url)

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def nc(fresh_nats: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(fresh_nats.url)
    await ensure_topology(client.jetstream(), TOPOLOGY)
    try:
        yield client
    finally:
        await client.close()


def codec() -> EventCodec:
    return EventCodec(default_registry())


# Load ------------------------------------------------------------------------------------

def details() -> FlightDetails:
    off = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    return FlightDetails(flight_number="DLH400", departure="EDDF", arrival="KJFK",
                         block_off_at=off, block_on_at=off.replace(hour=15),
                         flight_time_minutes=random.randrange(60, 500))


@dataclass
class Load:
    """Commands' events, appended straight to the event store by concurrent workers."""

    store: JetStreamEventStore
    public_events: int = 0
    last_public: int = 0
    mine: dict[Any, int] = field(default_factory=dict)

    async def append(self, stream: StreamId, *events: Event) -> int | None:
        self.mine[asyncio.current_task()] = self.mine.get(asyncio.current_task(), 0) + sum(
            1 for e in events if not e.secret)
        result = await self.store.append(AppendRequest(
            stream=stream, events=list(events), expected_version=None,
            occurred_at=datetime.now(UTC), actor_id="load"))
        self.public_events += sum(1 for e in events if not e.secret)
        if result.public_sequence is not None:
            self.last_public = max(self.last_public, result.public_sequence)
        return result.public_sequence

    async def worker(self, n: int, events: int, pause: float = 0.0) -> None:
        rng = random.Random(n)
        tid = f"t{n}-{uuid.uuid4().hex[:6]}"
        await self.append(StreamId("tenant", tid), TenantCreated(
            tenant_id=tid, name=f"Airline {n}", icao="ABC", iata=None))
        pilots: list[str] = []
        pending: list[str] = []
        keys: list[tuple[str, str]] = []
        me = asyncio.current_task()
        while self.mine.get(me, 0) < events:
            roll = rng.random()
            if roll < 0.15 or not pilots:
                uid = f"u{uuid.uuid4().hex[:12]}"
                await self.append(StreamId("user", uid, tid), UserRegistered(
                    user_id=uid, email=f"{uid}@x.io", display_name="P", role="Pilot",
                    tenant_id=tid, must_change_password=False),
                    PasswordHashSet(user_id=uid, password_hash="h"))
                pilots.append(uid)
            elif roll < 0.55:
                pid = f"r{uuid.uuid4().hex[:12]}"
                await self.append(StreamId("pirep", pid, tid), PirepSubmitted(
                    pirep_id=pid, tenant_id=tid, pilot_id=rng.choice(pilots),
                    details=details()))
                pending.append(pid)
            elif roll < 0.85 and pending:
                pid = pending.pop(rng.randrange(len(pending)))
                kind = PirepAccepted if rng.random() < 0.7 else PirepRejected
                await self.append(StreamId("pirep", pid, tid), kind(
                    pirep_id=pid, reviewed_by="admin", comment=None))
            elif roll < 0.95 or not keys:
                uid = rng.choice(pilots)
                kid = f"k{uuid.uuid4().hex[:12]}"
                await self.append(StreamId("user", uid, tid), ApiKeyCreated(
                    user_id=uid, key_id=kid, name="k", prefix="alb_x"),
                    ApiKeyHashIssued(user_id=uid, key_id=kid, key_hash="kh"))
                keys.append((uid, kid))
            else:
                uid, kid = keys.pop(rng.randrange(len(keys)))
                await self.append(StreamId("user", uid, tid),
                                  ApiKeyRevoked(user_id=uid, key_id=kid))
            if pause:
                await asyncio.sleep(pause)

    async def run(self, workers: int, events_each: int, pause: float = 0.0) -> None:
        await asyncio.gather(*(self.worker(n, events_each, pause) for n in range(workers)))


def load_for(nc: NATS) -> Load:
    return Load(JetStreamEventStore(nc, codec(), TOPOLOGY.events_stream))


# Inspection ------------------------------------------------------------------------------

async def checkpoint_of(dsn: str, schema: str = "read_model") -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(
            f"SELECT last_sequence FROM {schema}.projection_checkpoint"))
    except asyncpg.UndefinedTableError:
        return -1
    finally:
        await connection.close()


async def wait_checkpoint(dsn: str, sequence: int, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await checkpoint_of(dsn) >= sequence:
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    raise AssertionError(f"checkpoint {await checkpoint_of(dsn)} never reached {sequence}")


async def table_rows(dsn: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    connection = await connect(dsn)
    try:
        return {table: [tuple(r) for r in await connection.fetch(
            f"SELECT * FROM {schema}.{table} ORDER BY {order}")]
            for table, order in TABLES.items()}
    finally:
        await connection.close()


async def fresh_replay(nc: NATS, dsn: str, schema: str) -> list[str]:
    """Replay the stream into a scratch schema, with the outbox; the change ids it wrote."""
    connection = await connect(dsn)
    try:
        await migrate(connection, schema, fresh=True)
        info = await nc.jetstream().stream_info(TOPOLOGY.events_stream)
        applier = BatchApplier(schema, notify=False)
        await replay(nc, connection, applier, TOPOLOGY.events_stream, codec(),
                     until=int(info.state.last_seq))
        rows = await connection.fetch(
            f"SELECT event_sequence, ordinal FROM {schema}.change_outbox "
            "ORDER BY event_sequence, ordinal")
        return [f"chg-{r['event_sequence']}-{r['ordinal']}" for r in rows]
    finally:
        await connection.close()


async def published_change_ids(nc: NATS) -> list[str]:
    js = nc.jetstream()
    info = await js.stream_info(TOPOLOGY.changes_stream)
    total = int(info.state.messages)
    if total == 0:
        return []
    sub = await js.pull_subscribe("albatross.changes.>", stream=TOPOLOGY.changes_stream,
                                  config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL,
                                                        ack_policy=AckPolicy.NONE,
                                                        mem_storage=True))
    ids: list[str] = []
    try:
        while len(ids) < total:
            for msg in await sub.fetch(min(1000, total - len(ids)), timeout=5):
                ids.append((msg.headers or {})["Nats-Msg-Id"])
    finally:
        await sub.unsubscribe()
    return ids


async def wait_outbox_drained(dsn: str, timeout: float = 20.0) -> None:
    began = time.monotonic()
    connection = await asyncpg.connect(dsn)
    try:
        while time.monotonic() - began < timeout:
            if await connection.fetchval("SELECT count(*) FROM read_model.change_outbox") == 0:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    raise AssertionError("the outbox was never drained")


# The projector, in process and as a process ----------------------------------------------

@contextlib.asynccontextmanager
async def projector_in_process(nats_url: str, dsn: str) -> AsyncIterator[Projector]:
    await apply_migrations(dsn)
    client = await nats.connect(nats_url)
    metrics = ProjectorMetrics(CollectorRegistry())
    projector = Projector(client, dsn, codec(), metrics, events_stream=TOPOLOGY.events_stream,
                          changes_stream=TOPOLOGY.changes_stream, leader_retry=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        await asyncio.wait_for(projector.leading.wait(), 10)
        yield projector
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.close()


class ProjectorProcess:
    def __init__(self, nats_url: str, dsn: str, log: Path, port: int = 0) -> None:
        self.port = port or free_port()
        env = {**os.environ, "ALBATROSS_NATS_URL": nats_url, "ALBATROSS_DATABASE_URL": dsn,
               "ALBATROSS_PROJECTOR_PORT": str(self.port), "ALBATROSS_LOG_LEVEL": "info"}
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "albatross.services.projector.main"], env=env,
            stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(15)
        self._log.close()
        return code

    async def metric(self, name: str) -> float | None:
        try:
            status, body = await http_get(self.port, "/metrics")
        except (OSError, TimeoutError):
            return None
        if status != 200:
            return None
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


# Tests -----------------------------------------------------------------------------------

async def test_redelivering_everything_changes_nothing(fresh_nats: NatsServer, nc: NATS,
                                                       dsn: str) -> None:
    load = load_for(nc)
    async with projector_in_process(fresh_nats.url, dsn) as projector:
        await load.run(workers=4, events_each=150)
        await wait_checkpoint(dsn, load.last_public, 20)
        await wait_outbox_drained(dsn)
        before = await table_rows(dsn, "read_model")
        changes_before = await published_change_ids(nc)
        # Every event is delivered again (as after a lost ack or a consumer reset to 0),
        # and again in a partial batch.
        js = nc.jetstream()
        await js.reset_consumer(TOPOLOGY.events_stream, "albatross-projector", seq=1)
        await asyncio.sleep(1.5)
        await js.reset_consumer(TOPOLOGY.events_stream, "albatross-projector",
                                seq=load.last_public // 2)
        await asyncio.sleep(1.5)
        assert projector.leading.is_set()
    assert await table_rows(dsn, "read_model") == before
    assert await published_change_ids(nc) == changes_before
    assert len(changes_before) == len(set(changes_before)) > load.public_events


async def test_sigkill_at_random_points_loses_and_doubles_nothing(
        fresh_nats: NatsServer, nc: NATS, dsn: str, tmp_path: Path) -> None:
    load = load_for(nc)
    log = tmp_path / "projector.log"
    proc = ProjectorProcess(fresh_nats.url, dsn, log)
    flowing = asyncio.create_task(load.run(workers=10, events_each=230, pause=0.001))
    kills = 0
    rng = random.Random(11)
    try:
        while not flowing.done() or kills < 3:
            await asyncio.sleep(rng.uniform(0.6, 1.5))
            proc.kill()
            kills += 1
            proc = ProjectorProcess(fresh_nats.url, dsn, log)
        await flowing
        assert load.public_events >= 2300
        await wait_checkpoint(dsn, load.last_public, 40)
        await wait_outbox_drained(dsn)
    finally:
        proc.kill()
        flowing.cancel()
    assert kills >= 3
    expected_changes = await fresh_replay(nc, dsn, "fresh")
    assert await table_rows(dsn, "read_model") == await table_rows(dsn, "fresh")
    published = await published_change_ids(nc)
    assert len(published) == len(set(published)), "a change was published twice"
    assert published == expected_changes, "changes missing, extra or out of order"


class CommitsThenFails:
    """The projector's applier, except that its third batch with changes commits and then
    fails for its caller (a reply lost after the commit): its rows never reach the publisher."""

    def __init__(self, real: BatchApplier) -> None:
        self._real = real
        self._left = 3
        self.failed = False

    async def apply(self, connection: Any, batch: Any) -> Any:
        result = await self._real.apply(connection, batch)
        if result.outbox:
            self._left -= 1
            if self._left == 0:
                self.failed = True
                raise OSError("reply lost after the commit")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_changes_of_a_batch_that_committed_but_failed_are_published_in_order(
        fresh_nats: NatsServer, nc: NATS, dsn: str) -> None:
    load = load_for(nc)
    async with projector_in_process(fresh_nats.url, dsn) as projector:
        applier = CommitsThenFails(projector._applier)
        projector._applier = applier  # type: ignore[assignment]
        await load.run(workers=4, events_each=60, pause=0.002)
        await wait_checkpoint(dsn, load.last_public, 20)
        await wait_outbox_drained(dsn)
    assert applier.failed
    expected_changes = await fresh_replay(nc, dsn, "fresh")
    assert await published_change_ids(nc) == expected_changes


async def test_read_your_writes_is_never_stale(fresh_nats: NatsServer, nc: NATS,
                                               dsn: str) -> None:
    load = load_for(nc)
    async with projector_in_process(fresh_nats.url, dsn):
        models = await PostgresReadModels.open(dsn)
        try:
            tid = "rywt"
            await load.append(StreamId("tenant", tid), TenantCreated(
                tenant_id=tid, name="RYW", icao="RYW", iata=None))
            for n in range(200):
                uid = f"ryw{n}"
                sequence = await load.append(
                    StreamId("user", uid, tid),
                    UserRegistered(user_id=uid, email=f"{uid}@x.io", display_name="R",
                                   role="Pilot", tenant_id=tid, must_change_password=False),
                    PasswordHashSet(user_id=uid, password_hash="h"))
                assert sequence is not None
                assert await models.wait_for(sequence, 5.0)
                assert await models.get_user(ADMIN, uid) is not None, f"stale read at {n}"
            tenant = await models.get_tenant(ADMIN, tid)
            assert tenant is not None
            assert tenant.pilot_count == 200
        finally:
            await models.close()


async def test_poison_events_are_recorded_and_skipped(fresh_nats: NatsServer, nc: NATS,
                                                      dsn: str) -> None:
    load = load_for(nc)
    js = nc.jetstream()
    async with projector_in_process(fresh_nats.url, dsn) as projector:
        bad_json = await js.publish("albatross.events.platform.tenant.bad1", b"{not json")
        unknown = await js.publish(
            "albatross.events.platform.tenant.bad2",
            b'{"type":"Mystery","schema_version":1,"occurred_at":"2026-11-26T10:00:00Z",'
            b'"actor_id":null,"data":{}}')
        after = await load.append(StreamId("tenant", "good"), TenantCreated(
            tenant_id="good", name="Good", icao="GOD", iata=None))
        assert after is not None
        await wait_checkpoint(dsn, after, 10)
        metrics = projector._metrics  # the test's own instance
        assert metrics.poison._value.get() == 2
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT sequence, subject, reason FROM read_model.poison_events ORDER BY sequence")
        tenant = await connection.fetchval("SELECT name FROM read_model.tenants WHERE id='good'")
    finally:
        await connection.close()
    assert [(r["sequence"], r["subject"]) for r in rows] == [
        (bad_json.seq, "albatross.events.platform.tenant.bad1"),
        (unknown.seq, "albatross.events.platform.tenant.bad2")]
    assert "Mystery" in rows[1]["reason"]
    assert tenant == "Good"


# A refusal the projection cannot foresee: PostgreSQL raising a data exception (class 22).
_REFUSE_BAD_AIR = """
CREATE FUNCTION public.refuse_bad_air() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'Bad Air' THEN
    RAISE EXCEPTION 'Bad Air is not storable' USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_bad_air BEFORE INSERT OR UPDATE ON read_model.tenants
  FOR EACH ROW EXECUTE FUNCTION public.refuse_bad_air();
"""


async def test_an_event_the_database_refuses_is_poison_not_a_halt(fresh_nats: NatsServer,
                                                                   nc: NATS, dsn: str) -> None:
    """An event that decodes and projects but that PostgreSQL refuses as data fails its
    whole batch every time: the projector applies that batch event by event, records the
    refused one as poison and goes on."""
    await apply_migrations(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(_REFUSE_BAD_AIR)
    finally:
        await connection.close()
    load = load_for(nc)
    sequences = {}
    for tid, name in (("before", "Before Air"), ("bad", "Bad Air"), ("after", "After Air")):
        sequences[tid] = await load.append(StreamId("tenant", tid), TenantCreated(
            tenant_id=tid, name=name, icao="TZA", iata=None))
    async with projector_in_process(fresh_nats.url, dsn) as projector:
        await wait_checkpoint(dsn, sequences["after"], 15)
        assert projector._metrics.poison._value.get() == 1
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT sequence, reason FROM read_model.poison_events")
        projected = await connection.fetch("SELECT id FROM read_model.tenants ORDER BY id")
    finally:
        await connection.close()
    assert [r["sequence"] for r in rows] == [sequences["bad"]]
    assert "refused by the read-model database" in rows[0]["reason"]
    assert "Bad Air is not storable" in rows[0]["reason"]
    assert [r["id"] for r in projected] == ["after", "before"]


async def test_what_no_read_model_stores_is_poison_live_and_in_a_rebuild(
        fresh_nats: NatsServer, nc: NATS, dsn: str) -> None:
    """Text with NUL (PostgreSQL's text cannot hold one) and a flight time past the column's
    32 bits: written around the domain, they are skipped by the projection itself, so the
    live projector and a rebuild both record them as poison and carry on (a rebuild used to
    fail on them every time)."""
    load = load_for(nc)
    last = await load.append(StreamId("tenant", "t1"), TenantCreated(
        tenant_id="t1", name="Nul\x00Air", icao="NUL", iata=None))
    huge = FlightDetails(flight_number="AFR1", departure="LFPG", arrival="EGLL",
                         block_off_at=datetime(2026, 11, 26, 8, tzinfo=UTC),
                         block_on_at=datetime(2026, 11, 26, 10, tzinfo=UTC),
                         flight_time_minutes=2**31)
    last = await load.append(StreamId("pirep", "r1", "t2"), PirepSubmitted(
        pirep_id="r1", tenant_id="t2", pilot_id="u1", details=huge))
    last = await load.append(StreamId("tenant", "t3"), TenantCreated(
        tenant_id="t3", name="Fine Air", icao="FIN", iata=None))
    async with projector_in_process(fresh_nats.url, dsn) as projector:
        assert last is not None
        await wait_checkpoint(dsn, last, 15)
        assert projector._metrics.poison._value.get() == 2
        live = await table_rows(dsn, "read_model")
        result = await rebuild(nc, dsn, stream=TOPOLOGY.events_stream)
        assert result.checkpoint == last
    rebuilt = await table_rows(dsn, "read_model")
    # Poison rows differ only in when they were recorded.
    poison = {name: [row[:3] for row in rows.pop("poison_events")]
              for name, rows in (("live", live), ("rebuilt", rebuilt))}
    assert rebuilt == live
    assert poison["rebuilt"] == poison["live"]
    assert [row[0] for row in live["tenants"]] == ["t3"]
    reasons = [reason for _sequence, _subject, reason in poison["live"]]
    assert len(reasons) == 2
    assert "NUL" in reasons[0]
    assert "flight_time_minutes" in reasons[1]


async def test_a_standby_takes_over_within_five_seconds(fresh_nats: NatsServer, nc: NATS,
                                                        dsn: str, tmp_path: Path) -> None:
    load = load_for(nc)
    await apply_migrations(dsn)
    first = ProjectorProcess(fresh_nats.url, dsn, tmp_path / "a.log")
    second = ProjectorProcess(fresh_nats.url, dsn, tmp_path / "b.log")
    try:
        leader = standby = None
        began = time.monotonic()
        while leader is None and time.monotonic() - began < 20:
            states = [(await p.metric("albatross_projector_leader"), p) for p in (first, second)]
            leaders = [p for value, p in states if value == 1.0]
            known = [value for value, _ in states if value is not None]
            if len(known) == 2 and len(leaders) == 1:
                leader = leaders[0]
                standby = second if leader is first else first
            await asyncio.sleep(0.1)
        assert leader is not None, "no single leader emerged"
        assert standby is not None
        warm = await load.append(StreamId("tenant", "warm"), TenantCreated(
            tenant_id="warm", name="W", icao="WRM", iata=None))
        assert warm is not None
        await wait_checkpoint(dsn, warm, 10)
        leader.kill()
        killed_at = time.monotonic()
        sequence = await load.append(StreamId("tenant", "after"), TenantCreated(
            tenant_id="after", name="A", icao="AFT", iata=None))
        assert sequence is not None
        await wait_checkpoint(dsn, sequence, 10)
        took = time.monotonic() - killed_at
        assert took < 5.0, f"takeover took {took:.1f} s"
        assert await standby.metric("albatross_projector_leader") == 1.0
        status, body = await http_get(standby.port, "/readyz")
        assert status == 200, body
        assert b'"nats": "ok"' in body or b'"nats":"ok"' in body
        assert standby.terminate() == 0
    finally:
        first.kill()
        second.kill()


async def test_rebuild_swaps_in_equal_tables_while_the_projector_keeps_going(
        fresh_nats: NatsServer, nc: NATS, dsn: str) -> None:
    load = load_for(nc)
    async with projector_in_process(fresh_nats.url, dsn):
        models = await PostgresReadModels.open(dsn)
        try:
            await load.run(workers=4, events_each=300)
            await wait_checkpoint(dsn, load.last_public, 20)
            # Prepared statements exist on the pool before the swap.
            assert (await models.list_tenants(ADMIN, limit=10, cursor=None)).items
            during = asyncio.create_task(load.run(workers=2, events_each=150, pause=0.005))
            result = await rebuild(nc, dsn, stream=TOPOLOGY.events_stream, batch=200)
            assert result.events > 1000
            await during
            await wait_checkpoint(dsn, load.last_public, 20)
            await wait_outbox_drained(dsn)
            # The live applier went on after the swap, and readers see the new tables.
            assert await models.wait_for(load.last_public, 5)
            page = await models.list_tenants(ADMIN, limit=50, cursor=None)
            assert len(page.items) == 6
        finally:
            await models.close()
    expected_changes = await fresh_replay(nc, dsn, "fresh")
    assert await table_rows(dsn, "read_model") == await table_rows(dsn, "fresh")
    published = await published_change_ids(nc)
    assert published == expected_changes
    connection = await asyncpg.connect(dsn)
    try:
        schemas = {r["nspname"] for r in await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'read_model%'")}
    finally:
        await connection.close()
    assert schemas == {"read_model"}


async def test_migrations_apply_once_even_when_two_processes_race(dsn: str) -> None:
    first, second = await asyncio.gather(apply_migrations(dsn), apply_migrations(dsn))
    every = [migration.label for migration in load_migrations()]
    assert sorted([first, second], key=len) == [[], every]
    assert await apply_migrations(dsn) == []
    assert await checkpoint_of(dsn) == 0


async def test_rebuild_command_swaps_and_reports_progress_as_log_lines(
        fresh_nats: NatsServer, nc: NATS, dsn: str) -> None:
    load = load_for(nc)
    async with projector_in_process(fresh_nats.url, dsn):
        await load.run(workers=2, events_each=100)
        await wait_checkpoint(dsn, load.last_public, 20)
        before = await table_rows(dsn, "read_model")
        env = {**os.environ, "ALBATROSS_NATS_URL": fresh_nats.url,
               "ALBATROSS_DATABASE_URL": dsn}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "albatross.services.projector.rebuild", "--batch", "50",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    text = output.decode()
    assert '"rebuild finished"' in text
    assert "\r[" not in text  # not a terminal: no progress bar
    assert await table_rows(dsn, "read_model") == before


class MovesCheckpointBeforeWrite:
    """A connection on which another writer moves the checkpoint between read and write."""

    def __init__(self, connection: Any, schema: str) -> None:
        self._connection = connection
        self._schema = schema

    async def fetch(self, *args: Any) -> Any:
        return await self._connection.fetch(*args)

    async def fetchrow(self, *args: Any) -> Any:
        await self._connection.execute(
            f"UPDATE {self._schema}.projection_checkpoint SET last_sequence = last_sequence + 1")
        return await self._connection.fetchrow(*args)


async def test_a_batch_whose_checkpoint_moved_meanwhile_writes_nothing(dsn: str) -> None:
    from albatross.adapters.postgres.applier import CheckpointMoved
    from albatross.ports import RecordedEvent

    connection = await connect(dsn)
    try:
        await migrate(connection, "moved", fresh=True)
        applier = BatchApplier("moved", notify=False)
        batch = [RecordedEvent(1, StreamId("tenant", "t1"), TenantCreated(
            tenant_id="t1", name="One Air", icao="ONE", iata=None),
            datetime(2026, 11, 26, tzinfo=UTC), "admin")]
        with pytest.raises(CheckpointMoved):
            await applier.apply(MovesCheckpointBeforeWrite(connection, "moved"), batch)
        assert await connection.fetchval("SELECT count(*) FROM moved.tenants") == 0
        assert await connection.fetchval("SELECT count(*) FROM moved.change_outbox") == 0
        assert await applier.checkpoint(connection) == 1  # only the other writer's move
        # From the checkpoint it finds now, the same event is a redelivery: nothing to do.
        assert (await applier.apply(connection, batch)).applied == 0
        await connection.execute("UPDATE moved.projection_checkpoint SET last_sequence = 0")
        assert (await applier.apply(connection, batch)).applied == 1
        assert await connection.fetchval("SELECT count(*) FROM moved.tenants") == 1
        assert await connection.fetchval("SELECT count(*) FROM moved.change_outbox") == 1
    finally:
        await connection.close()


class SwapsBeforeWrite:
    """A connection on which a rebuild's swap commits between a batch's preload and its write
    (the swap's shadow already stands at the live checkpoint)."""

    def __init__(self, connection: Any, swapper: Any, shadow: str, live: str) -> None:
        self._connection, self._swapper = connection, swapper
        self._shadow, self._live = shadow, live

    async def fetch(self, *args: Any) -> Any:
        return await self._connection.fetch(*args)

    async def fetchrow(self, *args: Any) -> Any:
        await swap_in(None, self._swapper, "no stream: nothing to catch up", None,  # type: ignore[arg-type]
                      self._shadow, self._live)
        return await self._connection.fetchrow(*args)


async def test_a_batch_preloaded_before_a_rebuild_swap_does_not_write_over_it(dsn: str) -> None:
    from albatross.adapters.postgres.applier import CheckpointMoved
    from tests.contract.test_read_models import Log, review, submit, tenant, user

    live, shadow = f"swap_live_{uuid.uuid4().hex[:8]}", f"swap_shadow_{uuid.uuid4().hex[:8]}"
    connection, swapper = await connect(dsn), await connect(dsn)
    try:
        await migrate(connection, live, fresh=True)
        log = Log()
        history = [tenant(log, "ta", "AAA"), user(log, "p1", "Pilot", "ta"),
                   submit(log, "r-1", "ta", "p1", 60), submit(log, "r-2", "ta", "p1", 45),
                   review(log, "r-1", "ta", accept=True)]
        await BatchApplier(live).apply(connection, history)
        # The live figures drifted (why one rebuilds); the rebuilt shadow has them right.
        await connection.execute(f"UPDATE {live}.users SET flight_count = 99, "
                                 "flight_minutes = 9999 WHERE id = 'p1'")
        await migrate(swapper, shadow, fresh=True)
        await BatchApplier(shadow, outbox=False, notify=False).apply(swapper, history)
        batch = [review(log, "r-2", "ta", accept=True)]
        applier = BatchApplier(live)
        with pytest.raises(CheckpointMoved):
            await applier.apply(SwapsBeforeWrite(connection, swapper, shadow, live), batch)
        figures = f"SELECT flight_count, flight_minutes FROM {live}.users WHERE id = 'p1'"
        assert tuple(await connection.fetchrow(figures)) == (1, 60)  # the rebuild's
        await applier.apply(connection, batch)  # the retry: preloaded from the rebuilt rows
        assert tuple(await connection.fetchrow(figures)) == (2, 105)
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {live} CASCADE")
        await connection.close()
        await swapper.close()


# Rows added straight to a read-model table: ``{schema}``, ``{p}`` (id prefix), ``{n}`` rows.
_GROW = {
    "users": "INSERT INTO {schema}.users (id, email, display_name, role, tenant_id, created_at, "
             "must_change_password) SELECT '{p}' || g, '{p}' || g || '@x.io', 'U', 'Pilot', "
             "'t', now(), false FROM generate_series(1, {n}) g",
    "pireps": "INSERT INTO {schema}.pireps (id, tenant_id, pilot_id, status, flight_number, "
              "departure, arrival, block_off_at, block_on_at, flight_time_minutes, source, "
              "submitted_at, version) SELECT '{p}' || g, 't', 'x1', 'pending', 'X1', 'EGLL', "
              "'KJFK', now(), now(), 60, 'manual', now(), 1 FROM generate_series(1, {n}) g",
}


async def test_the_batch_preload_reads_by_index_however_many_users_there_are(dsn: str) -> None:
    connection = await connect(dsn)
    try:
        await migrate(connection, "grown", fresh=True)
        await connection.execute(_GROW["users"].format(schema="grown", p="u", n=20000))
        await connection.execute("ANALYZE grown.users")
        applier = BatchApplier("grown", notify=False)
        plan = "\n".join(row[0] for row in await connection.fetch(
            "EXPLAIN " + applier._preload_sql.replace("$1::text[]", "'{r1}'::text[]")
            .replace("$2::text[]", "'{}'::text[]").replace("$3::text[]", "'{u7}'::text[]")
            .replace("$4::text[]", "'{}'::text[]")))
        assert "Seq Scan on users" not in plan, plan
        assert "users_pkey" in plan, plan
    finally:
        await connection.close()


def _seq_scans(plan: str) -> set[str]:
    """The tables an EXPLAIN text reads whole."""
    return set(re.findall(r"Seq Scan on (\w+)", plan))


async def _preload_plan(connection: Any) -> tuple[str, int, int]:
    """EXPLAIN of the newest preload statement's plan; its generic and custom plan counts."""
    row = await connection.fetchrow(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%''checkpoint'' AS kind%' "
        "AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY prepare_time DESC LIMIT 1")
    plan = "\n".join(r[0] for r in await connection.fetch(
        f"EXPLAIN EXECUTE {row['name']}('{{p5}}', '{{}}', '{{u7}}', '{{}}')"))
    return plan, row["generic_plans"], row["custom_plans"]


async def test_the_applier_plans_once_and_renews_its_plans_as_the_tables_grow(dsn: str) -> None:
    """The projector's connection plans each batch statement once (planning both at every
    batch cost more PostgreSQL CPU than a small batch's work), and the applier renews those
    plans as it applies events: a plan made on small, analysed tables scans them whole, and
    PostgreSQL would keep it however large they grow."""
    from albatross.ports import RecordedEvent

    def tenant(n: int) -> list[Any]:
        return [RecordedEvent(n, StreamId("tenant", f"t{n}"), TenantCreated(
            tenant_id=f"t{n}", name="Air", icao="AAA", iata=None),
            datetime(2026, 11, 26, tzinfo=UTC), "admin")]

    connection = await connect(dsn, plans="generic")
    try:
        await migrate(connection, "plans", fresh=True)
        for table in ("users", "pireps", "tenants"):
            # No ANALYZE behind the test's back: it would replan with the grown statistics.
            await connection.execute(
                f"ALTER TABLE plans.{table} SET (autovacuum_enabled = false)")
        for sql in _GROW.values():
            await connection.execute(sql.format(schema="plans", p="x", n=30))
        await connection.execute("ANALYZE plans.users, plans.pireps, plans.tenants")
        applier = BatchApplier("plans", notify=False, replan_from=8)
        for n in range(1, 8):
            await applier.apply(connection, tenant(n))
        for table, sql in _GROW.items():  # as if those batches had brought 20,000 rows
            await connection.execute(sql.format(schema="plans", p=table[0], n=20000))
        small, generic, custom = await _preload_plan(connection)
        assert (generic, custom) == (7, 0)  # one plan, used by every batch
        assert {"pireps", "users"} <= _seq_scans(small), small
        await applier.apply(connection, tenant(8))  # the 8th event: new plans from here on
        await applier.apply(connection, tenant(9))
        grown, generic, custom = await _preload_plan(connection)
    finally:
        await connection.close()
    assert (generic, custom) == (1, 0)
    assert not {"pireps", "users"} & _seq_scans(grown), grown
    assert "pireps_pkey" in grown, grown
    assert "users_pkey" in grown, grown


def test_the_applier_renews_its_plans_each_time_the_events_it_applied_double() -> None:
    applier = BatchApplier("plans", replan_from=1000)
    texts = [applier._preload_sql]
    renewed_at = []
    for batch in range(1, 41):  # 12,000 events in batches of 300
        applier._note_applied(300)
        if applier._preload_sql != texts[-1]:
            texts.append(applier._preload_sql)
            renewed_at.append(batch * 300)
    assert renewed_at == [1200, 2400, 4800, 9600]
    assert len(set(texts)) == 5


async def test_read_model_queries_use_one_generic_plan_from_their_first_execution(
        dsn: str) -> None:
    await apply_migrations(dsn)
    owner = await connect(dsn)
    try:
        await owner.execute(
            "INSERT INTO read_model.pireps (id, tenant_id, pilot_id, status, flight_number, "
            "departure, arrival, block_off_at, block_on_at, flight_time_minutes, source, "
            "submitted_at, version) SELECT 'p' || g, 't' || (g % 10), 'u' || (g % 100), "
            "'pending', 'X1', 'EGLL', 'KJFK', now(), now(), 60, 'manual', "
            "now() - (g || ' seconds')::interval, 1 FROM generate_series(1, 20000) g")
        await owner.execute("ANALYZE read_model.pireps")
    finally:
        await owner.close()
    models = await PostgresReadModels.open(dsn, max_size=1)
    try:
        admin = Principal(user_id="a", role="TenantAdmin", tenant_id="t7", session_id="s")
        for _ in range(3):
            page = await models.list_pireps(admin, status=None, pilot_id=None, tenant_id=None,
                                            limit=50, cursor=None)
            assert len(page.items) == 50
            assert {p.tenant_id for p in page.items} == {"t7"}
        plans = await models._pool.fetchrow(
            "SELECT sum(generic_plans) AS generic, sum(custom_plans) AS custom "
            "FROM pg_prepared_statements WHERE statement LIKE '%FROM read_model.pireps%' "
            "AND statement NOT LIKE '%pg_prepared_statements%'")
    finally:
        await models.close()
    # Custom plans misjudge the row-level-security filter and scan all of a tenant's rows.
    assert plans["custom"] == 0
    assert plans["generic"] == 3


def outbox_publisher(nc: NATS) -> OutboxPublisher:
    """A publisher of the outbox in schema ``outbox`` (migrate it first)."""
    return OutboxPublisher(nc, TOPOLOGY.changes_stream, "outbox",
                           ProjectorMetrics(CollectorRegistry()), publish_timeout=2.0)


def outbox_row(sequence: int) -> OutboxRow:
    """The change row (ordinal 0) for event ``sequence``, as the applier writes and hands it
    over."""
    return OutboxRow(sequence, 0, f"albatross.changes.t1.pirep.p{sequence}", b"{}")


async def add_outbox_rows(connection: Any, sequences: Iterable[int]) -> None:
    """One change row per event sequence (:func:`outbox_row`), as the applier writes them."""
    await connection.executemany(
        "INSERT INTO outbox.change_outbox (event_sequence, ordinal, subject, payload) "
        "VALUES ($1, $2, $3, $4)", [outbox_row(n) for n in sequences])


class LosesAcks:
    """Forwards to the real publisher, but the first time hides the acks at ``lost``."""

    def __init__(self, real: Any, lost: set[int]) -> None:
        self._real = real
        self._lost = lost

    async def publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> list[Any]:
        outcomes = list(await self._real.publish(messages))
        lost, self._lost = self._lost, set()
        return [None if i in lost else outcome for i, outcome in enumerate(outcomes)]


async def test_changes_whose_acks_were_lost_are_published_once_in_order(
        nc: NATS, dsn: str) -> None:
    connection = await connect(dsn)
    try:
        await migrate(connection, "outbox", fresh=True)

        publisher = outbox_publisher(nc)

        async def add(*sequences: int) -> None:
            await add_outbox_rows(connection, sequences)

        await add(1)
        assert await publisher.publish_pending(connection) == 1  # starts the chain
        await add(2, 3, 4)
        # 3 and 4 land, their acks do not come: the rows stay, the chain stands at 2.
        publisher._sender = LosesAcks(publisher._sender, {1, 2})  # type: ignore[assignment]
        with pytest.raises(TimeoutError):
            await publisher.publish_pending(connection)
        await add(5)
        refusals = 0
        for _ in range(10):
            try:
                await publisher.publish_pending(connection)
                break
            except Exception:  # the chain restarts after each refused expectation
                refusals += 1
        else:
            raise AssertionError("the outbox never drained")
        assert await connection.fetchval("SELECT count(*) FROM outbox.change_outbox") == 0
    finally:
        await connection.close()
    assert await published_change_ids(nc) == [f"chg-{n}-0" for n in range(1, 6)]
    assert refusals <= 3


class LosesCommitAck:
    """Forwards requests; the first batch commit lands but its ack never comes back."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.commits = 0

    async def request(self, subject: str, data: bytes, **kwargs: Any) -> Any:
        reply = await self._real.request(subject, data, **kwargs)
        if "Nats-Batch-Commit" in kwargs.get("headers", {}):
            self.commits += 1
            if self.commits == 1:
                raise nats.errors.TimeoutError
        return reply

    async def close(self) -> None:
        await self._real.close()


async def _drain(publisher: Any, connection: Any) -> int:
    """Publish until the outbox is empty, reconciling after each failure as the publisher's
    loop does; how many rounds failed."""
    for failures in range(10):
        try:
            await publisher.publish_pending(connection)
            return failures
        except Exception:  # what run() does: reconcile, try again
            await publisher.reconcile(connection)
    raise AssertionError("the outbox never drained")


class ForwardingConnection:
    """The three calls the outbox publisher makes, forwarded to a real connection (subclasses
    step in before some of them)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._real.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._real.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._real.fetchval(sql, *args)


class FailsFirstDelete(ForwardingConnection):
    """Its first ``DELETE`` fails (PostgreSQL went away after the publish): the published rows
    stay in the outbox."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.failed = False

    async def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().startswith("DELETE") and not self.failed:
            self.failed = True
            raise OSError("connection lost")
        return await super().execute(sql, *args)


async def test_rows_whose_delete_was_lost_are_not_published_again(
        nc: NATS, dsn: str) -> None:
    """A batch landed and its delete did not: the next round deletes what it knows landed
    before it reads the table, so nothing goes out twice and the chain holds."""
    connection = await connect(dsn)
    try:
        await migrate(connection, "outbox", fresh=True)
        publisher = outbox_publisher(nc)
        await add_outbox_rows(connection, [1])
        assert await publisher.publish_pending(connection) == 1  # starts the chain
        total = 1 + ATOMIC_FROM + 3
        await add_outbox_rows(connection, range(2, total + 1))
        flaky = FailsFirstDelete(connection)
        with pytest.raises(OSError, match="connection lost"):
            await publisher.publish_pending(flaky)  # the batch landed, its delete did not
        assert await connection.fetchval("SELECT count(*) FROM outbox.change_outbox") == total - 1
        assert await publisher.publish_pending(flaky) == 0
        assert await connection.fetchval("SELECT count(*) FROM outbox.change_outbox") == 0
        await add_outbox_rows(connection, [total + 1])
        assert await publisher.publish_pending(connection) == 1  # the chain holds after it
    finally:
        await connection.close()
    assert await published_change_ids(nc) == [f"chg-{n}-0" for n in range(1, total + 2)]


async def until_stored(nc: NATS, messages: int, timeout: float = 10.0) -> None:
    """Wait until the changes stream holds ``messages`` messages."""
    js = nc.jetstream()
    async with asyncio.timeout(timeout):
        while (await js.stream_info(TOPOLOGY.changes_stream)).state.messages < messages:
            await asyncio.sleep(0.02)


async def commit(connection: Any, publisher: OutboxPublisher, *sequences: int) -> None:
    """What the applier does: commit the rows, then hand them over."""
    await add_outbox_rows(connection, sequences)
    publisher.hand_over([outbox_row(n) for n in sequences])


class CountsOutboxReads(ForwardingConnection):
    """Counts the reads and deletes of the outbox; ``before_read`` runs before the next read
    (a commit racing with it)."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.reads = 0
        self.deletes = 0
        self.before_read: Any = None

    async def fetch(self, sql: str, *args: Any) -> Any:
        if "change_outbox" in sql:
            self.reads += 1
            hook, self.before_read = self.before_read, None
            if hook is not None:
                await hook()
        return await super().fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().startswith("DELETE"):
            self.deletes += 1
        return await super().execute(sql, *args)


@contextlib.asynccontextmanager
async def outbox_under_watch(nc: NATS, dsn: str) -> AsyncIterator[
        tuple[Any, OutboxPublisher, CountsOutboxReads]]:
    """A fresh outbox schema, its publisher, and the connection with its reads counted."""
    connection = await connect(dsn)
    try:
        await migrate(connection, "outbox", fresh=True)
        yield connection, outbox_publisher(nc), CountsOutboxReads(connection)
    finally:
        await connection.close()


async def test_once_the_table_is_drained_handed_over_rows_go_out_without_reading_it(
        nc: NATS, dsn: str) -> None:
    async with outbox_under_watch(nc, dsn) as (connection, publisher, spy):
        await add_outbox_rows(connection, [1, 2, 3])  # a backlog from an earlier leader
        stop = asyncio.Event()
        running = asyncio.create_task(publisher.run(spy, stop))
        try:
            await until_stored(nc, 3)
            reads, deletes = spy.reads, spy.deletes
            began = time.monotonic()
            for n in range(4, 21):
                await commit(connection, publisher, n)
                await asyncio.sleep(0.005)
            await until_stored(nc, 20)
            seconds = time.monotonic() - began
            assert spy.reads == reads  # no table read after the drain
            # Deleted once a second at most, not once per row.
            assert spy.deletes - deletes <= 1 + seconds / DELETE_EVERY
        finally:
            stop.set()
            await running
        # On its way out it deletes what it published.
        assert await connection.fetchval("SELECT count(*) FROM outbox.change_outbox") == 0
    assert await published_change_ids(nc) == [f"chg-{n}-0" for n in range(1, 21)]


@pytest.mark.parametrize("committed", ["before the read", "after the read"])
async def test_a_row_committed_while_the_table_is_read_is_published_once(
        nc: NATS, dsn: str, committed: str) -> None:
    async with outbox_under_watch(nc, dsn) as (connection, publisher, spy):
        await add_outbox_rows(connection, [1])

        async def commit_2() -> None:
            await commit(connection, publisher, 2)

        if committed == "before the read":
            spy.before_read = commit_2  # in the table read and in the hand-over
            assert await publisher.publish_round(spy) == 2  # both from the table
            assert await publisher.publish_round(spy) == 0  # 2 was handed over too: not again
        else:
            assert await publisher.publish_round(spy) == 1  # the drain: row 1
            await commit_2()  # only in the hand-over
            assert await publisher.publish_round(spy) == 1
        await commit(connection, publisher, 3)
        reads = spy.reads
        assert await publisher.publish_round(spy) == 1
        assert spy.reads == reads
    assert await published_change_ids(nc) == ["chg-1-0", "chg-2-0", "chg-3-0"]


async def test_after_a_failure_or_too_many_handed_over_rows_the_table_is_the_source(
        nc: NATS, dsn: str) -> None:
    async with outbox_under_watch(nc, dsn) as (connection, publisher, spy):
        await commit(connection, publisher, 1)
        assert await publisher.publish_round(spy) == 1  # drains the table: taking from now
        # Rows 3 and 4 land but their acks are lost: the round fails and the hand-over stops.
        await commit(connection, publisher, 2, 3, 4)
        publisher._sender = LosesAcks(publisher._sender, {1, 2})  # type: ignore[assignment]
        with pytest.raises(TimeoutError):
            await publisher.publish_round(spy)
        await commit(connection, publisher, 5)  # not taken: the table has it
        await publisher.reconcile(spy)  # what run() does after a failure
        reads = spy.reads
        assert await publisher.publish_round(spy) == 1  # 5, read from the table
        assert spy.reads > reads
        # The hand-over resumed with that drain; more rows than it holds stop it again.
        await commit(connection, publisher, *range(6, 6 + HANDED_LIMIT + 1))
        reads = spy.reads
        assert await publisher.publish_round(spy) == HANDED_LIMIT + 1
        assert spy.reads > reads
    assert await published_change_ids(nc) == [f"chg-{n}-0" for n in range(1, 7 + HANDED_LIMIT)]


@pytest.mark.parametrize("atomic_allowed", [True, False])
async def test_a_backlog_goes_as_atomic_batches_once_in_order(
        nc: NATS, dsn: str, atomic_allowed: bool) -> None:
    js = nc.jetstream()
    if not atomic_allowed:  # a stream made before the outbox used batches
        config = TOPOLOGY.changes_config()
        config.allow_atomic = False
        await js.delete_stream(TOPOLOGY.changes_stream)
        await js.add_stream(config)
    connection = await connect(dsn)
    try:
        await migrate(connection, "outbox", fresh=True)

        publisher = outbox_publisher(nc)

        async def add(sequences: range) -> None:
            await add_outbox_rows(connection, sequences)

        spy = LosesCommitAck(publisher._requests)
        publisher._requests = spy  # type: ignore[assignment]
        await add(range(1, 2))
        assert await publisher.publish_pending(connection) == 1  # starts the chain
        total = CHUNK + 2 * ATOMIC_FROM
        await add(range(2, total + 1))
        failures = await _drain(publisher, connection)
        assert await connection.fetchval("SELECT count(*) FROM outbox.change_outbox") == 0
    finally:
        await connection.close()
    assert await published_change_ids(nc) == [f"chg-{n}-0" for n in range(1, total + 1)]
    if atomic_allowed:
        # The first batch (its ack lost: the stream had it all), then the rest in a second.
        assert (spy.commits, failures) == (2, 1)
    else:  # refused once (10174), then message by message
        assert (spy.commits, failures) == (0, 1)
