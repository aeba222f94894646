"""One contract for every SnapshotStore adapter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from albatross.adapters.jetstream.snapshots import JetStreamSnapshotStore
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.adapters.memory import InMemorySnapshotStore
from albatross.ports import Snapshot, SnapshotStore


@pytest.fixture(params=["memory", "jetstream"])
async def snapshots(request: pytest.FixtureRequest) -> AsyncIterator[SnapshotStore]:
    if request.param == "memory":
        yield InMemorySnapshotStore()
        return
    nc = await nats.connect(request.getfixturevalue("nats_url"))
    topology = Topology()
    await ensure_topology(nc.jetstream(), topology)
    try:
        yield JetStreamSnapshotStore(nc, topology.snapshots_bucket)
    finally:
        await nc.close()


async def eventually(snapshots: SnapshotStore, key: str, version: int) -> Snapshot | None:
    # JetStream puts are fire-and-forget; give the server a moment to store them.
    for _ in range(100):
        found = await snapshots.get(key)
        if found is not None and found.version == version:
            return found
        await asyncio.sleep(0.01)
    return await snapshots.get(key)


async def test_a_missing_key_has_no_snapshot(snapshots: SnapshotStore) -> None:
    assert await snapshots.get(f"v1.{uuid.uuid4().hex}") is None


async def test_put_then_get_returns_the_latest_snapshot(snapshots: SnapshotStore) -> None:
    key = f"v1.t.user.{uuid.uuid4().hex}"
    await snapshots.put(key, Snapshot(version=3, state=b"\x01\x02"))
    await snapshots.put(key, Snapshot(version=7, state=b"\x03"))
    found = await eventually(snapshots, key, 7)
    assert found == Snapshot(version=7, state=b"\x03")


async def test_keys_do_not_mix(snapshots: SnapshotStore) -> None:
    a, b = f"v1.t.user.{uuid.uuid4().hex}", f"v1.t.user.{uuid.uuid4().hex}"
    await snapshots.put(a, Snapshot(version=1, state=b"a"))
    await snapshots.put(b, Snapshot(version=2, state=b"b"))
    assert (await eventually(snapshots, a, 1)) == Snapshot(1, b"a")
    assert (await eventually(snapshots, b, 2)) == Snapshot(2, b"b")
