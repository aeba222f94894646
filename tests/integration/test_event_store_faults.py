"""The JetStream event store under a crashing server: all or nothing, and nothing acked lost."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client as NATS

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.domain.aggregates import default_registry
from albatross.domain.users import ApiKeyCreated
from albatross.infra.nats_server import NatsServer
from albatross.ports import AppendRequest, StoreUnavailable, StreamId

pytestmark = pytest.mark.slow
EVENTS_PER_APPEND = 300


def big_append(stream: StreamId) -> AppendRequest:
    events = [ApiKeyCreated(user_id=stream.aggregate_id, key_id=f"k{n}", name=f"key {n}",
                            prefix="alb_abcd") for n in range(EVENTS_PER_APPEND)]
    return AppendRequest(stream=stream, events=events, expected_version=0,
                         occurred_at=datetime.now(UTC), actor_id="a")


async def connect(url: str) -> NATS:
    return await nats.connect(url, allow_reconnect=False, connect_timeout=2)


async def open_store(server: NatsServer, *,
                     request_timeout: float = 1.0) -> tuple[NATS, JetStreamEventStore]:
    nc = await connect(server.url)
    topology = Topology()
    await ensure_topology(nc.jetstream(), topology)
    store = JetStreamEventStore(nc, EventCodec(default_registry()), topology.events_stream,
                                deadline=0.5, request_timeout=request_timeout)
    return nc, store


async def close_quietly(nc: NATS) -> None:
    # The server is gone: there is nothing left to flush.
    with contextlib.suppress(Exception):
        await nc.close()


async def count_landed(server: NatsServer, streams: list[StreamId]) -> dict[StreamId, int]:
    # The count comes right after a restart of a SIGKILLed server, whose first reads of its
    # blocks can be slow on a busy machine (one CI run: a Direct Get of a 300-message group
    # past 1 s): the check waits for answers; only the appends under test use short timeouts.
    nc, store = await open_store(server, request_timeout=10.0)
    try:
        return {s: len(await store.load(s)) for s in streams}
    finally:
        await nc.close()


async def test_sigkill_before_the_commit_leaves_none_of_a_batch(fresh_nats: NatsServer) -> None:
    nc, store = await open_store(fresh_nats)
    stream = StreamId("user", uuid.uuid4().hex, "t1")
    real_publish = nc.publish
    sent = 0

    async def publish_then_crash(*args: object, **kwargs: object) -> None:
        nonlocal sent
        sent += 1
        await real_publish(*args, **kwargs)  # type: ignore[arg-type]
        if sent == EVENTS_PER_APPEND // 2:
            await nc.flush()
            fresh_nats.kill()

    nc.publish = publish_then_crash  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await store.append(big_append(stream))
    await close_quietly(nc)
    await fresh_nats.restart()
    assert sent >= EVENTS_PER_APPEND // 2
    assert await count_landed(fresh_nats, [stream]) == {stream: 0}


async def test_sigkill_at_random_moments_leaves_all_or_none_and_keeps_acked(
        fresh_nats: NatsServer) -> None:
    # A 300-event append takes ~30 ms here: kill before, during and after it; the last delay
    # is long enough for the append to be acknowledged first.
    rng = random.Random(20261126)
    delays = [rng.uniform(0.0, 0.06) for _ in range(7)] + [0.5]
    acked: list[StreamId] = []
    tried: list[StreamId] = []
    for delay in delays:
        nc, store = await open_store(fresh_nats)
        stream = StreamId("user", uuid.uuid4().hex, "t1")
        tried.append(stream)
        task = asyncio.create_task(store.append(big_append(stream)))
        await asyncio.sleep(delay)
        fresh_nats.kill()
        try:
            await task
            acked.append(stream)
        except StoreUnavailable:
            pass  # a crash may fail the append: what landed is checked below
        await close_quietly(nc)
        await fresh_nats.restart()
    landed = await count_landed(fresh_nats, tried)
    assert all(n in (0, EVENTS_PER_APPEND) for n in landed.values()), landed
    # sync_interval: always: what was acknowledged before the SIGKILL is on disk.
    assert acked, "no append was acknowledged: the test proved nothing about durability"
    assert all(landed[s] == EVENTS_PER_APPEND for s in acked)
