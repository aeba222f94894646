"""Reads while nats-server is down fail at once and leave nothing buffered for later."""

from __future__ import annotations

import time

import pytest

from albatross.adapters.jetstream.credentials import JetStreamClaimLookup
from albatross.adapters.jetstream.requests import NotConnected
from albatross.adapters.jetstream.snapshots import JetStreamSnapshotStore
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.infra.nats_server import NatsServer
from albatross.ports import Claim, Snapshot, StoreUnavailable
from tests.infra_fixtures import reconnecting_client, until

pytestmark = pytest.mark.slow


async def test_claim_and_snapshot_reads_while_reconnecting_fail_fast_and_send_nothing(
        fresh_nats: NatsServer) -> None:
    # Through nats-py's request a read would sit in the client's buffer for its whole timeout
    # (2 s here), holding the request that waits for it, and go out on reconnection.
    nc = await reconnecting_client(fresh_nats)
    try:
        topology = Topology()
        await ensure_topology(nc.jetstream(), topology)
        claims = JetStreamClaimLookup(nc, topology.events_stream)
        snapshots = JetStreamSnapshotStore(nc, topology.snapshots_bucket)
        await snapshots.put("user.u1", Snapshot(3, b"state"))
        await nc.flush()
        assert await snapshots.get("user.u1") == Snapshot(3, b"state")
        assert await claims.holder(Claim("email", "nobody@example.com")) is None
        fresh_nats.kill()
        await until(lambda: nc.is_reconnecting)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="NotConnected"):
            await claims.holder(Claim("email", "nobody@example.com"))
        with pytest.raises(NotConnected):
            await snapshots.get("user.u1")
        assert time.monotonic() - started < 0.5
        assert nc.pending_data_size < 100  # pings at most, no read
        await fresh_nats.restart()
        await until(lambda: nc.is_connected)
        assert await snapshots.get("user.u1") == Snapshot(3, b"state")
    finally:
        await nc.close()
