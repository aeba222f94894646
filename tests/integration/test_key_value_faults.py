"""The key-value adapter while nats-server is down: a refused write never lands later."""

from __future__ import annotations

import asyncio
import os
import signal

import nats
import pytest

from albatross.adapters.jetstream.sessions import JetStreamKeyValue
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.infra.nats_server import NatsServer
from albatross.ports import OutcomeUnknown, StoreUnavailable
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


async def test_a_write_the_server_took_but_never_answered_is_an_unknown_outcome(
        fresh_nats: NatsServer) -> None:
    """A logout sent to a server that stalls past the timeout and then carries it out: the
    caller must not hear "unavailable, nothing written"."""
    nc = await nats.connect(fresh_nats.url)
    try:
        topology = Topology()
        await ensure_topology(nc.jetstream(), topology)
        short = nc.jetstream(timeout=0.5)
        sessions = JetStreamKeyValue(await short.key_value(topology.sessions_bucket), nc)
        assert await sessions.create("stalled", b"session") is not None
        pid = fresh_nats.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(OutcomeUnknown):
                await sessions.delete("stalled")
        finally:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(10):  # it landed after all
            while await sessions.get("stalled") is not None:
                await asyncio.sleep(0.02)
    finally:
        await nc.close()

