"""The aggregate repository: snapshots make loads cheap but never change an answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from albatross.adapters.codec import EventCodec
from albatross.adapters.memory import InMemoryEventStore, InMemorySnapshotStore
from albatross.application.repository import SNAPSHOT_FORMAT, AggregateRepository, Loaded
from albatross.domain import pireps, users
from albatross.domain.aggregates import PIREP, USER, default_registry
from albatross.ports import (
    AppendRequest,
    Snapshot,
    StoreUnavailable,
    StreamId,
    WrongExpectedVersion,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class CountingStore(InMemoryEventStore):
    """Counts full loads, to tell the snapshot path from a replay."""

    def __init__(self) -> None:
        super().__init__(EventCodec(default_registry()))
        self.loads: list[int] = []

    async def load(self, stream: StreamId, after: int = 0):  # type: ignore[no-untyped-def]
        self.loads.append(after)
        return await super().load(stream, after)


def register(user_id: str) -> users.RegisterUser:
    return users.RegisterUser(user_id=user_id, email=f"{user_id}@example.com",
                              display_name="Pilot", role="Pilot", tenant_id="t1",
                              password_hash="hash")


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def snapshots() -> InMemorySnapshotStore:
    return InMemorySnapshotStore()


@pytest.fixture
def repo(store: CountingStore,
         snapshots: InMemorySnapshotStore) -> AggregateRepository[users.User]:
    return AggregateRepository(USER, store, snapshots)


async def test_a_fresh_snapshot_answers_without_reading_events(
        repo: AggregateRepository[users.User], store: CountingStore) -> None:
    stream = repo.stream("u1", "t1")
    result = await repo.execute(stream, lambda s: users.decide_register(s, register("u1")),
                                occurred_at=NOW, actor_id="admin")
    store.loads.clear()
    loaded = await repo.load(stream)
    assert store.loads == []
    assert loaded.version == result.sequence
    assert loaded.state is not None
    assert loaded.state.password_hash == "hash"


async def test_a_stale_snapshot_is_completed_with_only_the_newer_events(
        repo: AggregateRepository[users.User], store: CountingStore,
        snapshots: InMemorySnapshotStore) -> None:
    stream = repo.stream("u2", "t1")
    first = await repo.execute(stream, lambda s: users.decide_register(s, register("u2")),
                               occurred_at=NOW, actor_id="admin")
    # Another writer appends without updating the snapshot (or its put was lost).
    events = users.decide_create_api_key((await repo.load(stream)).state, users.CreateApiKey(
        key_id="k1", name="acars", prefix="alb_abcd", key_hash="kh"))
    await store.append(AppendRequest(stream, events, expected_version=first.sequence,
                                     occurred_at=NOW, actor_id="u2"))
    store.loads.clear()
    loaded = await repo.load(stream)
    assert store.loads == [first.sequence]
    assert loaded.state is not None
    assert loaded.state.api_keys["k1"].key_hash == "kh"
    assert loaded.version == await store.version(stream)


async def test_a_corrupt_snapshot_falls_back_to_a_full_replay(
        repo: AggregateRepository[users.User], store: CountingStore,
        snapshots: InMemorySnapshotStore) -> None:
    stream = repo.stream("u3", "t1")
    result = await repo.execute(stream, lambda s: users.decide_register(s, register("u3")),
                                occurred_at=NOW, actor_id="admin")
    snapshots._snapshots[f"v{SNAPSHOT_FORMAT}." + stream.key] = Snapshot(result.sequence,
                                                                          b"\xc1garbage")
    store.loads.clear()
    loaded = await repo.load(stream)
    assert store.loads == [0]
    assert loaded.state is not None
    assert loaded.state.email == "u3@example.com"


async def test_append_checks_the_loaded_version(
        repo: AggregateRepository[users.User]) -> None:
    stream = repo.stream("u4", "t1")
    await repo.execute(stream, lambda s: users.decide_register(s, register("u4")),
                       occurred_at=NOW, actor_id="admin")
    stale: Loaded[users.User] = Loaded(stream, None, 0)
    with pytest.raises(WrongExpectedVersion):
        await repo.append(stale, users.decide_register(None, register("u4")), occurred_at=NOW,
                          actor_id="admin")


async def test_execute_decides_again_after_a_concurrent_write(
        repo: AggregateRepository[users.User], store: CountingStore) -> None:
    stream = repo.stream("u5", "t1")
    await repo.execute(stream, lambda s: users.decide_register(s, register("u5")),
                       occurred_at=NOW, actor_id="admin")
    calls = 0

    def decide(state: users.User | None) -> list[users.Event]:
        nonlocal calls
        calls += 1
        return users.decide_create_api_key(state, users.CreateApiKey(
            key_id=f"k{calls}", name="n", prefix="alb_x", key_hash="h"))

    original_append = store.append

    async def racing_append(request: AppendRequest):  # type: ignore[no-untyped-def]
        if calls == 1:
            # Someone else writes between this command's load and its append.
            await original_append(AppendRequest(
                stream, [users.ApiKeyCreated(user_id="u5", key_id="other", name="o",
                                             prefix="alb_o")],
                expected_version=None, occurred_at=NOW))
        return await original_append(request)

    store.append = racing_append  # type: ignore[method-assign]
    await repo.execute(stream, decide, occurred_at=NOW, actor_id="u5")
    loaded = await repo.load(stream)
    assert calls == 2
    assert loaded.state is not None
    assert set(loaded.state.api_keys) == {"other", "k2"}


async def test_a_snapshot_of_an_older_format_is_ignored(
        repo: AggregateRepository[users.User], store: CountingStore,
        snapshots: InMemorySnapshotStore) -> None:
    stream = repo.stream("u4", "t1")
    result = await repo.execute(stream, lambda s: users.decide_register(s, register("u4")),
                                occurred_at=NOW, actor_id="admin")
    current = snapshots._snapshots.pop(f"v{SNAPSHOT_FORMAT}." + stream.key)
    # A state written before the format changed: fields it lacks would decode as defaults.
    snapshots._snapshots[f"v{SNAPSHOT_FORMAT - 1}." + stream.key] = current
    store.loads.clear()
    loaded = await repo.load(stream)
    assert store.loads == [0]  # replayed from the events, not taken from the old snapshot
    assert loaded.version == result.sequence


async def test_a_one_event_history_writes_no_snapshot_and_the_next_append_does(
        store: CountingStore, snapshots: InMemorySnapshotStore) -> None:
    repo = AggregateRepository(PIREP, store, snapshots)
    stream = repo.stream("p1", "t1")
    details = pireps.FlightDetails(flight_number="BAW1", departure="EGLL", arrival="KJFK",
                                   block_off_at=NOW - timedelta(hours=8),
                                   block_on_at=NOW - timedelta(minutes=5),
                                   flight_time_minutes=475)
    submitted = await repo.append(Loaded(stream, None, 0), pireps.decide_submit(
        None, pireps.SubmitPirep(pirep_id="p1", tenant_id="t1", pilot_id="u1",
                                 details=details, now=NOW)), occurred_at=NOW, actor_id="u1")
    # Reading one event from the stream costs what reading a snapshot would.
    assert snapshots._snapshots == {}
    store.loads.clear()
    loaded = await repo.load(stream)
    assert store.loads == [0]
    assert loaded.unsnapshotted == 1
    assert loaded.state is not None
    assert loaded.state.status == "pending"
    reviewed = await repo.append(loaded, pireps.decide_review(loaded.state, pireps.ReviewPirep(
        decision="accept", reviewer_id="admin")), occurred_at=NOW, actor_id="admin")
    snapshot = snapshots._snapshots[f"v{SNAPSHOT_FORMAT}." + stream.key]
    assert snapshot.version == reviewed.sequence > submitted.sequence
    store.loads.clear()
    again = await repo.load(stream)
    assert store.loads == []  # answered by the snapshot alone
    assert again.state is not None
    assert again.state.status == "accepted"
    assert again.version == reviewed.sequence


class FailingSnapshots(InMemorySnapshotStore):
    """The snapshot bucket went away right after the append's ack."""

    async def put(self, key: str, snapshot: Snapshot) -> None:
        raise StoreUnavailable("no answer from the snapshot bucket")


async def test_a_snapshot_that_cannot_be_stored_does_not_fail_the_written_command(
        store: CountingStore) -> None:
    repo = AggregateRepository(PIREP, store, FailingSnapshots())
    stream = repo.stream("p1", "t1")
    details = pireps.FlightDetails(flight_number="BAW1", departure="EGLL", arrival="KJFK",
                                   block_off_at=NOW - timedelta(hours=8),
                                   block_on_at=NOW - timedelta(minutes=5),
                                   flight_time_minutes=475)
    await repo.append(Loaded(stream, None, 0), pireps.decide_submit(
        None, pireps.SubmitPirep(pirep_id="p1", tenant_id="t1", pilot_id="u1",
                                 details=details, now=NOW)), occurred_at=NOW, actor_id="u1")
    loaded = await repo.load(stream)
    assert loaded.state is not None
    # The second event is where a snapshot is due: its store fails, the review stands.
    reviewed = await repo.append(loaded, pireps.decide_review(loaded.state, pireps.ReviewPirep(
        decision="reject", reviewer_id="admin")), occurred_at=NOW, actor_id="admin")
    again = await repo.load(stream)
    assert again.version == reviewed.sequence
    assert again.state is not None
    assert again.state.status == "rejected"
