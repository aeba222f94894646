"""The key-value adapter while nats-server is down: a refused write never lands later."""

from __future__ import annotations

import pytest

from albatross.adapters.jetstream.sessions import JetStreamKeyValue
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.infra.nats_server import NatsServer
from albatross.ports import StoreUnavailable
from tests.infra_fixtures import reconnecting_client, until

pytestmark = pytest.mark.slow


async def test_writes_while_reconnecting_are_refused_and_never_sent_later(
        fresh_nats: NatsServer) -> None:
    # nats-py buffers publishes between connections and sends them on reconnection: a logout
    # answered 503 would otherwise take effect later, and a login leave a session behind.
    nc = await reconnecting_client(fresh_nats)
    try:
        topology = Topology()
        await ensure_topology(nc.jetstream(), topology)
        sessions = await JetStreamKeyValue.open(nc, topology.sessions_bucket)
        assert await sessions.create("kept", b"session") is not None
        fresh_nats.kill()
        await until(lambda: nc.is_reconnecting)
        with pytest.raises(StoreUnavailable, match="nothing sent"):
            await sessions.delete("kept")
        with pytest.raises(StoreUnavailable, match="nothing sent"):
            await sessions.create("orphan", b"session")
        with pytest.raises(StoreUnavailable, match="nothing sent"):
            await sessions.update("kept", b"changed", 1)
        assert nc.pending_data_size < 100  # pings at most, no write
        await fresh_nats.restart()
        await until(lambda: nc.is_connected)
        await nc.flush()
        kept = await sessions.get("kept")
        assert kept is not None
        assert kept.value == b"session"
        assert await sessions.get("orphan") is None
    finally:
        await nc.close()
