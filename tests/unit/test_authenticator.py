"""The Authenticator's cache: concurrent requests share one lookup, revocation still wins."""

from __future__ import annotations

import asyncio
from typing import Any

from albatross.application.auth import Authenticator
from albatross.application.auth_ports import ClaimLookup
from albatross.application.principal import Principal
from albatross.ports import Claim, StreamId
from tests.unit.test_gateway_harness import gateway


class GatedClaims:
    """Counts API-key lookups and holds them until the test opens the gate."""

    def __init__(self, inner: ClaimLookup) -> None:
        self.inner = inner
        self.lookups = 0
        self.gate = asyncio.Event()

    async def holder(self, claim: Claim) -> StreamId | None:
        self.lookups += 1
        await self.gate.wait()
        return await self.inner.holder(claim)

    async def locate(self, aggregate: str, aggregate_id: str) -> StreamId | None:
        return await self.inner.locate(aggregate, aggregate_id)


async def test_concurrent_requests_with_one_key_share_one_lookup() -> None:
    async with gateway() as gw:
        _, _, created = await gw.pilot_with_api_key()
        claims = GatedClaims(gw.store)
        auth = Authenticator(gw.repos.users, gw.sessions, claims, gw.clock, cache_ttl=0.5)
        callers = [asyncio.ensure_future(auth.authenticate(created["key"])) for _ in range(50)]
        await asyncio.sleep(0.01)
        claims.gate.set()
        principals = await asyncio.gather(*callers)
        assert claims.lookups == 1
        assert all(isinstance(p, Principal) and p.api_key_id == created["id"]
                   for p in principals)
        assert await auth.authenticate(created["key"]) == principals[0]  # now from the cache
        assert claims.lookups == 1


async def test_a_caller_giving_up_does_not_cancel_the_shared_lookup() -> None:
    async with gateway() as gw:
        _, _, created = await gw.pilot_with_api_key()
        claims = GatedClaims(gw.store)
        auth = Authenticator(gw.repos.users, gw.sessions, claims, gw.clock, cache_ttl=0.5)
        impatient = asyncio.ensure_future(auth.authenticate(created["key"]))
        patient = asyncio.ensure_future(auth.authenticate(created["key"]))
        await asyncio.sleep(0.01)
        impatient.cancel()
        claims.gate.set()
        assert isinstance(await patient, Principal)
        assert impatient.cancelled()


class GatedUsers:
    """Reads the user at once, then holds the answer until the test opens the gate."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = asyncio.Event()

    async def load(self, stream: StreamId) -> Any:
        loaded = await self.inner.load(stream)
        await self.gate.wait()
        return loaded


async def test_a_lookup_that_read_the_key_before_its_revocation_is_not_cached() -> None:
    async with gateway() as gw:
        user_id, token, created = await gw.pilot_with_api_key()
        users = GatedUsers(gw.repos.users)
        auth = Authenticator(users, gw.sessions, gw.store, gw.clock,  # type: ignore[arg-type]
                             cache_ttl=0.5)
        under_way = asyncio.ensure_future(auth.authenticate(created["key"]))
        await asyncio.sleep(0.01)  # it has read the user: the key is still valid
        status, _ = await gw.call("DELETE", f"/api/users/{user_id}/apikeys/{created['id']}",
                                  token)
        assert status == 204
        auth.forget(user_id=user_id)  # what the revoking replica does
        users.gate.set()
        assert isinstance(await under_way, Principal)  # it began before the revocation
        assert await auth.authenticate(created["key"]) is None
