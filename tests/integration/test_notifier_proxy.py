"""The gateway-side WebSocket proxy in front of a real notifier: one origin, codes passed on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from albatross.application.principal import Principal
from albatross.services.notifier.proxy import mount_ws_proxy, sendable
from tests.integration.test_notifier_support import (
    FakeAuthenticator,
    RunningNotifier,
    change_of,
    connect,
    connected,
    notifier,
    open_socket,
    pirep,
    publish,
    uid,
)

pytestmark = pytest.mark.real


@asynccontextmanager
async def gateway_in_front_of(running: RunningNotifier) -> AsyncIterator[TestServer]:
    app = web.Application()
    mount_ws_proxy(app, running.url())
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_changes_and_close_codes_pass_through_the_proxy(nats_url: str) -> None:
    tenant, pilot = uid("t-"), uid("pilot-")
    auth = FakeAuthenticator({"tok": Principal(pilot, "Pilot", tenant, session_id="s")})
    async with connected(nats_url) as conn, notifier(conn, auth) as running, \
            gateway_in_front_of(running) as gateway:
        url = str(gateway.make_url("/api/ws"))
        client = await connect(url, "tok")
        sequences = [await publish(conn.js, change_of(pirep(tenant, pilot, n)))
                     for n in range(20)]
        got = await client.changes_until(lambda c: len(c) >= 20)
        assert [c["sequence"] for c in got] == sequences

        # Refused by the notifier (bad token) → the client sees the notifier's 4401.
        refused = await connect(url, "wrong", wait_ready=False)
        assert await refused.close_code() == 4401
        await refused.close()

        # Revoked while open → 4401 passes through, with the reason.
        del auth.tokens["tok"]
        await running.notifier.watcher.revalidate_all()
        assert await client.close_code() == 4401
        await client.close()


async def test_origin_is_checked_against_the_public_origin(nats_url: str) -> None:
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", uid(), session_id="s")})
    async with connected(nats_url) as conn, notifier(conn, auth) as running, \
            gateway_in_front_of(running) as gateway:
        url = str(gateway.make_url("/api/ws"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_socket(url, origin="http://evil.example")
        assert refused.value.status == 403
        # Same origin as the gateway (not the notifier's own host:port): allowed.
        client = await open_socket(url, origin=f"http://{gateway.host}:{gateway.port}")
        await client.ws.send_str('{"type": "auth", "token": "tok"}')
        assert (await client.next())["type"] == "ready"
        await client.close()


async def test_notifier_shutdown_reaches_the_client_as_1001(nats_url: str) -> None:
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", uid(), session_id="s")})
    async with connected(nats_url) as conn, notifier(conn, auth) as running, \
            gateway_in_front_of(running) as gateway:
        client = await connect(str(gateway.make_url("/api/ws")), "tok")
        await running.server.close()
        assert await client.close_code() == 1001
        await client.close()


async def test_unreachable_notifier_is_a_503(nats_url: str) -> None:
    app = web.Application()
    mount_ws_proxy(app, "http://127.0.0.1:9/api/ws")
    server = TestServer(app)
    await server.start_server()
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_socket(str(server.make_url("/api/ws")))
        assert refused.value.status == 503
    finally:
        await server.close()


def test_only_sendable_codes_are_passed_on() -> None:
    assert all(sendable(c) for c in (1000, 1001, 1008, 1011, 4008, 4401))
    assert not any(sendable(c) for c in (None, 1004, 1005, 1006, 1015, 999, 5000))
