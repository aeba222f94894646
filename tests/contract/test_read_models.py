"""One contract for every ReadModels adapter: the same events in, the same answers out.

Each test feeds recorded events to an adapter (the in-memory one directly, the PostgreSQL one
through the projector's :class:`BatchApplier` into a private schema) and checks the answers
of the port's queries for every role.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
import pytest

from albatross.adapters.memory_read_models import InMemoryReadModels
from albatross.adapters.postgres.applier import BatchApplier, Poison, checkpoint_channel
from albatross.adapters.postgres.cursors import encode_cursor
from albatross.adapters.postgres.listener import CheckpointListener
from albatross.adapters.postgres.migrations import READER_ROLE, migrate
from albatross.adapters.postgres.pool import connect
from albatross.adapters.postgres.read_models import PostgresReadModels, create_read_pool
from albatross.application.principal import Principal
from albatross.application.views import UserView
from albatross.domain.events import Event
from albatross.domain.pireps import FlightDetails, PirepAccepted, PirepRejected, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyCreated,
    ApiKeyRevoked,
    ApiKeyUsed,
    PasswordChanged,
    PasswordHashSet,
    UserRegistered,
)
from albatross.ports import (
    PLATFORM_SCOPE,
    InvalidCursor,
    Page,
    ReadModels,
    RecordedEvent,
    StreamId,
    UnreadableEvent,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class Harness(Protocol):
    models: ReadModels

    async def feed(self, records: Sequence[RecordedEvent | UnreadableEvent]) -> None: ...

    async def poison(self) -> list[int]: ...


class MemoryHarness:
    def __init__(self) -> None:
        self.memory = InMemoryReadModels()
        self.models: ReadModels = self.memory

    async def feed(self, records: Sequence[RecordedEvent | UnreadableEvent]) -> None:
        for record in records:
            self.memory.apply(record)

    async def poison(self) -> list[int]:
        return sorted(sequence for sequence, _ in self.memory.poison)


class PostgresHarness:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.applier = BatchApplier(schema)
        self.connection: Any = None
        self.pg: PostgresReadModels | None = None

    async def start(self) -> None:
        self.connection = await connect(self.dsn)
        await migrate(self.connection, self.schema)
        # The gateway's pool: every answer below comes through row-level security.
        pool = await create_read_pool(self.dsn, max_size=4)
        listener = CheckpointListener(self.dsn, self.schema, checkpoint_channel(self.schema),
                                      role=READER_ROLE)
        await listener.start()
        self.pg = PostgresReadModels(pool, listener, schema=self.schema, owns_pool=True)
        self.models = self.pg

    async def stop(self) -> None:
        if self.pg is not None:
            await self.pg.close()
        await self.connection.execute(f"DROP SCHEMA {self.schema} CASCADE")
        await self.connection.execute(
            "DELETE FROM public.schema_migrations WHERE schema_name = $1", self.schema)
        await self.connection.close()

    async def feed(self, records: Sequence[RecordedEvent | UnreadableEvent]) -> None:
        batch = [Poison(r.sequence, r.subject, r.reason) if isinstance(r, UnreadableEvent) else r
                 for r in records]
        async with self.connection.transaction():
            await self.applier.apply(self.connection, batch)

    async def poison(self) -> list[int]:
        rows = await self.connection.fetch(
            f"SELECT sequence FROM {self.schema}.poison_events ORDER BY sequence")
        return [row["sequence"] for row in rows]


@pytest.fixture(params=["memory", "postgres"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    dsn: str = request.getfixturevalue("database_url")
    pg = PostgresHarness(dsn, f"rm_test_{uuid.uuid4().hex[:12]}")
    await pg.start()
    try:
        yield pg
    finally:
        await pg.stop()


# A small world ---------------------------------------------------------------------------

class Log:
    """Builds recorded events with increasing sequences (gaps, as secrets leave them)."""

    def __init__(self) -> None:
        self.sequence = 0
        self.clock = T0

    def record(self, stream: StreamId, event: Event, actor: str | None = "actor",
               gap: int = 1) -> RecordedEvent:
        self.sequence += gap
        self.clock += timedelta(seconds=1)
        return RecordedEvent(self.sequence, stream, event, self.clock, actor)


@dataclass
class World:
    log: Log
    records: list[RecordedEvent]

    def principal(self, user_id: str) -> Principal:
        for record in self.records:
            event = record.event
            if isinstance(event, UserRegistered) and event.user_id == user_id:
                return Principal(user_id=user_id, role=event.role, tenant_id=event.tenant_id,
                                 session_id="s")
        raise KeyError(user_id)


def tenant(log: Log, tenant_id: str, icao: str) -> RecordedEvent:
    return log.record(StreamId("tenant", tenant_id, PLATFORM_SCOPE),
                      TenantCreated(tenant_id=tenant_id, name=f"Airline {icao}", icao=icao,
                                    iata=None))


def user(log: Log, user_id: str, role: str, tenant_id: str | None) -> RecordedEvent:
    return log.record(StreamId("user", user_id, tenant_id or PLATFORM_SCOPE),
                      UserRegistered(user_id=user_id, email=f"{user_id}@example.com",
                                     display_name=user_id.upper(), role=role,  # type: ignore[arg-type]
                                     tenant_id=tenant_id, must_change_password=False))


def details(minutes: int = 90) -> FlightDetails:
    return FlightDetails(flight_number="BAW123", departure="EGLL", arrival="LFPG",
                         block_off_at=T0 - timedelta(hours=3),
                         block_on_at=T0 - timedelta(hours=3) + timedelta(minutes=minutes + 10),
                         flight_time_minutes=minutes, fuel_used_kg=2500.5, source="acars")


def submit(log: Log, pirep_id: str, tenant_id: str, pilot_id: str,
           minutes: int = 90) -> RecordedEvent:
    return log.record(StreamId("pirep", pirep_id, tenant_id),
                      PirepSubmitted(pirep_id=pirep_id, tenant_id=tenant_id, pilot_id=pilot_id,
                                     details=details(minutes)), actor=pilot_id)


def review(log: Log, pirep_id: str, tenant_id: str, accept: bool,
           reviewer: str = "ta-a") -> RecordedEvent:
    kind = PirepAccepted if accept else PirepRejected
    return log.record(StreamId("pirep", pirep_id, tenant_id),
                      kind(pirep_id=pirep_id, reviewed_by=reviewer, comment="ok"), actor=reviewer)


def key(log: Log, user_id: str, tenant_id: str | None, key_id: str) -> RecordedEvent:
    return log.record(StreamId("user", user_id, tenant_id or PLATFORM_SCOPE),
                      ApiKeyCreated(user_id=user_id, key_id=key_id, name=f"key {key_id}",
                                    prefix="alb_1234"), gap=2)


def world() -> World:
    log = Log()
    records = [
        tenant(log, "ta", "AAA"), tenant(log, "tb", "BBB"),
        user(log, "pa", "PlatformAdmin", None),
        user(log, "ta-a", "TenantAdmin", "ta"),
        user(log, "p-a1", "Pilot", "ta"), user(log, "p-a2", "Pilot", "ta"),
        user(log, "ta-b", "TenantAdmin", "tb"), user(log, "p-b1", "Pilot", "tb"),
        key(log, "p-a1", "ta", "k-a1-1"), key(log, "p-a1", "ta", "k-a1-2"),
        key(log, "p-a2", "ta", "k-a2-1"),
        submit(log, "r-1", "ta", "p-a1", 60), submit(log, "r-2", "ta", "p-a1", 45),
        submit(log, "r-3", "ta", "p-a2", 30), submit(log, "r-4", "tb", "p-b1", 120),
    ]
    records += [review(log, "r-1", "ta", accept=True), review(log, "r-2", "ta", accept=False),
                review(log, "r-4", "tb", accept=True, reviewer="ta-b")]
    records.append(log.record(StreamId("user", "p-a1", "ta"),
                              ApiKeyRevoked(user_id="p-a1", key_id="k-a1-2")))
    records.append(log.record(StreamId("user", "p-a2", "ta"),
                              PasswordChanged(user_id="p-a2", must_change_password=True)))
    return World(log, records)


async def fed(harness: Harness) -> World:
    w = world()
    await harness.feed(w.records)
    return w


async def walk(fetch: Any, limit: int) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page: Page[Any] = await fetch(limit=limit, cursor=cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


# Tenants ---------------------------------------------------------------------------------

async def test_tenants_are_scoped_by_role(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    everyone = await m.list_tenants(w.principal("pa"), limit=50, cursor=None)
    assert [t.id for t in everyone.items] == ["tb", "ta"]
    assert everyone.next_cursor is None
    for who in ("ta-a", "p-a1"):
        own = await m.list_tenants(w.principal(who), limit=50, cursor=None)
        assert [t.id for t in own.items] == ["ta"]
        assert await m.get_tenant(w.principal(who), "tb") is None
        assert (await m.get_tenant(w.principal(who), "ta")) is not None
    assert await m.get_tenant(w.principal("pa"), "nope") is None


async def test_pilot_count_counts_pilots_only(harness: Harness) -> None:
    w = await fed(harness)
    a = await harness.models.get_tenant(w.principal("pa"), "ta")
    b = await harness.models.get_tenant(w.principal("pa"), "tb")
    assert a is not None
    assert b is not None
    assert (a.pilot_count, b.pilot_count) == (2, 1)
    assert (a.name, a.icao, a.iata, a.created_at) == ("Airline AAA", "AAA", None,
                                                       w.records[0].occurred_at)


# Users -----------------------------------------------------------------------------------

async def test_users_are_scoped_and_a_pilot_sees_no_other_email(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    pa_view = await m.list_users(w.principal("pa"), tenant_id=None, role=None, limit=50,
                                 cursor=None)
    assert [u.id for u in pa_view.items] == ["p-b1", "ta-b", "p-a2", "p-a1", "ta-a", "pa"]
    assert all(u.email is not None for u in pa_view.items)
    ta_view = await m.list_users(w.principal("ta-a"), tenant_id=None, role=None, limit=50,
                                 cursor=None)
    assert [u.id for u in ta_view.items] == ["p-a2", "p-a1", "ta-a"]
    assert all(u.email == f"{u.id}@example.com" for u in ta_view.items)
    pilot_view = await m.list_users(w.principal("p-a1"), tenant_id=None, role=None, limit=50,
                                    cursor=None)
    assert {u.id: u.email for u in pilot_view.items} == {
        "p-a2": None, "p-a1": "p-a1@example.com", "ta-a": None}
    assert await m.get_user(w.principal("p-a1"), "p-b1") is None
    assert await m.get_user(w.principal("ta-a"), "pa") is None
    other = await m.get_user(w.principal("p-a1"), "ta-a")
    assert other is not None
    assert other.email is None
    assert (await m.get_user(w.principal("pa"), "pa")) is not None


async def test_user_filters_by_tenant_and_role(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    pilots_a = await m.list_users(w.principal("pa"), tenant_id="ta", role="Pilot", limit=50,
                                  cursor=None)
    assert [u.id for u in pilots_a.items] == ["p-a2", "p-a1"]
    admins = await m.list_users(w.principal("pa"), tenant_id=None, role="TenantAdmin",
                                limit=50, cursor=None)
    assert [u.id for u in admins.items] == ["ta-b", "ta-a"]
    # Another tenant's filter, asked by a tenant admin: scoping still applies.
    foreign = await m.list_users(w.principal("ta-a"), tenant_id="tb", role=None, limit=50,
                                 cursor=None)
    assert foreign.items == []


async def test_user_view_carries_flight_figures_and_password_flag(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    pilot = await m.get_user(w.principal("pa"), "p-a1")
    assert pilot == UserView(id="p-a1", email="p-a1@example.com", display_name="P-A1",
                             role="Pilot", tenant_id="ta", created_at=w.records[4].occurred_at,
                             must_change_password=False, flight_count=1, flight_minutes=60)
    other = await m.get_user(w.principal("pa"), "p-a2")
    assert other is not None
    assert (other.flight_count, other.flight_minutes, other.must_change_password) == (0, 0, True)
    b1 = await m.get_user(w.principal("pa"), "p-b1")
    assert b1 is not None
    assert (b1.flight_count, b1.flight_minutes) == (1, 120)


# API keys --------------------------------------------------------------------------------

async def test_api_keys_follow_the_role_table(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    own = await m.list_api_keys(w.principal("p-a1"), "p-a1", limit=50, cursor=None)
    assert [k.id for k in own.items] == ["k-a1-2", "k-a1-1"]
    revoked = own.items[0]
    assert revoked.revoked_at is not None
    assert own.items[1].revoked_at is None
    assert revoked.prefix == "alb_1234"
    assert revoked.last_used_at is None
    # A pilot may not list another pilot's keys; a tenant admin may, in their own tenant.
    assert (await m.list_api_keys(w.principal("p-a2"), "p-a1", limit=50, cursor=None)).items == []
    ta = await m.list_api_keys(w.principal("ta-a"), "p-a1", limit=50, cursor=None)
    assert len(ta.items) == 2
    assert (await m.list_api_keys(w.principal("ta-b"), "p-a1", limit=50, cursor=None)).items == []
    pa = await m.list_api_keys(w.principal("pa"), "p-a2", limit=50, cursor=None)
    assert [k.id for k in pa.items] == ["k-a2-1"]


async def test_api_key_use_sets_last_used_at_and_never_moves_it_back(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    stream = StreamId("user", "p-a1", "ta")
    used = T0 + timedelta(minutes=5)
    await harness.feed([
        w.log.record(stream, ApiKeyUsed(user_id="p-a1", key_id="k-a1-1", used_at=used)),
        # A flush from a replica that saw an older use arrives later: it must not win.
        w.log.record(stream, ApiKeyUsed(user_id="p-a1", key_id="k-a1-1",
                                        used_at=used - timedelta(minutes=1))),
    ])
    keys = await m.list_api_keys(w.principal("p-a1"), "p-a1", limit=50, cursor=None)
    by_id = {k.id: k for k in keys.items}
    assert by_id["k-a1-1"].last_used_at == used
    assert by_id["k-a1-2"].last_used_at is None


# PIREPs ----------------------------------------------------------------------------------

async def test_pireps_are_scoped_filtered_and_versioned(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    everything = await m.list_pireps(w.principal("pa"), status=None, pilot_id=None,
                                     tenant_id=None, limit=50, cursor=None)
    assert [p.id for p in everything.items] == ["r-4", "r-3", "r-2", "r-1"]
    in_a = await m.list_pireps(w.principal("p-a2"), status=None, pilot_id=None, tenant_id=None,
                               limit=50, cursor=None)
    assert [p.id for p in in_a.items] == ["r-3", "r-2", "r-1"]
    pending = await m.list_pireps(w.principal("ta-a"), status="pending", pilot_id=None,
                                  tenant_id=None, limit=50, cursor=None)
    assert [p.id for p in pending.items] == ["r-3"]
    by_pilot = await m.list_pireps(w.principal("pa"), status="accepted", pilot_id="p-a1",
                                   tenant_id="ta", limit=50, cursor=None)
    assert [p.id for p in by_pilot.items] == ["r-1"]
    foreign = await m.list_pireps(w.principal("ta-b"), status=None, pilot_id="p-a1",
                                  tenant_id=None, limit=50, cursor=None)
    assert foreign.items == []
    assert await m.get_pirep(w.principal("ta-b"), "r-1") is None
    r1 = await m.get_pirep(w.principal("p-a1"), "r-1")
    accepted = next(r for r in w.records if isinstance(r.event, PirepAccepted)
                    and r.event.pirep_id == "r-1")
    submitted = next(r for r in w.records if isinstance(r.event, PirepSubmitted)
                     and r.event.pirep_id == "r-1")
    assert r1 is not None
    assert (r1.status, r1.version, r1.reviewed_by, r1.review_comment) == (
        "accepted", accepted.sequence, "ta-a", "ok")
    assert (r1.submitted_at, r1.reviewed_at) == (submitted.occurred_at, accepted.occurred_at)
    assert (r1.flight_time_minutes, r1.fuel_used_kg, r1.source) == (60, 2500.5, "acars")
    r3 = await m.get_pirep(w.principal("pa"), "r-3")
    assert r3 is not None
    assert r3.status == "pending"
    assert r3.reviewed_at is None


async def test_history_lists_the_pireps_events_oldest_first(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    history = await m.pirep_history(w.principal("p-a2"), "r-1")
    assert history is not None
    ours = [r for r in w.records if getattr(r.event, "pirep_id", None) == "r-1"]
    assert [(h.sequence, h.type, h.occurred_at, h.actor_id) for h in history] == [
        (r.sequence, r.event.event_type, r.occurred_at, r.actor_id) for r in ours]
    assert history[0].data["details"]["flight_number"] == "BAW123"
    assert history[0].data["details"]["fuel_used_kg"] == 2500.5
    assert history[1].data == {"pirep_id": "r-1", "reviewed_by": "ta-a", "comment": "ok"}
    assert await m.pirep_history(w.principal("ta-b"), "r-1") is None
    assert await m.pirep_history(w.principal("pa"), "missing") is None


# Pagination ------------------------------------------------------------------------------

async def test_pages_walk_every_item_once_newest_first_even_with_inserts(
        harness: Harness) -> None:
    log = Log()
    records = [tenant(log, "t", "TTT"), user(log, "boss", "TenantAdmin", "t")]
    records += [submit(log, f"p-{n:02d}", "t", "boss") for n in range(9)]
    await harness.feed(records)
    boss = Principal(user_id="boss", role="TenantAdmin", tenant_id="t", session_id="s")
    seen: list[str] = []
    cursor = None
    added = 0
    while True:
        page = await harness.models.list_pireps(boss, status=None, pilot_id=None, tenant_id=None,
                                                limit=2, cursor=cursor)
        seen.extend(p.id for p in page.items)
        # Newer PIREPs arrive between page requests: they never shift the walk.
        await harness.feed([submit(log, f"new-{added}", "t", "boss")])
        added += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"p-{n:02d}" for n in reversed(range(9))]
    fresh = await walk(lambda **kw: harness.models.list_pireps(
        boss, status=None, pilot_id=None, tenant_id=None, **kw), limit=4)
    assert len(fresh) == 9 + added
    assert len({p.id for p in fresh}) == len(fresh)


async def test_equal_timestamps_are_ordered_by_id(harness: Harness) -> None:
    log = Log()
    records = [tenant(log, "t", "TTT")]
    stream_time = log.clock + timedelta(seconds=5)
    for n in (3, 1, 2):
        log.sequence += 1
        records.append(RecordedEvent(log.sequence, StreamId("user", f"u{n}", "t"),
                                     UserRegistered(user_id=f"u{n}", email=f"u{n}@x.io",
                                                    display_name="U", role="Pilot",
                                                    tenant_id="t",
                                                    must_change_password=False),
                                     stream_time, None))
    await harness.feed(records)
    pa = Principal(user_id="x", role="PlatformAdmin", tenant_id=None, session_id="s")
    got = await walk(lambda **kw: harness.models.list_users(pa, tenant_id="t", role=None, **kw),
                     limit=1)
    assert [u.id for u in got] == ["u3", "u2", "u1"]


async def test_tampered_or_foreign_cursors_are_refused(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    pa = w.principal("pa")
    page = await m.list_users(pa, tenant_id=None, role=None, limit=2, cursor=None)
    assert page.next_cursor is not None
    good = page.next_cursor
    tampered = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    for bad in (tampered, good[:-4], "not a cursor!", "", "AAAA"):
        with pytest.raises(InvalidCursor):
            await m.list_users(pa, tenant_id=None, role=None, limit=2, cursor=bad)
    with pytest.raises(InvalidCursor):
        await m.list_tenants(pa, limit=2, cursor=good)
    with pytest.raises(InvalidCursor):
        await m.list_users(pa, tenant_id="ta", role=None, limit=2, cursor=good)
    second = await m.list_users(pa, tenant_id=None, role=None, limit=2, cursor=good)
    assert [u.id for u in second.items] == ["p-a2", "p-a1"]
    # Signed right (the digest's key is no secret) but holding an id no list has.
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    list_name, filters, _, _ = msgspec.msgpack.decode(raw[:-8])
    for odd_id in ("p-\x00", "p a", "", "p-\u00e9"):
        forged = encode_cursor(list_name, filters, datetime(2026, 1, 1, tzinfo=UTC), odd_id)
        with pytest.raises(InvalidCursor):
            await m.list_users(pa, tenant_id=None, role=None, limit=2, cursor=forged)


# Exactly-once and poison ------------------------------------------------------------------

async def test_replaying_events_changes_nothing(harness: Harness) -> None:
    w = await fed(harness)
    m = harness.models
    pa = w.principal("pa")
    before = (await m.list_users(pa, tenant_id=None, role=None, limit=50, cursor=None),
              await m.get_tenant(pa, "ta"), await m.pirep_history(pa, "r-1"))
    await harness.feed(w.records)
    await harness.feed(w.records[5:9])
    after = (await m.list_users(pa, tenant_id=None, role=None, limit=50, cursor=None),
             await m.get_tenant(pa, "ta"), await m.pirep_history(pa, "r-1"))
    assert after == before
    assert await m.checkpoint() == w.records[-1].sequence


async def test_unprojectable_events_are_recorded_and_skipped(harness: Harness) -> None:
    w = await fed(harness)
    log = w.log
    orphan = review(log, "ghost", "ta", accept=True)
    unreadable = UnreadableEvent(log.sequence + 1, "albatross.events.ta.pirep.x", "bad json")
    log.sequence += 1
    again = user(log, "p-a1", "Pilot", "ta")
    secret = log.record(StreamId("user", "p-a1", "ta"),
                        PasswordHashSet(user_id="p-a1", password_hash="h"))
    fine = tenant(log, "tc", "CCC")
    await harness.feed([orphan, unreadable, again, fine])
    assert await harness.poison() == [orphan.sequence, unreadable.sequence, again.sequence]
    assert await harness.models.checkpoint() == fine.sequence
    assert secret.sequence < fine.sequence
    pa = w.principal("pa")
    assert (await harness.models.get_tenant(pa, "tc")) is not None
    a = await harness.models.get_tenant(pa, "ta")
    assert a is not None
    assert a.pilot_count == 2


# Read-your-writes ------------------------------------------------------------------------

async def test_wait_for_returns_once_the_checkpoint_is_reached(harness: Harness) -> None:
    log = Log()
    first = tenant(log, "t1", "ONE")
    await harness.feed([first])
    m = harness.models
    assert await m.wait_for(first.sequence, 0.01)
    second = tenant(log, "t2", "TWO")
    waiter = asyncio.create_task(m.wait_for(second.sequence, 5.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await harness.feed([second])
    assert await asyncio.wait_for(waiter, 2.0)
    started = asyncio.get_running_loop().time()
    assert not await m.wait_for(second.sequence + 100, 0.2)
    assert asyncio.get_running_loop().time() - started >= 0.19


# Both adapters agree on a random workload -------------------------------------------------

def random_workload(seed: int) -> list[RecordedEvent]:
    rng = random.Random(seed)
    log = Log()
    records = [tenant(log, f"t{n}", f"T{n}X") for n in range(3)]
    users: list[tuple[str, str | None]] = [("admin", None)]
    records.append(user(log, "admin", "PlatformAdmin", None))
    pending: list[tuple[str, str]] = []
    for n in range(150):
        roll = rng.random()
        if roll < 0.2 or len(users) < 4:
            tid = f"t{rng.randrange(3)}"
            uid = f"u{n:03d}"
            records.append(user(log, uid, rng.choice(["Pilot", "Pilot", "TenantAdmin"]), tid))
            users.append((uid, tid))
        elif roll < 0.6:
            uid, tid = rng.choice(users[1:])
            assert tid is not None
            pid = f"r{n:03d}"
            records.append(submit(log, pid, tid, uid, rng.randrange(10, 300)))
            pending.append((pid, tid))
        elif roll < 0.85 and pending:
            pid, tid = pending.pop(rng.randrange(len(pending)))
            records.append(review(log, pid, tid, accept=rng.random() < 0.7))
        else:
            uid, tid = rng.choice(users)
            records.append(key(log, uid, tid, f"k{n:03d}"))
        if rng.random() < 0.3:
            log.clock -= timedelta(seconds=1)  # equal timestamps happen
    return records


async def answers(models: ReadModels, records: list[RecordedEvent]) -> list[Any]:
    out: list[Any] = []
    principals = [Principal(user_id="admin", role="PlatformAdmin", tenant_id=None,
                            session_id="s")]
    for record in records:
        event = record.event
        if isinstance(event, UserRegistered) and event.tenant_id is not None:
            principals.append(Principal(user_id=event.user_id, role=event.role,
                                        tenant_id=event.tenant_id, session_id="s"))
    for p in principals[:8]:
        out.append(await walk(lambda **kw: models.list_tenants(p, **kw), 2))  # noqa: B023
        for role in (None, "Pilot"):
            out.append(await walk(lambda **kw: models.list_users(
                p, tenant_id=None, role=role, **kw), 7))  # noqa: B023
        for status in (None, "pending", "accepted"):
            out.append(await walk(lambda **kw: models.list_pireps(
                p, status=status, pilot_id=None, tenant_id="t1", **kw), 5))  # noqa: B023
        out.append(await walk(lambda **kw: models.list_api_keys(p, "u010", **kw), 3))  # noqa: B023
    return out


async def test_memory_and_postgres_agree_on_a_random_workload(database_url: str) -> None:
    records = random_workload(7)
    memory = MemoryHarness()
    await memory.feed(records)
    pg = PostgresHarness(database_url, f"rm_test_{uuid.uuid4().hex[:12]}")
    await pg.start()
    try:
        # In uneven batches, as the projector would see them.
        cut = 0
        rng = random.Random(3)
        while cut < len(records):
            step = rng.randrange(1, 40)
            await pg.feed(records[cut:cut + step])
            cut += step
        assert pg.models is not None
        assert await answers(pg.models, records) == await answers(memory.models, records)
    finally:
        await pg.stop()


# PostgreSQL only: the plans -----------------------------------------------------------------

class ExplainingPool:
    """Delegates to a real pool; records the plan of every list query first."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.plans: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    async def fetch(self, sql: str, *args: Any) -> Any:
        if sql.startswith("SELECT") and "LIMIT" in sql:
            async with self.pool.acquire() as connection, connection.transaction():
                # Tiny tables favour sequential scans; the question is whether an index *can*
                # serve the query in its order, without a sort.
                for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    await connection.execute(f"SET LOCAL {setting} = off")
                rows = await connection.fetch("EXPLAIN " + sql, *args)
            self.plans.append("\n".join(r[0] for r in rows))
        return await self.pool.fetch(sql, *args)


async def test_every_list_query_walks_an_index_in_order(database_url: str) -> None:
    """No list query sorts or scans a whole table: each variant has a matching keyset index."""
    pg = PostgresHarness(database_url, f"rm_test_{uuid.uuid4().hex[:12]}")
    await pg.start()
    w = world()
    await pg.feed(w.records)
    assert pg.pg is not None
    explaining = ExplainingPool(pg.pg.pool)
    m = PostgresReadModels(explaining, pg.pg._listener, schema=pg.schema)
    try:
        cursor = (await m.list_users(w.principal("pa"), tenant_id=None, role=None, limit=1,
                                     cursor=None)).next_cursor
        statuses: tuple[Any, ...] = (None, "pending")
        for p in (w.principal("pa"), w.principal("ta-a"), w.principal("p-a1")):
            await m.list_tenants(p, limit=5, cursor=None)
            for tenant_id in (None, "ta"):
                for role in (None, "Pilot"):
                    await m.list_users(p, tenant_id=tenant_id, role=role, limit=5, cursor=None)
                for status in statuses:
                    for pilot in (None, "p-a1"):
                        await m.list_pireps(p, status=status, pilot_id=pilot,
                                            tenant_id=tenant_id, limit=5, cursor=None)
            await m.list_api_keys(p, "p-a1", limit=5, cursor=None)
        await m.list_users(w.principal("pa"), tenant_id=None, role=None, limit=1, cursor=cursor)
    finally:
        await pg.stop()
    assert len(explaining.plans) > 30
    for plan in explaining.plans:
        assert "Sort" not in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Index" in plan, plan


# Input no row can hold ----------------------------------------------------------------------

async def test_an_id_with_a_nul_character_matches_nothing(harness: Harness) -> None:
    """PostgreSQL text cannot hold NUL: such an id names nothing, like any unknown id (a
    statement binding it would be refused by the server, which the gateway answered 500)."""
    w = await fed(harness)
    m = harness.models
    admin = w.principal("pa")
    for bad in ("\x00", "r-1\x00", "p-a1\x00x"):
        assert await m.get_tenant(admin, bad) is None
        assert await m.get_user(admin, bad) is None
        assert await m.get_pirep(admin, bad) is None
        assert await m.pirep_history(admin, bad) is None
        keys = await m.list_api_keys(admin, bad, limit=50, cursor=None)
        assert keys.items == []
        users = await m.list_users(admin, tenant_id=bad, role=None, limit=50, cursor=None)
        assert users.items == []
        pireps = await m.list_pireps(admin, status=None, pilot_id=bad, tenant_id=None,
                                     limit=50, cursor=None)
        assert pireps.items == []
        pireps = await m.list_pireps(admin, status=None, pilot_id=None, tenant_id=bad,
                                     limit=50, cursor=None)
        assert pireps.items == []
    # The same calls with real ids do find what the world holds.
    assert await m.get_pirep(admin, "r-1") is not None
    assert (await m.list_api_keys(admin, "p-a1", limit=50, cursor=None)).items != []


async def test_events_no_row_can_hold_are_poison_in_every_adapter(harness: Harness) -> None:
    """Text with NUL and a flight time past the column's 32 bits (events written around the
    domain): both adapters skip them as poison, and what follows is projected as usual."""
    w = await fed(harness)
    log = w.log
    nul_tenant = log.record(StreamId("tenant", "tn", PLATFORM_SCOPE), TenantCreated(
        tenant_id="tn", name="Nul\x00Air", icao="NUL", iata=None))
    nul_pirep = log.record(StreamId("pirep", "r-n", "ta"), PirepSubmitted(
        pirep_id="r-n", tenant_id="ta", pilot_id="p-a1",
        details=msgspec.structs.replace(details(), remarks="a\x00b")), actor="p-a1")
    huge = log.record(StreamId("pirep", "r-h", "ta"), PirepSubmitted(
        pirep_id="r-h", tenant_id="ta", pilot_id="p-a1",
        details=details(2**31)), actor="p-a1")
    fine = submit(log, "r-f", "ta", "p-a1", 50)
    await harness.feed([nul_tenant, nul_pirep, huge, fine])
    assert await harness.poison() == [nul_tenant.sequence, nul_pirep.sequence, huge.sequence]
    admin = w.principal("pa")
    m = harness.models
    assert await m.get_tenant(admin, "tn") is None
    assert await m.get_pirep(admin, "r-n") is None
    assert await m.get_pirep(admin, "r-h") is None
    got = await m.get_pirep(admin, "r-f")
    assert got is not None
    assert got.flight_time_minutes == 50
