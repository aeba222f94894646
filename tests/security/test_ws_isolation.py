"""Tenant isolation over WebSocket, on real NATS with the real credential store: a client of
tenant A (TenantAdmin and Pilot, each by session token and by API key) never receives a
change of tenant B or of the platform, live or replayed by ``resume``, whether it connects to
the notifier directly or through the gateway's ``/api/ws`` proxy, while it does receive its
own tenant's changes and B's own client receives B's.

Every WebSocket route of the gateway and notifier applications must be one this test covers:
a new WebSocket path fails :func:`test_every_websocket_route_is_covered` until it is added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from albatross.application.commands import CommandService
from albatross.application.principal import Principal
from albatross.application.views import ApiKeyView, ChangeMessage, TenantView
from albatross.ops_http import OpsEndpoints
from albatross.services.gateway.app import create_app as create_gateway_app
from albatross.services.gateway.container import jetstream_auth
from albatross.services.gateway.deps import GatewayDeps
from albatross.services.notifier.app import NotifierDeps
from albatross.services.notifier.app import create_app as create_notifier_app
from albatross.services.notifier.handler import WebSocketEndpoint
from albatross.services.notifier.proxy import WebSocketProxy
from tests.integration.test_notifier_revocation import OPERATOR, PASSWORD, gateway_services
from tests.integration.test_notifier_support import (
    T0,
    TOPOLOGY,
    Client,
    FakeAuthenticator,
    connect,
    connected,
    notifier,
    pirep,
    publish,
    user,
)
from tests.reliability_figures import record
from tests.unit.test_gateway_harness import gateway

pytestmark = pytest.mark.real

# (application, path) of every WebSocket route this file proves isolated.
COVERED = {("gateway", "/api/ws"), ("notifier", "/api/ws")}


def websocket_routes(app: web.Application) -> set[str]:
    paths = set()
    for route in app.router.routes():
        owner = getattr(route.handler, "__self__", None)
        if isinstance(owner, WebSocketProxy | WebSocketEndpoint):
            assert route.resource is not None
            paths.add(route.resource.canonical)
    return paths


async def test_every_websocket_route_is_covered() -> None:
    """The WebSocket routes of the real applications, as built for production."""
    notifier_app = create_notifier_app(NotifierDeps(
        authenticator=FakeAuthenticator(), feed=None, signals=None,  # type: ignore[arg-type]
        registry=CollectorRegistry()))
    found = {("notifier", path) for path in websocket_routes(notifier_app)}
    async with gateway() as gw:
        registry = CollectorRegistry()
        gateway_app = create_gateway_app(dataclasses.replace(
            gw.deps, ws_upstream="http://127.0.0.1:1/api/ws", registry=registry,
            ops=OpsEndpoints(registry)))
        found |= {("gateway", path) for path in websocket_routes(gateway_app)}
    assert found == COVERED, f"WebSocket routes without an isolation test: {found - COVERED}"


@dataclass
class Member:
    user_id: str
    email: str
    principal: Principal


@dataclass
class Tenant:
    id: str
    name: str
    icao: str
    members: dict[str, Member]  # by role


async def new_tenant(commands: CommandService, tag: str) -> Tenant:
    for _ in range(10):
        icao = "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])
        try:
            done = await commands.create_tenant(OPERATOR, name=f"{tag} Air", icao=icao, iata=None)
        except Exception:  # ICAO taken by another test on the shared NATS: try another
            continue
        tenant = Tenant(done.value.id, done.value.name, icao, {})
        for role in ("TenantAdmin", "Pilot"):
            email = f"{tag}-{role}-{uuid.uuid4().hex[:8]}@example.com".lower()
            created = await commands.register_user(
                OPERATOR, email=email, display_name=f"{tag} {role}", password=PASSWORD,
                role=role, tenant_id=tenant.id, must_change_password=False)
            tenant.members[role] = Member(created.value.id, email, Principal(
                created.value.id, role, tenant.id))  # type: ignore[arg-type]
        return tenant
    raise AssertionError("no free ICAO code")


async def credentials(deps: GatewayDeps, member: Member) -> dict[str, str]:
    """A session token and an API key of ``member``, made by the real services."""
    login = await deps.login.login(member.email, PASSWORD)
    principal = await deps.authenticator.authenticate(login.token)
    assert principal is not None
    key = await deps.commands.create_api_key(principal, member.user_id, name="ws")
    return {"session": login.token, "apikey": key.value.key}


def changes_of(tenant: Tenant, key_id: str) -> list[ChangeMessage[Any]]:
    """One change per entity kind, as the projector would publish them for ``tenant``."""
    pilot = tenant.members["Pilot"].user_id
    tenant_view = TenantView(id=tenant.id, name=tenant.name, icao=tenant.icao, iata=None,
                             created_at=T0, pilot_count=1)
    key = ApiKeyView(id=key_id, user_id=pilot, name="ws", prefix="alb_xxxxxxxx",
                     created_at=T0, last_used_at=None, revoked_at=None)
    flight = pirep(tenant.id, pilot)
    return [
        ChangeMessage(sequence=0, entity="tenant", id=tenant.id, tenant_id=tenant.id,
                      event="TenantCreated", data=tenant_view),
        ChangeMessage(sequence=0, entity="user", id=pilot, tenant_id=tenant.id,
                      event="UserRegistered", data=user(tenant.id, pilot)),
        ChangeMessage(sequence=0, entity="pirep", id=flight.id, tenant_id=tenant.id,
                      event="PirepSubmitted", data=flight),
        ChangeMessage(sequence=0, entity="apikey", id=key_id, tenant_id=tenant.id,
                      event="ApiKeyCreated", data=key),
    ]


@asynccontextmanager
async def mesh(nats_url: str) -> AsyncIterator[tuple[GatewayDeps, Any, dict[str, str]]]:
    """Real gateway services, a real notifier, and the gateway's app proxying /api/ws."""
    async with AsyncExitStack() as stack:
        conn = await stack.enter_async_context(connected(nats_url))
        auth = await jetstream_auth(conn.nc, TOPOLOGY)
        running = await stack.enter_async_context(notifier(conn, auth.authenticator))
        deps = await stack.enter_async_context(gateway_services(nats_url))
        gateway = TestServer(create_gateway_app(dataclasses.replace(
            deps, ws_upstream=running.url())))
        await gateway.start_server()
        stack.push_async_callback(gateway.close)
        urls = {"notifier": running.url(), "gateway": str(gateway.make_url("/api/ws"))}
        yield deps, conn, urls


async def test_a_client_of_tenant_a_never_receives_a_change_of_tenant_b(nats_url: str) -> None:
    async with mesh(nats_url) as (deps, conn, urls):
        a, b = await new_tenant(deps.commands, "Alpha"), await new_tenant(deps.commands, "Bravo")
        secrets = {(role, via): secret for role in ("TenantAdmin", "Pilot")
                   for via, secret in (await credentials(deps, a.members[role])).items()}
        b_admin = (await credentials(deps, b.members["TenantAdmin"]))["session"]
        start = (await conn.js.stream_info(TOPOLOGY.changes_stream)).state.last_seq

        live: dict[tuple[str, str, str], Client] = {}
        for (role, via), secret in secrets.items():
            for path, url in urls.items():
                live[(role, via, path)] = await connect(url, secret)
        b_live = [await connect(url, b_admin) for url in urls.values()]
        await asyncio.sleep(0.5)  # past the resume grace: these sockets are live

        # B's changes and a platform one, interleaved with A's, A's last: changes arrive in
        # sequence order, so once A's last one is in, any of B's would have come before it.
        a_changes = changes_of(a, "key-a-" + uuid.uuid4().hex[:8])
        b_changes = changes_of(b, "key-b-" + uuid.uuid4().hex[:8])
        admin_id = "pa-" + uuid.uuid4().hex[:8]
        platform = ChangeMessage(sequence=0, entity="user", id=admin_id, tenant_id=None,
                                 event="UserRegistered",
                                 data=user(None, admin_id, "PlatformAdmin"))
        withheld = [await publish(conn.js, platform)]  # not B's, and not A's either
        a_seqs, b_seqs = [], []
        for b_change, a_change in zip(b_changes, a_changes, strict=True):
            b_seqs.append(await publish(conn.js, b_change))
            a_seqs.append(await publish(conn.js, a_change))
        withheld += b_seqs
        a_ids = [c.id for c in a_changes]
        forbidden = {b.id, *(m.user_id for m in b.members.values()), admin_id,
                     *(c.id for c in b_changes)}

        async def receives_only_a(name: str, client: Client) -> None:
            got = await client.changes_until(lambda c: len(c) >= len(a_seqs))
            got += await client.quiet(0.3)
            assert [c["sequence"] for c in got] == a_seqs, name
            assert [c["id"] for c in got] == a_ids, name
            for message in got:
                assert message["tenant_id"] == a.id, (name, message)
                assert not forbidden & {message["id"], *map(str, message["data"].values())}

        await asyncio.gather(*(receives_only_a(f"live {k}", c) for k, c in live.items()))
        # B's own client did receive B's changes (not the platform one): they were delivered.
        for client in b_live:
            got = await client.changes_until(lambda c: len(c) >= len(b_changes))
            assert [c["sequence"] for c in got] == b_seqs

        # The replay path: resume from before everything, on both paths, every credential.
        replayed = {(role, via, path): await connect(url, secret, resume_after=start)
                    for (role, via), secret in secrets.items() for path, url in urls.items()}
        await asyncio.gather(*(receives_only_a(f"resume {k}", c)
                               for k, c in replayed.items()))
        sockets = [*live.values(), *replayed.values(), *b_live]
        for client in sockets:
            await client.close()
    record("security", ws_isolation_sockets=len(live) + len(replayed),
           ws_changes_withheld=len(withheld) * (len(live) + len(replayed)))
