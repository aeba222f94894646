"""A gateway on in-memory adapters, for the handler tests (plus a few smoke tests of itself).

The event store feeds :class:`InMemoryReadModels` after every append (``auto_project``), so
reads see writes at once unless a test turns that off to exercise read-your-writes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from albatross.adapters.codec import EventCodec
from albatross.adapters.memory import FixedClock, InMemoryEventStore, InMemorySnapshotStore
from albatross.adapters.memory_auth import InMemoryKeyValue, TrackingEventStore
from albatross.adapters.memory_read_models import InMemoryReadModels
from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.adapters.system import UuidV7Ids
from albatross.application.api_key_usage import ApiKeyUsage
from albatross.application.auth import Authenticator, LoginService
from albatross.application.commands import CommandService, Repositories
from albatross.application.setup import create_first_admin
from albatross.application.throttle import LoginThrottle
from albatross.domain.aggregates import default_registry
from albatross.ops_http import OpsEndpoints
from albatross.ports import AppendRequest, AppendResult, ReadModels
from albatross.services.gateway.app import create_app
from albatross.services.gateway.deps import GatewayDeps

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ADMIN_EMAIL = "admin@albatross.test"
PASSWORD = "correct horse battery"


class TickingClock(FixedClock):
    """A hand-moved clock that also advances 1 ms per reading, so events are ordered."""

    def now(self) -> datetime:
        moment = super().now()
        self.set(moment + timedelta(milliseconds=1))
        return moment


CatchUp = Callable[[InMemoryEventStore], Awaitable[object]]


class ProjectingStore(TrackingEventStore):
    """Projects every append before answering it (``catch_up``: the read models' own, or
    one that feeds another adapter)."""

    def __init__(self, inner: InMemoryEventStore, catch_up: CatchUp) -> None:
        super().__init__(inner)
        self.inner = inner
        self._catch_up = catch_up
        self.auto_project = True

    async def append(self, request: AppendRequest) -> AppendResult:
        result = await super().append(request)
        if self.auto_project:
            await self._catch_up(self.inner)
        return result


@dataclass
class Gateway:
    client: TestClient[Any, Any]
    store: ProjectingStore
    read_models: Any  # InMemoryReadModels unless the caller passed other read models
    clock: TickingClock
    deps: GatewayDeps
    repos: Repositories
    sessions: InMemoryKeyValue
    admin_token: str

    async def login(self, email: str, password: str = PASSWORD) -> str:
        response = await self.client.post("/api/auth/login",
                                          json={"email": email, "password": password})
        assert response.status == 200, await response.text()
        token: str = (await response.json())["token"]
        return token

    async def call(self, method: str, path: str, token: str | None = None,
                   **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        body = await response.read()
        if response.content_type in ("application/json", "application/problem+json") and body:
            return response.status, await response.json(content_type=None)
        return response.status, body

    async def tenant(self, icao: str | None = None) -> str:
        icao = icao or "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])
        status, body = await self.call("POST", "/api/tenants", self.admin_token,
                                       json={"name": f"Airline {icao}", "icao": icao})
        assert status == 201, body
        tenant_id: str = body["id"]
        return tenant_id

    async def user(self, role: str, tenant_id: str | None, *, token: str | None = None,
                   email: str | None = None, must_change_password: bool = False) -> tuple[str, str]:
        """Register a user; its id and the email it logs in with."""
        email = email or f"{role.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        payload: dict[str, Any] = {"email": email, "display_name": role, "password": PASSWORD,
                                   "role": role, "must_change_password": must_change_password}
        if tenant_id is not None:
            payload["tenant_id"] = tenant_id
        status, body = await self.call("POST", "/api/users", token or self.admin_token,
                                       json=payload)
        assert status == 201, body
        return body["id"], email


    async def pilot_with_api_key(self) -> tuple[str, str, dict[str, Any]]:
        """A new pilot of a new tenant: its id, a session token, and a fresh API key."""
        user_id, email = await self.user("Pilot", await self.tenant())
        token = await self.login(email)
        status, created = await self.call("POST", f"/api/users/{user_id}/apikeys", token,
                                          json={"name": "ACARS"})
        assert status == 201, created
        return user_id, token, created


def pirep_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "flight_number": "BAW123", "departure": "EGLL", "arrival": "KJFK",
        "block_off_at": "2026-11-26T08:00:00Z", "block_on_at": "2026-11-26T10:30:00Z",
        "flight_time_minutes": 140, "aircraft_type": "B77W"}
    body.update(overrides)
    return body


@asynccontextmanager
async def gateway(*, cache_ttl: float = 0.0, session_ttl: timedelta = timedelta(hours=12),
                  admin_must_change: bool = False, read_models: ReadModels | None = None,
                  catch_up: CatchUp | None = None,
                  hasher: Argon2PasswordHasher | None = None) -> AsyncIterator[Gateway]:
    """The gateway on in-memory adapters; ``read_models`` with the ``catch_up`` feeding them
    replace the in-memory read models (e.g. PostgreSQL's); ``hasher`` (closed on the way out)
    replaces cheap argon2."""
    clock = TickingClock(NOW)
    ids = UuidV7Ids()
    if (read_models is None) != (catch_up is None):
        raise ValueError("read_models and the catch_up that feeds them go together")
    if read_models is None or catch_up is None:
        memory = InMemoryReadModels()
        read_models, catch_up = memory, memory.catch_up
    store = ProjectingStore(InMemoryEventStore(EventCodec(default_registry())), catch_up)
    repos = Repositories(store, InMemorySnapshotStore())
    hasher = hasher or Argon2PasswordHasher(TEST_ONLY_CHEAP, max_concurrency=2)
    sessions = InMemoryKeyValue(clock, session_ttl)
    authenticator = Authenticator(repos.users, sessions, store, clock, cache_ttl=cache_ttl)
    throttles = InMemoryKeyValue(clock, timedelta(minutes=15))
    login = LoginService(repos.users, store, sessions, hasher, clock, ids,
                         session_ttl=session_ttl,
                         email_throttle=LoginThrottle(throttles, clock))
    commands = CommandService(repos, store, hasher, clock, ids,
                              InMemoryKeyValue(clock, timedelta(minutes=10)),
                              password_throttle=LoginThrottle(throttles, clock,
                                                              namespace="password-change"),
                              on_credentials_changed=lambda uid: authenticator.forget(
                                  user_id=uid))
    registry = CollectorRegistry()
    deps = GatewayDeps(authenticator=authenticator, login=login, commands=commands,
                       read_models=read_models, claims=store, clock=clock, registry=registry,
                       ops=OpsEndpoints(registry), min_sequence_wait=0.3,
                       api_key_usage=ApiKeyUsage(repos.users))
    await create_first_admin(repos.users, store, hasher, clock, ids, email=ADMIN_EMAIL,
                             password=None if admin_must_change else PASSWORD)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(deps)))
    await client.start_server()
    try:
        harness = Gateway(client, store, read_models, clock, deps, repos, sessions,
                          admin_token="")
        if not admin_must_change:
            harness.admin_token = await harness.login(ADMIN_EMAIL)
        yield harness
    finally:
        await client.close()
        hasher.close()


async def test_the_harness_logs_the_admin_in_and_serves_me() -> None:
    async with gateway() as gw:
        status, body = await gw.call("GET", "/api/me", gw.admin_token)
        assert status == 200
        assert body["email"] == ADMIN_EMAIL
        assert body["role"] == "PlatformAdmin"


async def test_setup_reports_initialized() -> None:
    async with gateway() as gw:
        assert await gw.call("GET", "/api/setup") == (200, {"initialized": True})
