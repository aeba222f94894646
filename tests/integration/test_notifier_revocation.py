"""Revocation through the real system: the gateway's command and login services write, two
notifier replicas (each with its own authenticator and NATS connection) must close the
affected sockets with 4401 within one second, and only those."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from albatross.adapters.memory_read_models import InMemoryReadModels
from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.application.principal import Principal
from albatross.ops_http import OpsEndpoints
from albatross.services.gateway.container import build_gateway_deps, jetstream_auth
from albatross.services.gateway.deps import GatewayDeps
from tests.integration.test_notifier_support import (
    TOPOLOGY,
    Client,
    RunningNotifier,
    connect,
    connected,
    notifier,
)

pytestmark = [pytest.mark.real, pytest.mark.slow]
PASSWORD = "correct horse battery"
OPERATOR = Principal(user_id="test-operator", role="PlatformAdmin", tenant_id=None)
DEADLINE = 1.0


@dataclass
class Pilot:
    user_id: str
    email: str
    principal: Principal  # as an admin acting on them would not be: their own, for self-service


@asynccontextmanager
async def gateway_services(nats_url: str) -> AsyncIterator[GatewayDeps]:
    """The gateway's real command and login services on JetStream (no HTTP)."""
    async with connected(nats_url) as conn:
        hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP, max_concurrency=4)
        try:
            registry = CollectorRegistry()
            yield await build_gateway_deps(
                conn.nc, TOPOLOGY, InMemoryReadModels(), registry=registry,
                ops=OpsEndpoints(registry), session_ttl=timedelta(hours=1), hasher=hasher)
        finally:
            hasher.close()


@asynccontextmanager
async def platform(nats_url: str) -> AsyncIterator[tuple[GatewayDeps, list[RunningNotifier]]]:
    """The gateway's services, and two notifier replicas with their own connections."""
    async with AsyncExitStack() as stack:
        deps = await stack.enter_async_context(gateway_services(nats_url))
        replicas = []
        for _ in range(2):
            conn = await stack.enter_async_context(connected(nats_url))
            auth = await jetstream_auth(conn.nc, TOPOLOGY)
            replicas.append(await stack.enter_async_context(
                notifier(conn, auth.authenticator)))
        yield deps, replicas


async def new_pilot(deps: GatewayDeps) -> str:
    tenant = None
    for _ in range(10):
        icao = "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])
        try:
            tenant = await deps.commands.create_tenant(OPERATOR, name="Revoke Air", icao=icao,
                                                       iata=None)
            break
        except Exception:  # the ICAO code is taken: try another
            continue
    assert tenant is not None
    email = f"pilot-{uuid.uuid4().hex[:8]}@example.com"
    await deps.commands.register_user(OPERATOR, email=email, display_name="Pilot",
                                      password=PASSWORD, role="Pilot",
                                      tenant_id=tenant.value.id, must_change_password=False)
    return email


async def sockets(replicas: list[RunningNotifier], token: str) -> list[Client]:
    return [await connect(r.url(), token) for r in replicas]


async def closed_within(clients: list[Client], seconds: float) -> list[int | None]:
    return list(await asyncio.gather(*(c.close_code(timeout=seconds) for c in clients)))


async def still_open(clients: list[Client], seconds: float = 0.5) -> bool:
    await asyncio.sleep(seconds)
    return all(not c.ws.closed for c in clients)


async def test_revoked_api_key_logout_and_password_change_close_4401_on_both_replicas(
        nats_url: str) -> None:
    async with platform(nats_url) as (deps, replicas):
        email = await new_pilot(deps)
        login1 = await deps.login.login(email, PASSWORD)
        login2 = await deps.login.login(email, PASSWORD)
        login3 = await deps.login.login(email, PASSWORD)
        user_id = login1.user.user_id
        self2 = await deps.authenticator.authenticate(login2.token)
        assert self2 is not None
        key1 = (await deps.commands.create_api_key(self2, user_id, name="acars")).value
        key2 = (await deps.commands.create_api_key(self2, user_id, name="tracker")).value

        by_key1 = await sockets(replicas, key1.key)
        by_key2 = await sockets(replicas, key2.key)
        by_login1 = await sockets(replicas, login1.token)
        by_login2 = await sockets(replicas, login2.token)
        by_login3 = await sockets(replicas, login3.token)
        everyone = [*by_key1, *by_key2, *by_login1, *by_login2, *by_login3]
        await asyncio.sleep(0.4)  # let the sockets settle into live delivery

        # 1. An API key is revoked: its sockets close on both replicas, nothing else does.
        waiting = asyncio.gather(*(c.close_code(timeout=3) for c in by_key1))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await deps.commands.revoke_api_key(self2, user_id, key1.id)
        assert await waiting == [4401, 4401]
        assert loop.time() - started < DEADLINE
        assert await still_open([c for c in everyone if c not in by_key1])

        # 2. Logout: that session's sockets close, the other sessions' stay open.
        waiting = asyncio.gather(*(c.close_code(timeout=3) for c in by_login1))
        started = loop.time()
        await deps.login.logout(login1.token)
        assert await waiting == [4401, 4401]
        assert loop.time() - started < DEADLINE
        assert await still_open([*by_key2, *by_login2, *by_login3])

        # 3. The user changes their password in session 2: session 3 is revoked, session 2
        #    (the one that changed it) and the API key are not (contract).
        waiting = asyncio.gather(*(c.close_code(timeout=3) for c in by_login3))
        started = loop.time()
        await deps.commands.change_password(self2, user_id, new_password=PASSWORD + "!",
                                            current_password=PASSWORD)
        assert await waiting == [4401, 4401]
        assert loop.time() - started < DEADLINE
        assert await still_open([*by_key2, *by_login2], seconds=1.0)

        for replica in replicas:
            assert replica.metric("albatross_notifier_closes_total", code="4401",
                                  by="server") == 3
        for client in everyone:
            await client.close()


async def test_a_revoked_credential_cannot_open_a_socket(nats_url: str) -> None:
    async with platform(nats_url) as (deps, replicas):
        email = await new_pilot(deps)
        login = await deps.login.login(email, PASSWORD)
        await deps.login.logout(login.token)
        client = await connect(replicas[0].url(), login.token, wait_ready=False)
        assert await client.close_code() == 4401
        await client.close()
