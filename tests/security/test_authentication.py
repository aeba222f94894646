"""Authentication beyond the handler tests: what only shows with production parameters or with
two gateway replicas on one NATS.

Already proven elsewhere (not repeated here, see docs/security.md "Security tests"): the same
401 status and body for an unknown email and a wrong password, the 15-minute window passing,
logout and expiry on one replica (``tests/unit/test_gateway.py``); revoked sockets closed 4401
by both notifier replicas within 1 s (``tests/integration/test_notifier_revocation.py``); no
secret in any log line or response (``tests/unit/test_gateway_secrets.py``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import timedelta

import nats
import pytest
from aiohttp.test_utils import TestServer
from argon2 import Type, extract_parameters
from prometheus_client import CollectorRegistry

from albatross.adapters.jetstream.topology import Topology
from albatross.adapters.memory_auth import InMemoryKeyValue
from albatross.adapters.memory_read_models import InMemoryReadModels
from albatross.adapters.passwords import PRODUCTION, TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.adapters.system import UuidV7Ids
from albatross.application.auth import LoginService
from albatross.application.errors import RateLimited, Unauthorized
from albatross.application.principal import Principal
from albatross.application.throttle import LoginThrottle
from albatross.ops_http import OpsEndpoints
from albatross.ports import Claim
from albatross.services.gateway.app import create_app
from albatross.services.gateway.container import build_gateway_deps, jetstream_auth
from tests.integration.test_gateway_jetstream import Live, live_gateway, new_tenant
from tests.reliability_figures import record
from tests.unit.test_gateway_harness import PASSWORD, Gateway, gateway

# OWASP Password Storage Cheat Sheet, argon2id: equivalent (memory KiB, iterations) minimums.
OWASP_ARGON2ID = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))
DEADLINE = 1.0


def meets_owasp(memory_kib: int, time_cost: int, parallelism: int) -> bool:
    return parallelism >= 1 and any(memory_kib >= m and time_cost >= t
                                    for m, t in OWASP_ARGON2ID)


# No user enumeration by timing ---------------------------------------------------------------

class CountingHasher(Argon2PasswordHasher):
    def __init__(self) -> None:
        super().__init__(TEST_ONLY_CHEAP, max_concurrency=1)
        self.verifications = 0
        self.hashes = 0

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return await super().verify(password_hash, password)

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return await super().hash(password)


def login_service(gw: Gateway, hasher: Argon2PasswordHasher) -> LoginService:
    """The harness's login service again, over the same stores, with another hasher."""
    clock = gw.clock
    return LoginService(gw.repos.users, gw.store, InMemoryKeyValue(clock, timedelta(hours=1)),
                        hasher, clock, UuidV7Ids(), session_ttl=timedelta(hours=1),
                        email_throttle=LoginThrottle(InMemoryKeyValue(
                            clock, timedelta(minutes=15)), clock))


async def test_every_failed_login_costs_exactly_one_argon2_verification() -> None:
    """An unknown email, a wrong password and an over-long password all verify one hash (a
    dummy one with the same parameters when there is no real one), and hash nothing: the
    first unknown email costs what the others do."""
    async with gateway() as gw:
        hasher = CountingHasher()
        try:
            service = login_service(gw, hasher)
            tenant = await gw.tenant()
            _, email = await gw.user("Pilot", tenant)
            attempts = [(email, "the wrong password"), ("nobody@example.com", PASSWORD),
                        (email, "x" * 300), ("nobody@example.com", "x" * 300)]
            for who, password in attempts:
                before = hasher.verifications
                with pytest.raises(Unauthorized):
                    await service.login(who, password)
                assert hasher.verifications == before + 1, (who, len(password))
            assert hasher.hashes == 0
            dummy = extract_parameters(hasher._dummy)
            assert (dummy.memory_cost, dummy.time_cost, dummy.parallelism) == (
                TEST_ONLY_CHEAP.memory_cost_kib, TEST_ONLY_CHEAP.time_cost,
                TEST_ONLY_CHEAP.parallelism)
        finally:
            hasher.close()


async def test_unknown_email_and_wrong_password_take_similar_time_in_production() -> None:
    """With the production argon2 parameters, the median time of a login with an unknown
    email is within a factor 2.5 of a wrong password's (without the dummy verification it
    would be ~100 times shorter). Small interleaved samples keep it to a few seconds."""
    async with gateway() as gw:
        hasher = Argon2PasswordHasher(PRODUCTION, max_concurrency=1)
        try:
            service = login_service(gw, hasher)
            tenant = await gw.tenant()
            status, user = await gw.call("POST", "/api/users", gw.admin_token, json={
                "email": "timed@example.com", "display_name": "Timed", "role": "Pilot",
                "password": PASSWORD, "tenant_id": tenant})
            assert status == 201, user
            # Give this user a production hash, as a real gateway would have stored.
            await service.login("timed@example.com", PASSWORD)  # rehashes to PRODUCTION
            timings: dict[str, list[float]] = {"wrong password": [], "unknown email": []}
            for n in range(3):  # 3 failures: below the throttle's 5
                for kind, email in (("wrong password", "timed@example.com"),
                                    ("unknown email", f"ghost-{n}@example.com")):
                    started = time.perf_counter()
                    with pytest.raises(Unauthorized):
                        await service.login(email, "not the password at all")
                    timings[kind].append(time.perf_counter() - started)
            wrong, unknown = (statistics.median(timings[k]) for k in timings)
            assert wrong > 0.01, f"a production verification took {wrong:.4f} s: not hashing?"
            ratio = max(wrong, unknown) / min(wrong, unknown)
            assert ratio < 2.5, timings
            record("security", login_timing_ratio=round(ratio, 2),
                   login_timing_wrong_ms=round(wrong * 1000, 1),
                   login_timing_unknown_ms=round(unknown * 1000, 1))
        finally:
            hasher.close()


async def test_a_success_from_an_address_does_not_wipe_its_other_failures() -> None:
    """The per-address limit counts failures at any email; a login to one's own account from
    the same address forgets that login's attempt, not the failures at other emails."""
    async with gateway() as gw:
        hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP, max_concurrency=1)
        try:
            clock = gw.clock
            service = LoginService(
                gw.repos.users, gw.store, InMemoryKeyValue(clock, timedelta(hours=1)), hasher,
                clock, UuidV7Ids(), session_ttl=timedelta(hours=1),
                email_throttle=LoginThrottle(InMemoryKeyValue(clock, timedelta(minutes=15)),
                                             clock),
                address_throttle=LoginThrottle(InMemoryKeyValue(clock, timedelta(minutes=15)),
                                               clock, limit=3, namespace="address"))
            _, own = await gw.user("Pilot", await gw.tenant())
            for n in range(3):
                await service.login(own, PASSWORD, address="192.0.2.7")
                with pytest.raises(Unauthorized):
                    await service.login(f"someone-{n}@example.com", PASSWORD,
                                        address="192.0.2.7")
            with pytest.raises(RateLimited):  # three failures: the address is locked
                await service.login(own, PASSWORD, address="192.0.2.7")
            # Other addresses are not affected.
            with pytest.raises(Unauthorized):
                await service.login("someone-9@example.com", PASSWORD, address="192.0.2.8")
        finally:
            hasher.close()


# Two gateway replicas on one NATS -------------------------------------------------------------

async def new_pilot(live: Live) -> tuple[str, str]:
    tenant = await new_tenant(live)
    email = f"pilot-{uuid.uuid4().hex[:8]}@example.com"
    status, body = await live.call("POST", "/api/users", live.admin_token, json={
        "email": email, "display_name": "Pilot", "password": PASSWORD, "role": "Pilot",
        "tenant_id": tenant})
    assert status == 201, body
    return body["id"], email


async def refused_within(replica: Live, headers: dict[str, str], seconds: float) -> float:
    """Poll ``GET /api/me`` on ``replica`` until 401; how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < seconds + 1.0:
        status, _ = await replica.call("GET", "/api/me", headers=headers)
        if status == 401:
            return loop.time() - started
        assert status == 200
        await asyncio.sleep(0.05)
    raise AssertionError(f"still accepted after {seconds + 1.0} s")


@pytest.mark.real
async def test_login_throttling_is_shared_by_two_replicas(nats_url: str) -> None:
    async with live_gateway(nats_url) as one, live_gateway(nats_url) as two:
        _, email = await new_pilot(one)
        for n in range(5):  # alternating replicas: the count is shared
            status, body = await (one, two)[n % 2].call(
                "POST", "/api/auth/login", json={"email": email, "password": "wrong password"})
            assert status == 401, body
        for replica in (two, one):  # even the right password, on either replica
            response = await replica.client.post("/api/auth/login",
                                                 json={"email": email, "password": PASSWORD})
            assert response.status == 429
            assert (await response.json(content_type=None))["code"] == "rate_limited"
            assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        # Parallel guesses split over both replicas: exactly 5 are checked.
        victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
        results = await asyncio.gather(*(
            (one, two)[n % 2].call("POST", "/api/auth/login",
                                   json={"email": victim, "password": "wrong password"})
            for n in range(8)))
        assert sorted(status for status, _ in results) == [401] * 5 + [429] * 3
    record("security", throttle_replicas=2, throttle_attempts=15)


@pytest.mark.real
async def test_revocations_reach_the_other_replica_within_one_second(nats_url: str) -> None:
    async with live_gateway(nats_url) as one, live_gateway(nats_url) as two:
        user_id, email = await new_pilot(one)
        first, second, third = [await one.login(email) for _ in range(3)]
        status, key = await one.call("POST", f"/api/users/{user_id}/apikeys", first,
                                     json={"name": "acars"})
        assert status == 201
        bearer = {name: {"Authorization": f"Bearer {token}"}
                  for name, token in (("first", first), ("second", second), ("third", third))}
        api_key = {"X-API-Key": key["key"]}
        for headers in (*bearer.values(), api_key):  # every credential is cached on two
            assert (await two.call("GET", "/api/me", headers=headers))[0] == 200
        delays = {}

        # Logout on one: that session is refused on two within 1 s; the others are not.
        assert (await one.call("POST", "/api/auth/logout", third))[0] == 204
        delays["logout"] = await refused_within(two, bearer["third"], DEADLINE)

        # A password change in session "first" revokes "second", not "first" nor the key.
        status, _ = await one.call("POST", f"/api/users/{user_id}/password", first, json={
            "current_password": PASSWORD, "new_password": "a brand new password"})
        assert status == 204
        delays["password change"] = await refused_within(two, bearer["second"], DEADLINE)
        for headers in (bearer["first"], api_key):
            assert (await two.call("GET", "/api/me", headers=headers))[0] == 200

        # Revoking the API key: refused on two within 1 s.
        status, _ = await one.call("DELETE", f"/api/users/{user_id}/apikeys/{key['id']}",
                                   first)
        assert status == 204
        delays["api key revoked"] = await refused_within(two, api_key, DEADLINE)
        assert all(delay < DEADLINE for delay in delays.values()), delays
        assert (await two.call("GET", "/api/me", first))[0] == 200
    record("security", revocation_max_s=round(max(delays.values()), 3))


@pytest.mark.real
async def test_the_gateway_stores_argon2id_at_or_above_owasp(nats_url: str) -> None:
    """Read from the hasher the gateway builds by default, and from the hash it stores."""
    default = Argon2PasswordHasher()
    try:
        assert default.params == PRODUCTION
        assert meets_owasp(default.params.memory_cost_kib, default.params.time_cost,
                           default.params.parallelism)
    finally:
        default.close()
    # A gateway built without an injected hasher: the stored hash shows what it uses.
    nc = await nats.connect(nats_url)
    try:
        topology = Topology()
        registry = CollectorRegistry()
        deps = await build_gateway_deps(nc, topology, InMemoryReadModels(), registry=registry,
                                        ops=OpsEndpoints(registry),
                                        session_ttl=timedelta(hours=1))
        server = TestServer(create_app(deps))  # its cleanup closes the hasher it built
        await server.start_server()
        try:
            email = f"stored-{uuid.uuid4().hex[:8]}@example.com"
            await deps.commands.register_user(
                Principal(user_id="test-operator", role="PlatformAdmin", tenant_id=None),
                email=email, display_name="Stored", password=PASSWORD, role="PlatformAdmin",
                tenant_id=None, must_change_password=False)
        finally:
            await server.close()
        auth = await jetstream_auth(nc, topology)
        stream = await auth.claims.holder(Claim("email", email))
        assert stream is not None
        stored = (await auth.repos.users.load(stream)).state
        assert stored is not None
        params = extract_parameters(stored.password_hash)
        assert params.type is Type.ID
        assert meets_owasp(params.memory_cost, params.time_cost, params.parallelism), params
        assert (params.memory_cost, params.time_cost, params.parallelism) == (
            PRODUCTION.memory_cost_kib, PRODUCTION.time_cost, PRODUCTION.parallelism)
    finally:
        await nc.close()
