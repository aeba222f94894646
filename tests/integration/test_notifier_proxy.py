"""The gateway-side WebSocket proxy in front of a real notifier: one origin, codes passed on."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from albatross.application.principal import Principal
from albatross.services.gateway.app import create_app as create_gateway_app
from albatross.services.gateway.container import jetstream_auth
from albatross.services.notifier.proxy import mount_ws_proxy, sendable
from tests.integration.test_notifier_revocation import PASSWORD, gateway_services, new_pilot
from tests.integration.test_notifier_support import (
    TOPOLOGY,
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


async def test_one_origin_through_the_real_gateway(nats_url: str) -> None:
    """Login, live changes and logout (4401) through the gateway's own app at /api/ws."""
    async with AsyncExitStack() as stack:
        conn = await stack.enter_async_context(connected(nats_url))
        auth = await jetstream_auth(conn.nc, TOPOLOGY)
        running = await stack.enter_async_context(notifier(conn, auth.authenticator))
        deps = await stack.enter_async_context(gateway_services(nats_url))
        email = await new_pilot(deps)
        gateway_app = create_gateway_app(dataclasses.replace(deps, ws_upstream=running.url()))
        gateway = TestServer(gateway_app)
        await gateway.start_server()
        stack.push_async_callback(gateway.close)
        origin = f"http://{gateway.host}:{gateway.port}"

        async with aiohttp.ClientSession() as http:
            async with http.post(gateway.make_url("/api/auth/login"),
                                 json={"email": email, "password": PASSWORD}) as response:
                assert response.status == 200
                body = await response.json()
            token, tenant = body["token"], body["user"]["tenant_id"]
            client = await open_socket(str(gateway.make_url("/api/ws")), origin=origin)
            await client.ws.send_str(f'{{"type": "auth", "token": "{token}"}}')
            assert (await client.next())["type"] == "ready"
            sequence = await publish(conn.js, change_of(pirep(tenant, body["user"]["id"])))
            got = await client.changes_until(lambda c: len(c) >= 1)
            assert [c["sequence"] for c in got] == [sequence]

            waiting = asyncio.create_task(client.close_code(timeout=3))
            started = asyncio.get_running_loop().time()
            async with http.post(gateway.make_url("/api/auth/logout"),
                                 headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 204
            assert await waiting == 4401
            assert asyncio.get_running_loop().time() - started < 1.0
            await client.close()
