"""Tenant isolation over HTTP, generated from the route table: for EVERY operation in
``albatross.services.gateway.routes.OPERATIONS``, principals of tenant A (a TenantAdmin and a
Pilot, each by session token and by API key) try to read or change tenant B's resources.

Each attempt must get the contract's answer (404 for what A may not know exists, 403 for what
A's role may never do, 422 for a body naming another tenant), no 2xx response may carry
anything of B, and B's state (every event of B's streams, every view of B as a PlatformAdmin
sees it, B's sessions, API key and password) must be exactly what it was.

An operation without an entry in ``ISOLATION`` fails its test: a new endpoint cannot be added
without saying how tenant A is kept out of it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from albatross.ports import RecordedEvent
from albatross.services.gateway.routes import API, OPERATIONS, Operation
from tests.reliability_figures import record
from tests.unit.test_gateway_harness import PASSWORD, Gateway, gateway, pirep_body

B_PASSWORD = "bravo's very own password"
B_ICAO = "ZQX"
ATTACKERS = (("TenantAdmin", "session"), ("TenantAdmin", "apikey"),
             ("Pilot", "session"), ("Pilot", "apikey"))
CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 422: "validation_failed"}


@dataclass
class Attempt:
    method: str
    path: str  # below /api, with the query
    expect: int  # the status; 2xx means "answered, but scoped to A"
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None  # more about a 2xx body


@dataclass
class World:
    gw: Gateway
    a: dict[str, str]  # "tenant", "TenantAdmin", "Pilot" -> ids; "<role>_email"
    b: dict[str, str]  # ids and credentials of tenant B
    markers: list[str]  # strings that only B's data contains

    async def credential(self, role: str, via: str) -> tuple[dict[str, str], str]:
        """Fresh credentials of A's ``role`` (headers), and that user's id."""
        user_id = self.a[role]
        if via == "session":
            token = await self.gw.login(self.a[f"{role}_email"])
            return {"Authorization": f"Bearer {token}"}, user_id
        status, created = await self.gw.call("POST", f"/api/users/{user_id}/apikeys",
                                             self.gw.admin_token, json={"name": "attacker"})
        assert status == 201, created
        # Both conventions the contract accepts.
        if role == "TenantAdmin":
            return {"Authorization": f"Bearer {created['key']}"}, user_id
        return {"X-API-Key": created["key"]}, user_id

    async def b_state(self) -> dict[str, Any]:
        """Everything of B: its events (secret ones too) and its views as a PlatformAdmin
        sees them (``last_used_at`` aside: this check itself uses B's key)."""
        b_ids = {self.b[k] for k in ("tenant", "ta", "pilot", "pirep", "reviewed")}
        events = [(e.sequence, type(e.event).__name__, str(e.stream))
                  for e in await self.gw.store.inner.read_after(0, 1_000_000)
                  if isinstance(e, RecordedEvent)
                  and (e.stream.scope == self.b["tenant"] or e.stream.aggregate_id in b_ids)]
        admin = self.gw.admin_token
        views: dict[str, Any] = {}
        for path in (f"/tenants/{self.b['tenant']}", f"/users?tenant_id={self.b['tenant']}",
                     f"/pireps?tenant_id={self.b['tenant']}", f"/users/{self.b['ta']}",
                     f"/users/{self.b['pilot']}", f"/pireps/{self.b['pirep']}",
                     f"/pireps/{self.b['pirep']}/history", f"/pireps/{self.b['reviewed']}",
                     f"/users/{self.b['pilot']}/apikeys", f"/users/{self.b['ta']}/apikeys"):
            status, body = await self.gw.call("GET", API + path, admin)
            assert status == 200, (path, body)
            for item in body.get("items", []) if isinstance(body, dict) else []:
                item.pop("last_used_at", None)
            views[path] = body
        return {"events": events, "views": views}

    async def b_still_works(self) -> None:
        """B's session, API key and password are untouched."""
        for headers in ({"Authorization": f"Bearer {self.b['ta_token']}"},
                        {"Authorization": f"Bearer {self.b['pilot_token']}"},
                        {"X-API-Key": self.b["pilot_key"]}):
            status, me = await self.gw.call("GET", "/api/me", headers=headers)
            assert status == 200, me
            assert me["tenant_id"] == self.b["tenant"]
        assert await self.gw.login(self.b["pilot_email"], B_PASSWORD)


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    async with gateway() as gw:
        a: dict[str, str] = {"tenant": await gw.tenant()}
        for role in ("TenantAdmin", "Pilot"):
            a[role], a[f"{role}_email"] = await gw.user(
                role, a["tenant"], email=f"{role.lower()}@alpha.test")
        b: dict[str, str] = {"tenant": await gw.tenant(B_ICAO)}
        for key, role in (("ta", "TenantAdmin"), ("pilot", "Pilot")):
            email = f"{role.lower()}@bravo.test"
            status, user = await gw.call("POST", "/api/users", gw.admin_token, json={
                "email": email, "display_name": "Bravo person", "password": B_PASSWORD,
                "role": role, "tenant_id": b["tenant"]})
            assert status == 201, user
            b[key], b[f"{key}_email"] = user["id"], email
            b[f"{key}_token"] = await gw.login(email, B_PASSWORD)
        pilot = b["pilot_token"]
        status, created = await gw.call("POST", f"/api/users/{b['pilot']}/apikeys", pilot,
                                        json={"name": "bravo acars"})
        assert status == 201, created
        b["pilot_key"], b["key"], b["key_prefix"] = created["key"], created["id"], \
            created["prefix"]
        b["idempotency_key"] = "bravo-flight-1"
        status, pirep = await gw.call("POST", "/api/pireps", pilot, json=pirep_body(),
                                      headers={"Idempotency-Key": b["idempotency_key"]})
        assert status == 201, pirep
        b["pirep"] = pirep["id"]
        status, reviewed = await gw.call("POST", "/api/pireps", pilot, json=pirep_body())
        b["reviewed"] = reviewed["id"]
        status, _ = await gw.call("POST", f"/api/pireps/{b['reviewed']}/review",
                                  b["ta_token"], json={"decision": "accept"})
        assert status == 200
        markers = [b[k] for k in ("tenant", "ta", "pilot", "pirep", "reviewed", "key",
                                  "key_prefix", "pilot_key", "ta_token", "pilot_token")]
        markers += [f"Airline {B_ICAO}", "bravo.test", "Bravo person"]
        yield World(gw, a, b, markers)


# The cases: one entry per operation id --------------------------------------------------------

Case = Callable[[World, str, str], list[Attempt]]  # (world, attacker role, attacker's id)


def _own_pirep(tenant: str) -> Callable[[Any], None]:
    def check(body: Any) -> None:
        assert body["tenant_id"] == tenant
    return check


def _only_tenant(tenant: str) -> Callable[[Any], None]:
    def check(body: Any) -> None:
        assert {item.get("tenant_id", item.get("id")) for item in body["items"]} <= {tenant}
    return check


ISOLATION: dict[str, Case] = {
    "login": lambda w, _r, _me: [
        Attempt("POST", "/auth/login", 401,
                json={"email": w.b["pilot_email"], "password": PASSWORD})],
    "logout": lambda _w, _r, _me: [Attempt("POST", "/auth/logout", 204)],
    "getMe": lambda w, _r, me: [Attempt("GET", "/me", 200,
                                        check=lambda body: _is(body["id"], me))],
    "getSetup": lambda _w, _r, _me: [Attempt("GET", "/setup", 200)],
    "createTenant": lambda _w, _r, _me: [
        Attempt("POST", "/tenants", 403, json={"name": f"Airline {B_ICAO}", "icao": B_ICAO}),
        Attempt("POST", "/tenants", 403, json={"name": "Alpha Two", "icao": "QQZ"})],
    "listTenants": lambda w, _r, _me: [
        Attempt("GET", "/tenants", 200, check=_only_tenant(w.a["tenant"])),
        Attempt("GET", "/tenants?limit=200", 200, check=_only_tenant(w.a["tenant"]))],
    "getTenant": lambda w, _r, _me: [Attempt("GET", f"/tenants/{w.b['tenant']}", 404)],
    "registerUser": lambda w, _r, _me: [
        Attempt("POST", "/users", 403, json={
            "email": f"intruder-{role}@alpha.test", "display_name": "Intruder",
            "password": PASSWORD, "role": role, "tenant_id": w.b["tenant"]})
        for role in ("Pilot", "TenantAdmin")],
    "listUsers": lambda w, _r, _me: [
        Attempt("GET", f"/users?tenant_id={w.b['tenant']}", 200,
                check=_only_tenant(w.a["tenant"])),
        Attempt("GET", f"/users?tenant_id={w.b['tenant']}&role=Pilot&limit=200", 200,
                check=_only_tenant(w.a["tenant"])),
        Attempt("GET", "/users?role=TenantAdmin", 200, check=_only_tenant(w.a["tenant"]))],
    "getUser": lambda w, _r, _me: [Attempt("GET", f"/users/{w.b[k]}", 404)
                                   for k in ("pilot", "ta")],
    "setPassword": lambda w, _r, _me: [
        Attempt("POST", f"/users/{w.b['pilot']}/password", 404,
                json={"new_password": "taken over by alpha"}),
        Attempt("POST", f"/users/{w.b['ta']}/password", 404,
                json={"current_password": B_PASSWORD, "new_password": "taken over by alpha"})],
    "createApiKey": lambda w, _r, _me: [
        Attempt("POST", f"/users/{w.b[k]}/apikeys", 404, json={"name": "backdoor"})
        for k in ("pilot", "ta")],
    "listApiKeys": lambda w, _r, _me: [Attempt("GET", f"/users/{w.b[k]}/apikeys", 404)
                                       for k in ("pilot", "ta")],
    "revokeApiKey": lambda w, _r, me: [
        Attempt("DELETE", f"/users/{w.b['pilot']}/apikeys/{w.b['key']}", 404),
        # B's key id under the attacker's own user id: still not theirs.
        Attempt("DELETE", f"/users/{me}/apikeys/{w.b['key']}", 404)],
    "submitPirep": lambda w, _r, _me: [
        # B's pilot used this Idempotency-Key: A gets a PIREP of its own, never B's.
        Attempt("POST", "/pireps", 201, json=pirep_body(),
                headers={"Idempotency-Key": w.b["idempotency_key"]},
                check=_own_pirep(w.a["tenant"])),
        Attempt("POST", "/pireps", 422, json=pirep_body(tenant_id=w.b["tenant"])),
        Attempt("POST", "/pireps", 422, json=pirep_body(pilot_id=w.b["pilot"]))],
    "listPireps": lambda w, _r, _me: [
        Attempt("GET", f"/pireps?tenant_id={w.b['tenant']}", 200,
                check=_only_tenant(w.a["tenant"])),
        Attempt("GET", f"/pireps?pilot_id={w.b['pilot']}&status=pending", 200,
                check=_only_tenant(w.a["tenant"])),
        Attempt("GET", "/pireps?status=accepted&limit=200", 200,
                check=_only_tenant(w.a["tenant"]))],
    "getPirep": lambda w, _r, _me: [Attempt("GET", f"/pireps/{w.b[k]}", 404)
                                    for k in ("pirep", "reviewed")],
    "reviewPirep": lambda w, _r, _me: [
        Attempt("POST", f"/pireps/{w.b['pirep']}/review", 404, json={"decision": "reject"}),
        Attempt("POST", f"/pireps/{w.b['pirep']}/review", 404, json={"decision": "accept"},
                headers={"If-Match": '"1"'})],
    "getPirepHistory": lambda w, _r, _me: [Attempt("GET", f"/pireps/{w.b[k]}/history", 404)
                                           for k in ("pirep", "reviewed")],
}


def _is(actual: object, expected: object) -> None:
    assert actual == expected


def routes_to(attempt: Attempt, operation: Operation) -> bool:
    pattern = re.sub(r"\{[a-z_]+\}", "[^/?]+", operation.path)
    return attempt.method == operation.method and re.fullmatch(
        pattern, attempt.path.split("?", 1)[0]) is not None


def test_every_case_belongs_to_an_operation() -> None:
    assert set(ISOLATION) <= {op.operation_id for op in OPERATIONS}, "stale isolation cases"


async def attempt_as_a(w: World, operation: Operation, role: str, via: str) -> int:
    headers, me = await w.credential(role, via)
    attempts = ISOLATION[operation.operation_id](w, role, me)
    assert attempts, operation.operation_id
    for attempt in attempts:
        assert routes_to(attempt, operation), (attempt, operation.path)
        what = f"{role}/{via}: {attempt.method} {attempt.path}"
        kwargs: dict[str, Any] = {"headers": {**headers, **attempt.headers}}
        if attempt.json is not None:
            kwargs["json"] = attempt.json
        response = await w.gw.client.request(attempt.method, API + attempt.path, **kwargs)
        text = await response.text()
        assert response.status == attempt.expect, f"{what}: {response.status} {text}"
        if response.status >= 400:
            assert msgspec.json.decode(text)["code"] == CODES[response.status], what
            # A refusal may echo what the attacker sent, nothing else of B.
            sent = attempt.path + msgspec.json.encode(attempt.json).decode()
            leaks = [m for m in w.markers if m in text and m not in sent]
        else:
            leaks = [m for m in w.markers if m in text]
            if attempt.check is not None:
                attempt.check(msgspec.json.decode(text) if text else None)
        assert not leaks, f"{what} leaked {leaks}: {text}"
    return len(attempts)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.operation_id)
async def test_tenant_a_never_reads_or_changes_tenant_b(operation: Operation) -> None:
    case = ISOLATION.get(operation.operation_id)
    assert case is not None, (
        f"{operation.method} {operation.path} ({operation.operation_id}) has no tenant-"
        "isolation case: add one to ISOLATION in tests/security/test_tenant_isolation.py")
    async with world() as w:
        before = await w.b_state()
        cases = 0
        for role, via in ATTACKERS:
            cases += await attempt_as_a(w, operation, role, via)
        assert await w.b_state() == before, "tenant B's state changed"
        await w.b_still_works()
    record("security", isolation_cases=cases, operation=operation.operation_id)



async def test_the_probes_see_b_and_a_change_of_b() -> None:
    """The checks above can fail: B's markers show in a PlatformAdmin's lists, and one change
    of B by its own admin changes B's state and stops B's old credentials."""
    async with world() as w:
        before = await w.b_state()
        assert before["events"], "no event of B found"
        status, tenants = await w.gw.call("GET", "/api/tenants", w.gw.admin_token)
        assert status == 200
        text = msgspec.json.encode(tenants).decode()
        assert w.b["tenant"] in text
        assert f"Airline {B_ICAO}" in text
        status, _ = await w.gw.call("POST", f"/api/users/{w.b['pilot']}/password",
                                    w.b["ta_token"], json={"new_password": "reset inside B"})
        assert status == 204
        assert await w.b_state() != before
        with pytest.raises(AssertionError):
            await w.b_still_works()
