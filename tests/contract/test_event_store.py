"""One contract for every EventStore adapter: in-memory and JetStream run the same tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.adapters.memory import InMemoryEventStore
from albatross.domain.aggregates import default_registry
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import ApiKeyCreated, ApiKeyHashIssued, PasswordHashSet, UserRegistered
from albatross.ports import (
    AppendRequest,
    Claim,
    ClaimTaken,
    EventStore,
    RecordedEvent,
    StreamId,
    UnreadableEvent,
    WrongExpectedVersion,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def codec() -> EventCodec:
    return EventCodec(default_registry())


@pytest.fixture(params=["memory", "jetstream"])
async def store(request: pytest.FixtureRequest, codec: EventCodec) -> AsyncIterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore(codec)
        return
    nats_url: str = request.getfixturevalue("nats_url")
    nc = await nats.connect(nats_url)
    topology = Topology()
    await ensure_topology(nc.jetstream(), topology)
    try:
        yield JetStreamEventStore(nc, codec, topology.events_stream)
    finally:
        await nc.close()


def new_stream(aggregate: str = "user", scope: str | None = None) -> StreamId:
    return StreamId(aggregate, uuid.uuid4().hex, scope or uuid.uuid4().hex)


def registered(stream: StreamId, email: str = "pilot@example.com") -> UserRegistered:
    return UserRegistered(user_id=stream.aggregate_id, email=email, display_name="P",
                          role="Pilot", tenant_id=stream.scope, must_change_password=False)


def key_created(stream: StreamId, n: int) -> ApiKeyCreated:
    return ApiKeyCreated(user_id=stream.aggregate_id, key_id=f"k{n}", name=f"key {n}",
                         prefix="alb_abcd")


def request(stream: StreamId, *events: object, expected: int | None, key: str | None = None,
            claims: tuple[Claim, ...] = ()) -> AppendRequest:
    return AppendRequest(stream=stream, events=list(events),  # type: ignore[arg-type]
                         expected_version=expected, occurred_at=NOW, actor_id="actor-1",
                         idempotency_key=key, claims=claims)


async def test_a_new_stream_has_version_zero_and_no_events(store: EventStore) -> None:
    stream = new_stream()
    assert await store.version(stream) == 0
    assert await store.load(stream) == []


async def test_append_then_load_returns_events_in_order_with_metadata(store: EventStore) -> None:
    stream = new_stream()
    first = await store.append(request(stream, registered(stream), expected=0))
    second = await store.append(request(stream, key_created(stream, 1), expected=first.sequence))
    assert second.sequence > first.sequence
    assert await store.version(stream) == second.sequence
    loaded = await store.load(stream)
    assert [r.event for r in loaded] == [registered(stream), key_created(stream, 1)]
    assert [r.sequence for r in loaded] == [first.sequence, second.sequence]
    assert all(r.occurred_at == NOW and r.actor_id == "actor-1" and r.stream == stream
               for r in loaded)


async def test_load_after_a_version_returns_only_newer_events(store: EventStore) -> None:
    stream = new_stream()
    first = await store.append(request(stream, registered(stream), expected=0))
    await store.append(request(stream, key_created(stream, 1), key_created(stream, 2),
                               expected=first.sequence))
    newer = await store.load(stream, after=first.sequence)
    assert [r.event for r in newer] == [key_created(stream, 1), key_created(stream, 2)]


async def test_several_events_land_together_across_public_and_secret_subjects(
        store: EventStore) -> None:
    stream = new_stream()
    events = [registered(stream), PasswordHashSet(user_id=stream.aggregate_id, password_hash="h"),
              key_created(stream, 1),
              ApiKeyHashIssued(user_id=stream.aggregate_id, key_id="k1", key_hash="kh")]
    result = await store.append(request(stream, *events, expected=0))
    loaded = await store.load(stream)
    assert [r.event for r in loaded] == events
    sequences = [r.sequence for r in loaded]
    assert sequences == list(range(sequences[0], sequences[0] + 4))
    assert result.sequence == sequences[-1]
    # The last public event is ApiKeyCreated, the third.
    assert result.public_sequence == sequences[2]


async def test_a_stale_or_wrong_expected_version_is_refused_and_writes_nothing(
        store: EventStore) -> None:
    stream = new_stream()
    first = await store.append(request(stream, registered(stream), expected=0))
    before = await store.last_sequence()
    with pytest.raises(WrongExpectedVersion):
        await store.append(request(stream, key_created(stream, 1), expected=0))
    with pytest.raises(WrongExpectedVersion):
        await store.append(request(stream, key_created(stream, 1), expected=first.sequence + 99))
    assert await store.last_sequence() == before
    assert await store.version(stream) == first.sequence


async def test_unchecked_append_goes_after_the_current_head(store: EventStore) -> None:
    stream = new_stream()
    await store.append(request(stream, registered(stream), expected=0))
    result = await store.append(request(stream, key_created(stream, 1), expected=None))
    assert await store.version(stream) == result.sequence
    assert len(await store.load(stream)) == 2


async def test_fifty_concurrent_appends_at_one_version_exactly_one_wins(store: EventStore) -> None:
    stream = new_stream()
    base = await store.append(request(stream, registered(stream), expected=0))
    before = await store.last_sequence()
    outcomes = await asyncio.gather(
        *(store.append(request(stream, key_created(stream, n), expected=base.sequence))
          for n in range(50)), return_exceptions=True)
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(o, WrongExpectedVersion) for o in outcomes if o not in wins)
    assert await store.last_sequence() == before + 1
    assert len(await store.load(stream)) == 2


async def test_twenty_concurrent_claims_of_one_email_exactly_one_lands(store: EventStore) -> None:
    email = f"{uuid.uuid4().hex}@example.com"
    scope = uuid.uuid4().hex
    streams = [new_stream(scope=scope) for _ in range(20)]
    before = await store.last_sequence()
    outcomes = await asyncio.gather(
        *(store.append(request(s, registered(s, email), expected=0,
                               claims=(Claim("email", email),))) for s in streams),
        return_exceptions=True)
    winners = [s for s, o in zip(streams, outcomes, strict=True)
               if not isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, ClaimTaken) for o in outcomes if isinstance(o, BaseException))
    # The one registration and its claim: nothing of the losers was stored.
    assert await store.last_sequence() == before + 2
    for s in streams:
        assert len(await store.load(s)) == (1 if s in winners else 0)


async def test_a_taken_claim_refuses_the_whole_append(store: EventStore) -> None:
    claim = Claim("icao", uuid.uuid4().hex[:3].upper())
    owner, other = new_stream("tenant"), new_stream("tenant")
    event = TenantCreated(tenant_id="t", name="n", icao="ABC", iata=None)
    await store.append(request(owner, event, expected=0, claims=(claim,)))
    with pytest.raises(ClaimTaken) as refused:
        await store.append(request(other, event, expected=0, claims=(claim,)))
    assert refused.value.claim == claim
    assert await store.version(other) == 0


async def test_retrying_with_the_same_idempotency_key_returns_the_original(
        store: EventStore) -> None:
    stream = new_stream()
    key = uuid.uuid4().hex
    first = await store.append(request(stream, registered(stream), expected=0, key=key))
    before = await store.last_sequence()
    # Same key, same expected version: on a single-replica JetStream the server answers
    # "wrong last sequence" (10071), not "duplicate"; the store must still see the retry.
    retry = await store.append(request(stream, registered(stream), expected=0, key=key))
    assert retry.sequence == first.sequence
    assert retry.public_sequence == first.public_sequence
    assert retry.duplicate
    assert await store.last_sequence() == before
    assert len(await store.load(stream)) == 1


@pytest.mark.parametrize("key", ["abc\n", "a b", "", "k" * 101, "caf\u00e9"])
async def test_an_idempotency_key_outside_its_alphabet_is_refused(store: EventStore,
                                                                    key: str) -> None:
    stream = new_stream()
    with pytest.raises(ValueError, match="idempotency keys"):
        await store.append(request(stream, registered(stream), expected=0, key=key))
    assert await store.version(stream) == 0


async def test_retrying_a_multi_event_append_with_claims_returns_the_original(
        store: EventStore) -> None:
    stream = new_stream()
    key = uuid.uuid4().hex
    claim = Claim("email", f"{key}@example.com")
    events = (registered(stream), PasswordHashSet(user_id=stream.aggregate_id, password_hash="h"))
    first = await store.append(request(stream, *events, expected=0, key=key, claims=(claim,)))
    before = await store.last_sequence()
    retry = await store.append(request(stream, *events, expected=0, key=key, claims=(claim,)))
    assert (retry.sequence, retry.public_sequence) == (first.sequence, first.public_sequence)
    assert retry.duplicate
    assert await store.last_sequence() == before


async def test_a_retry_is_recognised_after_the_stream_moved_on(store: EventStore) -> None:
    stream = new_stream()
    key = uuid.uuid4().hex
    first = await store.append(request(stream, registered(stream), expected=0, key=key))
    await store.append(request(stream, key_created(stream, 1), expected=first.sequence))
    retry = await store.append(request(stream, registered(stream), expected=0, key=key))
    assert retry.sequence == first.sequence
    assert retry.duplicate
    assert len(await store.load(stream)) == 2


async def test_interleaved_streams_load_only_their_own_events(store: EventStore) -> None:
    a, b = new_stream(), new_stream()
    version = {a: 0, b: 0}
    for n in range(6):
        for s in (a, b):
            event = registered(s) if n == 0 else key_created(s, n)
            version[s] = (await store.append(request(s, event, expected=version[s]))).sequence
    for s in (a, b):
        loaded = await store.load(s)
        assert len(loaded) == 6
        assert all(r.stream == s for r in loaded)
        assert loaded[-1].sequence == version[s]


async def test_read_after_returns_every_event_in_store_order(store: EventStore) -> None:
    start = await store.last_sequence()
    stream = new_stream()
    first = await store.append(request(stream, registered(stream), expected=0))
    await store.append(request(stream, key_created(stream, 1), key_created(stream, 2),
                               expected=first.sequence))
    read = await store.read_after(start, limit=100)
    assert all(isinstance(r, RecordedEvent) for r in read)
    ours = [r for r in read if isinstance(r, RecordedEvent) and r.stream == stream]
    assert [r.event for r in ours] == [registered(stream), key_created(stream, 1),
                                       key_created(stream, 2)]
    sequences = [r.sequence for r in read]
    assert sequences == sorted(sequences)
    assert sequences[0] > start
    limited = await store.read_after(start, limit=2)
    assert [r.sequence for r in limited] == sequences[:2]
    assert await store.read_after(await store.last_sequence(), limit=10) == []


async def test_read_after_reports_an_unreadable_message_instead_of_failing(
        store: EventStore, request: pytest.FixtureRequest) -> None:
    stream = new_stream()
    start = await store.last_sequence()
    subject = f"albatross.events.{stream.key}"
    if isinstance(store, InMemoryEventStore):
        store.inject_raw(subject, stream, b"{not json")
    else:
        nc = await nats.connect(request.getfixturevalue("nats_url"))
        await nc.jetstream().publish(subject, b"{not json")
        await nc.close()
    await store.append(request_for_after_poison(stream))
    read = await store.read_after(start, limit=10)
    assert isinstance(read[0], UnreadableEvent)
    assert read[0].subject == subject
    assert isinstance(read[1], RecordedEvent)


def request_for_after_poison(stream: StreamId) -> AppendRequest:
    other = StreamId(stream.aggregate, uuid.uuid4().hex, stream.scope)
    return request(other, registered(other), expected=0)


async def test_ids_that_could_inject_subject_wildcards_are_refused() -> None:
    from albatross.ports import InvalidStreamId
    for bad in ("a.b", "*", ">", "a b", "", "x" * 65):
        with pytest.raises(InvalidStreamId):
            StreamId("user", bad, "platform")
