"""Races on the real JetStream store, each repeated over several rounds with jittered timing.

* review vs review: two admins deciding one pending PIREP differently (the contract has no
  resubmit or edit of a PIREP, so a second review is the only command that competes with a
  review): exactly one wins, the PIREP ends as the winner decided, its history holds exactly
  one review event;
* API key revocation vs use, on two gateway replicas: after the revoke response no request
  with the key succeeds on the revoking replica, nor on any replica past the 1 s promise;
* password change vs login: a login racing a password change never yields a session that
  survives the change unless it was made with the new password.

Each anomaly is counted; the tests assert there are none and record the figures.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.domain.aggregates import default_registry
from albatross.ports import StreamId
from tests.integration.test_gateway_jetstream import PASSWORD, Live, live_gateway, new_tenant
from tests.reliability_figures import record

pytestmark = pytest.mark.real
PROMISE_S = 1.0  # contract: a revoked key is refused by every replica within 1 second


@asynccontextmanager
async def replicas(nats_url: str, count: int) -> AsyncIterator[list[Live]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(live_gateway(nats_url)) for _ in range(count)]


async def new_pilot(live: Live, tenant: str, password: str = PASSWORD) -> tuple[str, str]:
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"
    status, body = await live.call("POST", "/api/users", live.admin_token, json={
        "email": email, "display_name": "Racer", "password": password, "role": "Pilot",
        "tenant_id": tenant})
    assert status == 201, body
    return str(body["id"]), email


def pirep(n: int) -> dict[str, Any]:
    return {"flight_number": f"RC{n}", "departure": "EGLL", "arrival": "LFPG",
            "block_off_at": "2026-01-01T10:00:00Z", "block_on_at": "2026-01-01T11:10:00Z",
            "flight_time_minutes": 60}


async def review_round(a: Live, b: Live, store: JetStreamEventStore, tenant: str, pilot: str,
                       n: int) -> int:
    """Accept on one replica and reject on the other, at once: the anomalies seen (0 or 1)."""
    status, filed = await a.call("POST", "/api/pireps", pilot, json=pirep(n))
    assert status == 201, filed
    path = f"/api/pireps/{filed['id']}/review"

    async def review(live: Live, decision: str) -> tuple[int, Any]:
        await asyncio.sleep(random.uniform(0, 0.004))
        return await live.call("POST", path, live.admin_token,
                               json={"decision": decision, "comment": decision})

    results = await asyncio.gather(review(a, "accept"), review(b, "reject"))
    winners = [body for s, body in results if s == 200]
    losers = [(s, body) for s, body in results if s != 200]
    if len(winners) != 1 or [s for s, _ in losers] != [409]:
        return 1
    assert losers[0][1]["code"] in ("invalid_state", "conflict"), losers
    # The event store itself (these gateways' read models are not fed).
    history = await store.load(StreamId("pirep", filed["id"], tenant))
    reviews = [type(e.event).__name__ for e in history
               if type(e.event).__name__ in ("PirepAccepted", "PirepRejected")]
    winner = winners[0]
    expected = "PirepAccepted" if winner["status"] == "accepted" else "PirepRejected"
    decided = "accept" if winner["status"] == "accepted" else "reject"
    return 0 if reviews == [expected] and winner["review_comment"] == decided else 1


async def test_two_reviews_racing_on_two_replicas_have_one_winner(nats_url: str) -> None:
    rounds = 12
    async with replicas(nats_url, 2) as (a, b):
        tenant = await new_tenant(a)
        _, email = await new_pilot(a, tenant)
        pilot = await a.login(email)
        store = JetStreamEventStore(a.nc, EventCodec(default_registry()),
                                    a.topology.events_stream)
        anomalies = sum([await review_round(a, b, store, tenant, pilot, n)
                         for n in range(rounds)])
    record("race", target="review_vs_review", cases=rounds, anomalies=anomalies)
    assert anomalies == 0


@dataclass(frozen=True)
class Use:
    replica: int
    started: float
    status: int


async def revoke_round(lives: list[Live], tenant: str, n: int) -> tuple[int, int]:
    """Four clients use a key on two replicas while one revokes it: (uses, anomalies)."""
    user_id, email = await new_pilot(lives[0], tenant)
    token = await lives[0].login(email)
    status, key = await lives[0].call("POST", f"/api/users/{user_id}/apikeys", token,
                                      json={"name": f"race {n}"})
    assert status == 201, key
    headers = {"X-API-Key": key["key"]}
    revoker = n % 2  # alternate, so each replica is "the other one" in some rounds
    seen: list[Use] = []
    revoked_at: list[float] = []

    async def use(replica: int) -> None:
        # Reads and writes alike, until well past the promise.
        live, k = lives[replica], 0
        while not revoked_at or time.monotonic() < revoked_at[0] + PROMISE_S + 0.5:
            k += 1
            started = time.monotonic()
            if k % 4:
                status, _ = await live.call("GET", "/api/me", headers=headers)
            else:
                status, _ = await live.call("POST", "/api/pireps", headers=headers,
                                            json=pirep(k))
            seen.append(Use(replica, started, status))

    async def revoke() -> None:
        await asyncio.sleep(random.uniform(0.1, 0.3))
        status, body = await lives[revoker].call(
            "DELETE", f"/api/users/{user_id}/apikeys/{key['id']}", token)
        assert status == 204, body
        revoked_at.append(time.monotonic())

    await asyncio.gather(revoke(), *(use(r) for r in (0, 1, 0, 1)))
    done = revoked_at[0]
    assert any(u.status in (200, 201) and u.started < done for u in seen)
    anomalies = 0
    for u in seen:
        assert u.status in (200, 201, 401), u
        late_here = u.replica == revoker and u.started > done
        late_anywhere = u.started > done + PROMISE_S
        if u.status in (200, 201) and (late_here or late_anywhere):
            anomalies += 1
    return len(seen), anomalies


async def test_revoked_api_key_is_refused_after_the_response_and_everywhere_within_1s(
        nats_url: str) -> None:
    uses = anomalies = 0
    async with replicas(nats_url, 2) as lives:
        tenant = await new_tenant(lives[0])
        for n in range(4):
            used, bad = await revoke_round(lives, tenant, n)
            uses, anomalies = uses + used, anomalies + bad
    record("race", target="apikey_revoke_vs_use", cases=uses, anomalies=anomalies)
    assert anomalies == 0


async def password_round(lives: list[Live], tenant: str, n: int) -> tuple[int, int]:
    """Three logins with the old password and one with the new race a change: (logins,
    anomalies). A fresh user per round keeps the failed logins under the throttle's 5."""
    old, new = f"old password {n:04d}", f"new password {n:04d}"
    user_id, email = await new_pilot(lives[0], tenant, old)
    changer = await lives[0].login(email, old)
    attempts = [(old, random.uniform(0, 0.03)) for _ in range(3)]
    attempts.append((new, random.uniform(0.01, 0.05)))

    async def login(i: int, password: str, delay: float) -> tuple[str, str | None]:
        await asyncio.sleep(delay)
        status, body = await lives[i % 2].call(
            "POST", "/api/auth/login", json={"email": email, "password": password})
        assert status in (200, 401), (status, body)
        return password, body["token"] if status == 200 else None

    async def change() -> int:
        status, _ = await lives[n % 2].call(
            "POST", f"/api/users/{user_id}/password", changer,
            json={"current_password": old, "new_password": new})
        return status

    results = await asyncio.gather(change(), *(login(i, p, d)
                                               for i, (p, d) in enumerate(attempts)))
    assert results[0] == 204
    await asyncio.sleep(PROMISE_S + 0.1)
    anomalies = 0
    for password, session in results[1:]:
        if session is None:
            continue
        alive = {(await live.call("GET", "/api/me", session))[0] for live in lives}
        if alive != ({401} if password == old else {200}):
            anomalies += 1
    # The session that made the change is kept (contract); the old password is dead.
    assert {(await live.call("GET", "/api/me", changer))[0] for live in lives} == {200}
    status, _ = await lives[0].call("POST", "/api/auth/login",
                                    json={"email": email, "password": old})
    assert status == 401
    return len(attempts), anomalies


async def test_a_login_racing_a_password_change_never_outlives_it_with_the_old_password(
        nats_url: str) -> None:
    logins = anomalies = 0
    async with replicas(nats_url, 2) as lives:
        tenant = await new_tenant(lives[0])
        # Rounds run side by side (a user each), so their waits for the promise overlap.
        for tried, bad in await asyncio.gather(*(password_round(lives, tenant, n)
                                                 for n in range(12))):
            logins, anomalies = logins + tried, anomalies + bad
    record("race", target="password_change_vs_login", cases=logins, anomalies=anomalies)
    assert anomalies == 0
