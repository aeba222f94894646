"""Messages written before the append id and batch offset moved into ``Nats-Msg-Id`` alone.

Older appends restated both parts of ``Nats-Msg-Id`` in ``Albatross-Append-Id`` and
``Albatross-Batch-Offset``; the store no longer writes them but must keep reading, extending
and recognising (for retries) the histories that carry them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import nats
import pytest

from albatross.adapters.codec import EventCodec, event_subject, stream_filter
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.domain.aggregates import default_registry
from albatross.domain.users import ApiKeyCreated
from albatross.ports import AppendRequest, StreamId

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def key_created(user_id: str, n: int) -> ApiKeyCreated:
    return ApiKeyCreated(user_id=user_id, key_id=f"k{n}", name=f"key {n}", prefix="alb_abcd")


async def test_a_legacy_two_event_append_is_loaded_extended_and_recognised_on_retry(
        nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        topology = Topology()
        js = nc.jetstream()
        await ensure_topology(js, topology)
        codec = EventCodec(default_registry())
        store = JetStreamEventStore(nc, codec, topology.events_stream)
        stream = StreamId("user", uuid.uuid4().hex, "t1")
        legacy_id = uuid.uuid4().hex
        legacy = [key_created(stream.aggregate_id, n) for n in range(2)]
        for offset, event in enumerate(legacy):
            # Written the old way: one message at a time, both parts restated in headers.
            await js.publish(event_subject(stream, event), codec.encode(event, NOW, "a"),
                             stream=topology.events_stream, headers={
                                 "Albatross-Event-Type": event.event_type,
                                 "Nats-Msg-Id": f"{legacy_id}:{offset}",
                                 "Albatross-Append-Id": legacy_id, "Albatross-Prev-Seq": "0",
                                 "Albatross-Batch-Offset": str(offset)})
        loaded = await store.load(stream)
        assert [r.event for r in loaded] == legacy

        newer = await store.append(AppendRequest(
            stream, [key_created(stream.aggregate_id, 2), key_created(stream.aggregate_id, 3)],
            expected_version=loaded[-1].sequence, occurred_at=NOW, actor_id="a"))
        last = await js.get_last_msg(topology.events_stream, stream_filter(stream))
        assert last.headers is not None
        assert "Albatross-Append-Id" not in last.headers
        assert "Albatross-Batch-Offset" not in last.headers
        everything = await store.load(stream)
        assert [r.event.key_id for r in everything  # type: ignore[attr-defined]
                ] == ["k0", "k1", "k2", "k3"]
        assert everything[-1].sequence == newer.sequence

        # A retry of the legacy append (same idempotency key, stale version) finds it.
        retried = await store.append(AppendRequest(
            stream, legacy, expected_version=0, occurred_at=NOW, actor_id="a",
            idempotency_key=legacy_id))
        assert retried.duplicate
        assert retried.sequence == loaded[-1].sequence
    finally:
        await nc.close()


@pytest.mark.parametrize("events", [1, 3])
async def test_a_new_append_is_recognised_on_retry_from_its_message_ids(
        nats_url: str, events: int) -> None:
    nc = await nats.connect(nats_url)
    try:
        topology = Topology()
        await ensure_topology(nc.jetstream(), topology)
        store = JetStreamEventStore(nc, EventCodec(default_registry()), topology.events_stream)
        stream = StreamId("user", uuid.uuid4().hex, "t1")
        request = AppendRequest(stream, [key_created(stream.aggregate_id, n)
                                         for n in range(events)],
                                expected_version=0, occurred_at=NOW, actor_id="a",
                                idempotency_key="retry-" + uuid.uuid4().hex)
        first = await store.append(request)
        # Another writer appends on top, so the retry's version check fails first.
        await store.append(AppendRequest(stream, [key_created(stream.aggregate_id, 9)],
                                         expected_version=first.sequence, occurred_at=NOW,
                                         actor_id="b"))
        again = await store.append(request)
        assert again.duplicate
        assert again.sequence == first.sequence
        assert len(await store.load(stream)) == events + 1
    finally:
        await nc.close()
