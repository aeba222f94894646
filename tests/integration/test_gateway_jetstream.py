"""The gateway on the REAL JetStream store: races, sessions, API keys and throttling.

Read models are in memory here (fed from the event store) since these tests are about the
write side and authentication; the PostgreSQL read models have their own suite.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.adapters.memory_read_models import InMemoryReadModels
from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.application.principal import Principal
from albatross.ops_http import OpsEndpoints
from albatross.services.gateway.app import create_app
from albatross.services.gateway.container import build_gateway_deps

pytestmark = pytest.mark.real
PASSWORD = "correct horse battery"


@dataclass
class Live:
    client: TestClient[Any, Any]
    nc: nats.NATS
    topology: Topology
    admin_token: str

    async def call(self, method: str, path: str, token: str | None = None,
                   **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        text = await response.read()
        return response.status, (await response.json(content_type=None)) if text else None

    async def login(self, email: str, password: str = PASSWORD) -> str:
        status, body = await self.call("POST", "/api/auth/login",
                                       json={"email": email, "password": password})
        assert status == 200, body
        token: str = body["token"]
        return token


@asynccontextmanager
async def live_gateway(nats_url: str) -> AsyncIterator[Live]:
    nc = await nats.connect(nats_url)
    topology = Topology()
    await ensure_topology(nc.jetstream(), topology)
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP, max_concurrency=4)
    registry = CollectorRegistry()
    deps = await build_gateway_deps(nc, topology, InMemoryReadModels(), registry=registry,
                                    ops=OpsEndpoints(registry), session_ttl=timedelta(hours=1),
                                    hasher=hasher)
    # Whoever bootstrapped this NATS, the test registers a PlatformAdmin of its own (as an
    # operator would, through the command service).
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    operator = Principal(user_id="test-operator", role="PlatformAdmin", tenant_id=None)
    await deps.commands.register_user(operator, email=admin_email, display_name="Admin",
                                      password=PASSWORD, role="PlatformAdmin", tenant_id=None,
                                      must_change_password=False)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(deps)))
    await client.start_server()
    try:
        live = Live(client, nc, topology, "")
        live.admin_token = await live.login(admin_email)
        yield live
    finally:
        await client.close()
        hasher.close()
        await nc.close()


def icao() -> str:
    return "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])


async def new_tenant(live: Live) -> str:
    for _ in range(10):
        status, body = await live.call("POST", "/api/tenants", live.admin_token,
                                       json={"name": "Race Air", "icao": icao()})
        if status == 201:
            return str(body["id"])
        assert body["code"] == "icao_taken"
    raise AssertionError("no free ICAO code")


async def test_twenty_concurrent_registrations_of_one_email_make_one_user(nats_url: str) -> None:
    async with live_gateway(nats_url) as live:
        tenant = await new_tenant(live)
        email = f"race-{uuid.uuid4().hex[:8]}@example.com"

        async def register(n: int) -> tuple[int, Any]:
            return await live.call("POST", "/api/users", live.admin_token, json={
                "email": email.upper() if n % 2 else email, "display_name": f"R{n}",
                "password": PASSWORD, "role": "Pilot", "tenant_id": tenant})

        results = await asyncio.gather(*(register(n) for n in range(20)))
        statuses = sorted(status for status, _ in results)
        assert statuses.count(201) == 1, results
        assert statuses.count(409) == 19
        assert {b["code"] for s, b in results if s == 409} == {"email_taken"}
        assert await live.login(email)


async def test_twenty_concurrent_reviews_have_one_winner(nats_url: str) -> None:
    async with live_gateway(nats_url) as live:
        tenant = await new_tenant(live)
        email = f"pilot-{uuid.uuid4().hex[:8]}@example.com"
        status, _ = await live.call("POST", "/api/users", live.admin_token, json={
            "email": email, "display_name": "P", "password": PASSWORD, "role": "Pilot",
            "tenant_id": tenant})
        assert status == 201
        pilot = await live.login(email)
        status, pirep = await live.call("POST", "/api/pireps", pilot, json={
            "flight_number": "RACE1", "departure": "EGLL", "arrival": "LFPG",
            "block_off_at": "2026-01-01T10:00:00Z", "block_on_at": "2026-01-01T11:10:00Z",
            "flight_time_minutes": 60})
        assert status == 201, pirep

        async def review(n: int) -> tuple[int, Any]:
            return await live.call("POST", f"/api/pireps/{pirep['id']}/review",
                                   live.admin_token,
                                   json={"decision": "accept" if n % 2 else "reject"})

        results = await asyncio.gather(*(review(n) for n in range(20)))
        statuses = [status for status, _ in results]
        assert statuses.count(200) == 1, results
        assert statuses.count(409) == 19
        assert {b["code"] for s, b in results if s == 409} <= {"invalid_state", "conflict"}


async def test_sessions_keys_and_throttle_on_jetstream(nats_url: str) -> None:
    async with live_gateway(nats_url) as live:
        status, me = await live.call("GET", "/api/me", live.admin_token)
        assert status == 200
        other = await live.call("POST", "/api/auth/login", json={"email": me["email"],
                                                                 "password": PASSWORD})
        token = other[1]["token"]
        assert (await live.call("POST", "/api/auth/logout", token))[0] == 204
        await asyncio.sleep(0.6)  # beyond any cache: the KV entry is gone
        assert (await live.call("GET", "/api/me", token))[0] == 401
        status, key = await live.call("POST", f"/api/users/{me['id']}/apikeys",
                                      live.admin_token, json={"name": "bench"})
        assert status == 201
        assert (await live.call("GET", "/api/me", headers={"X-API-Key": key["key"]}))[0] == 200
        assert (await live.call("DELETE", f"/api/users/{me['id']}/apikeys/{key['id']}",
                                live.admin_token))[0] == 204
        await asyncio.sleep(0.6)
        assert (await live.call("GET", "/api/me", headers={"X-API-Key": key["key"]}))[0] == 401
        victim = f"throttle-{uuid.uuid4().hex[:8]}@example.com"
        results = await asyncio.gather(*(live.call("POST", "/api/auth/login", json={
            "email": victim, "password": "wrong password"}) for _ in range(8)))
        assert sorted(s for s, _ in results) == [401] * 5 + [429] * 3
        status, body = await live.call("POST", "/api/auth/login",
                                       json={"email": victim, "password": "wrong password"})
        assert status == 429
        assert body["code"] == "rate_limited"
