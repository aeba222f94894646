"""Helpers shared by the notifier's tests (no tests here).

The notifier runs in-process (aiohttp TestServer) on the session's real NATS; change messages
are published on ``albatross.changes.<tenant>.<entity>.<id>`` exactly as the projector does,
with ``sequence`` 0 in the payload (the notifier numbers them by stream sequence).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import nats
from aiohttp.test_utils import TestServer
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from albatross.adapters.codec import CHANGES
from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.application.principal import Principal
from albatross.application.views import ChangeMessage, PirepView, UserView
from albatross.services.notifier.app import NOTIFIER, Notifier, NotifierConfig, NotifierDeps
from albatross.services.notifier.app import create_app as create_notifier_app
from albatross.services.notifier.handler import SocketConfig
from albatross.services.notifier.jetstream import (
    JetStreamChangeFeed,
    JetStreamRevocationSignals,
)
from albatross.services.notifier.ports import Authenticator
from albatross.services.notifier.session import SessionConfig

TOPOLOGY = Topology()
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class FakeAuthenticator:
    """Tokens → principals, shared by replicas the way the real credential store is."""

    def __init__(self, tokens: dict[str, Principal] | None = None) -> None:
        self.tokens: dict[str, Principal] = dict(tokens or {})
        self.calls = 0

    async def authenticate(self, secret: str) -> Principal | None:
        self.calls += 1
        return self.tokens.get(secret)

    def forget(self, secret: str | None = None, *, user_id: str | None = None) -> None:
        return None


@dataclass
class Nats:
    nc: NATS
    js: JetStreamContext


@asynccontextmanager
async def connected(nats_url: str) -> AsyncIterator[Nats]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, TOPOLOGY)
        yield Nats(nc, js)
    finally:
        await nc.close()


def notifier_config(**session: Any) -> NotifierConfig:
    socket_fields = {k: session.pop(k) for k in list(session)
                     if k in {"auth_timeout", "heartbeat", "allowed_origins",
                              "send_buffer_bytes", "max_message_bytes"}}
    interval = session.pop("revalidate_interval", 30.0)
    defaults: dict[str, Any] = {"resume_grace": 0.3, "close_timeout": 2.0}
    defaults.update(session)
    return NotifierConfig(socket=SocketConfig(session=SessionConfig(**defaults),
                                              **socket_fields),
                          revalidate_interval=interval)


@dataclass
class RunningNotifier:
    server: TestServer
    notifier: Notifier
    registry: CollectorRegistry

    def url(self) -> str:
        return str(self.server.make_url("/api/ws"))

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value


@asynccontextmanager
async def notifier(conn: Nats, authenticator: Authenticator,
                   config: NotifierConfig | None = None) -> AsyncIterator[RunningNotifier]:
    registry = CollectorRegistry()
    deps = NotifierDeps(
        authenticator=authenticator,
        feed=JetStreamChangeFeed(conn.js, TOPOLOGY.changes_stream),
        signals=JetStreamRevocationSignals(conn.nc, sessions_bucket=TOPOLOGY.sessions_bucket),
        registry=registry, config=config or notifier_config())
    app = create_notifier_app(deps)
    server = TestServer(app)
    await server.start_server()
    try:
        yield RunningNotifier(server, app[NOTIFIER], registry)
    finally:
        await server.close()


# Change messages ------------------------------------------------------------------------------

def pirep(tenant_id: str, pilot_id: str, n: int = 0) -> PirepView:
    return PirepView(
        id=uid("p-"), tenant_id=tenant_id, pilot_id=pilot_id, status="pending",
        flight_number=f"ABC{n % 1000}", departure="EGLL", arrival="KJFK", aircraft_type="B77W",
        aircraft_registration=None, block_off_at=T0, block_on_at=T0 + timedelta(hours=8),
        flight_time_minutes=470, fuel_used_kg=None, distance_nm=None, landing_rate_fpm=None,
        route=None, remarks=None, source="manual", submitted_at=T0, reviewed_at=None,
        reviewed_by=None, review_comment=None, version=1)


def user(tenant_id: str | None, user_id: str, role: str = "Pilot") -> UserView:
    return UserView(id=user_id, email=f"{user_id}@example.com", display_name=user_id,
                    role=role, tenant_id=tenant_id,  # type: ignore[arg-type]
                    created_at=T0, must_change_password=False, flight_count=0,
                    flight_minutes=0)


def change_of(view: PirepView | UserView, event: str = "PirepSubmitted") -> ChangeMessage[Any]:
    entity = "pirep" if isinstance(view, PirepView) else "user"
    return ChangeMessage(sequence=0, entity=entity, id=view.id, tenant_id=view.tenant_id,
                         event=event, data=view)


async def publish(js: JetStreamContext, change: ChangeMessage[Any]) -> int:
    """Publish as the projector does; the stream sequence is the change's sequence."""
    scope = change.tenant_id or "platform"
    ack = await js.publish(f"{CHANGES}.{scope}.{change.entity}.{change.id}",
                           msgspec.json.encode(change))
    return int(ack.seq)


# WebSocket clients -------------------------------------------------------------------------

@dataclass
class Client:
    """A test client: collects every message it reads, in order."""

    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    received: list[dict[str, Any]] = field(default_factory=list)
    ready: dict[str, Any] | None = None

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type} {msg.data!r} "
                                  f"(close code {self.ws.close_code})")
        data: dict[str, Any] = msgspec.json.decode(msg.data)
        self.received.append(data)
        return data

    async def changes_until(self, done: Callable[[list[dict[str, Any]]], bool],
                            timeout: float = 10.0) -> list[dict[str, Any]]:
        """Read change messages until ``done(changes)``; every change read is returned."""
        changes: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while not done(changes):
                message = await self.next(timeout)
                assert message["type"] == "change", message
                changes.append(message)
        return changes

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Whatever arrives within ``seconds`` (expected: nothing)."""
        extra: list[dict[str, Any]] = []
        try:
            while True:
                extra.append(await self.next(seconds))
        except (TimeoutError, ConnectionError):
            return extra

    async def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; the close code it sent."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                    return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def open_socket(url: str, *, origin: str | None = None) -> Client:
    session = aiohttp.ClientSession()
    headers = {"Origin": origin} if origin else {}
    try:
        ws = await session.ws_connect(url, headers=headers, autoping=True)
    except BaseException:
        await session.close()
        raise
    return Client(ws, session)


async def connect(url: str, token: str, *, resume_after: int | None = None,
                  wait_ready: bool = True) -> Client:
    """Open, authenticate (and pipeline a resume), and wait for ``ready``."""
    client = await open_socket(url)
    await client.ws.send_str(msgspec.json.encode({"type": "auth", "token": token}).decode())
    if resume_after is not None:
        await client.ws.send_str(
            msgspec.json.encode({"type": "resume", "after": resume_after}).decode())
    if wait_ready:
        client.ready = await client.next()
        assert client.ready["type"] == "ready", client.ready
    return client
