"""The contract's role table as HTTP: every row, every role, plus cross-tenant 404s."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from tests.unit.test_gateway_harness import PASSWORD, Gateway, gateway, pirep_body


@dataclass
class World:
    gw: Gateway
    ids: dict[str, str]
    tokens: dict[str, str]


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    async with gateway() as gw:
        own, other = await gw.tenant(), await gw.tenant()
        ids = {"own": own, "other": other}
        ids["ta"], ta_email = await gw.user("TenantAdmin", own)
        ids["pilot"], pilot_email = await gw.user("Pilot", own)
        ids["pilot2"], _ = await gw.user("Pilot", own)
        ids["ta2"], _ = await gw.user("TenantAdmin", own)
        ids["other_pilot"], other_pilot_email = await gw.user("Pilot", other)
        ids["pa2"], _ = await gw.user("PlatformAdmin", None)
        status, me = await gw.call("GET", "/api/me", gw.admin_token)
        ids["pa"] = me["id"]
        tokens = {"PlatformAdmin": gw.admin_token, "TenantAdmin": await gw.login(ta_email),
                  "Pilot": await gw.login(pilot_email)}
        other_pilot = await gw.login(other_pilot_email)
        for name, token in (("pirep_own", tokens["Pilot"]), ("pirep_other", other_pilot)):
            status, pirep = await gw.call("POST", "/api/pireps", token, json=pirep_body())
            assert status == 201
            ids[name] = pirep["id"]
        for name, owner in (("key_pilot2", "pilot2"), ("key_other", "other_pilot")):
            status, key = await gw.call("POST", f"/api/users/{ids[owner]}/apikeys",
                                        gw.admin_token, json={"name": "k"})
            ids[name] = key["id"]
        ids["self"] = ""  # filled per role
        yield World(gw, ids, tokens)


def new_user(role: str, tenant: str | None) -> Callable[[dict[str, str]], dict[str, Any]]:
    def body(ids: dict[str, str]) -> dict[str, Any]:
        payload: dict[str, Any] = {"email": f"{uuid.uuid4().hex[:10]}@example.com",
                                   "display_name": "New", "password": PASSWORD, "role": role}
        if tenant is not None:
            payload["tenant_id"] = ids[tenant]
        return payload
    return body


def const(value: dict[str, Any]) -> Callable[[dict[str, str]], dict[str, Any]]:
    return lambda _ids: value


NO_BODY = None
RESET = const({"new_password": "reset by an admin"})
OWN_CHANGE = const({"current_password": PASSWORD, "new_password": "changed by myself"})

# (row, method, path template, body, {PlatformAdmin, TenantAdmin, Pilot})
ROWS: list[tuple[str, str, str, Any, tuple[int, int, int]]] = [
    ("create tenant", "POST", "/api/tenants",
     lambda _ids: {"name": "New Air", "icao": "".join(chr(65 + b % 26)
                                                     for b in uuid.uuid4().bytes[:3])},
     (201, 403, 403)),
    ("see own tenant", "GET", "/api/tenants/{own}", NO_BODY, (200, 200, 200)),
    ("see other tenant", "GET", "/api/tenants/{other}", NO_BODY, (200, 404, 404)),
    ("register Pilot in own tenant", "POST", "/api/users", new_user("Pilot", "own"),
     (201, 201, 403)),
    ("register TenantAdmin in own tenant", "POST", "/api/users",
     new_user("TenantAdmin", "own"), (201, 201, 403)),
    ("register Pilot in other tenant", "POST", "/api/users", new_user("Pilot", "other"),
     (201, 403, 403)),
    ("register PlatformAdmin", "POST", "/api/users", new_user("PlatformAdmin", None),
     (201, 403, 403)),
    ("see own-tenant user", "GET", "/api/users/{pilot2}", NO_BODY, (200, 200, 200)),
    ("see other-tenant user", "GET", "/api/users/{other_pilot}", NO_BODY, (200, 404, 404)),
    ("change own password", "POST", "/api/users/{self}/password", OWN_CHANGE,
     (204, 204, 204)),
    ("reset own-tenant user's password", "POST", "/api/users/{pilot2}/password", RESET,
     (204, 204, 403)),
    ("reset own-tenant admin's password", "POST", "/api/users/{ta2}/password", RESET,
     (204, 204, 403)),
    ("reset other-tenant user's password", "POST", "/api/users/{other_pilot}/password", RESET,
     (204, 404, 404)),
    ("reset a PlatformAdmin's password", "POST", "/api/users/{pa2}/password", RESET,
     (204, 404, 404)),
    ("create own API key", "POST", "/api/users/{self}/apikeys", const({"name": "mine"}),
     (201, 201, 201)),
    ("list own API keys", "GET", "/api/users/{self}/apikeys", NO_BODY, (200, 200, 200)),
    ("create own-tenant user's API key", "POST", "/api/users/{pilot2}/apikeys",
     const({"name": "x"}), (201, 201, 403)),
    ("list own-tenant user's API keys", "GET", "/api/users/{pilot2}/apikeys", NO_BODY,
     (200, 200, 403)),
    ("revoke own-tenant user's API key", "DELETE", "/api/users/{pilot2}/apikeys/{key_pilot2}",
     NO_BODY, (204, 204, 403)),
    ("create other-tenant user's API key", "POST", "/api/users/{other_pilot}/apikeys",
     const({"name": "x"}), (201, 404, 404)),
    ("list other-tenant user's API keys", "GET", "/api/users/{other_pilot}/apikeys", NO_BODY,
     (200, 404, 404)),
    ("revoke other-tenant user's API key", "DELETE",
     "/api/users/{other_pilot}/apikeys/{key_other}", NO_BODY, (204, 404, 404)),
    ("submit PIREP", "POST", "/api/pireps", lambda _ids: pirep_body(), (403, 201, 201)),
    ("see own-tenant PIREP", "GET", "/api/pireps/{pirep_own}", NO_BODY, (200, 200, 200)),
    ("see other-tenant PIREP", "GET", "/api/pireps/{pirep_other}", NO_BODY, (200, 404, 404)),
    ("own-tenant PIREP history", "GET", "/api/pireps/{pirep_own}/history", NO_BODY,
     (200, 200, 200)),
    ("other-tenant PIREP history", "GET", "/api/pireps/{pirep_other}/history", NO_BODY,
     (200, 404, 404)),
    ("review own-tenant PIREP", "POST", "/api/pireps/{pirep_own}/review",
     const({"decision": "accept"}), (200, 200, 403)),
    ("review other-tenant PIREP", "POST", "/api/pireps/{pirep_other}/review",
     const({"decision": "reject"}), (200, 404, 404)),
]
ROLE_ORDER = ("PlatformAdmin", "TenantAdmin", "Pilot")
CASES = [pytest.param(method, path, body, role, expected[i], id=f"{row}/{role}")
         for row, method, path, body, expected in ROWS for i, role in enumerate(ROLE_ORDER)]


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), CASES)
async def test_role_table_over_http(method: str, path: str, body: Any, role: str,
                                    expected: int) -> None:
    async with world() as w:
        ids = dict(w.ids)
        status, me = await w.gw.call("GET", "/api/me", w.tokens[role])
        ids["self"] = me["id"]
        kwargs = {"json": body(ids)} if body is not None else {}
        status, answer = await w.gw.call(method, path.format(**ids), w.tokens[role], **kwargs)
        assert status == expected, answer
        if status >= 400:
            assert answer["code"] == {403: "forbidden", 404: "not_found"}[status]


async def test_lists_are_scoped_to_the_tenant_and_pilots_see_no_other_email() -> None:
    async with world() as w:
        for role, sees_other in (("PlatformAdmin", True), ("TenantAdmin", False),
                                 ("Pilot", False)):
            token = w.tokens[role]
            _, tenants = await w.gw.call("GET", "/api/tenants", token)
            assert (w.ids["other"] in {t["id"] for t in tenants["items"]}) is sees_other
            _, pireps = await w.gw.call("GET", "/api/pireps", token)
            assert (w.ids["pirep_other"] in {p["id"] for p in pireps["items"]}) is sees_other
            _, users = await w.gw.call("GET", "/api/users", token)
            assert (w.ids["other_pilot"] in {u["id"] for u in users["items"]}) is sees_other
            # Filtering by another tenant's id does not widen a non-admin's view.
            _, filtered = await w.gw.call("GET", f"/api/pireps?tenant_id={w.ids['other']}",
                                          token)
            assert bool(filtered["items"]) is sees_other
        _, pilot2 = await w.gw.call("GET", f"/api/users/{w.ids['pilot2']}", w.tokens["Pilot"])
        assert pilot2["email"] is None
        _, pilot2 = await w.gw.call("GET", f"/api/users/{w.ids['pilot2']}",
                                    w.tokens["TenantAdmin"])
        assert pilot2["email"]


async def test_a_tenant_admin_registers_into_their_own_tenant_by_default() -> None:
    async with world() as w:
        body = new_user("Pilot", None)(w.ids)
        status, user = await w.gw.call("POST", "/api/users", w.tokens["TenantAdmin"], json=body)
        assert status == 201
        assert user["tenant_id"] == w.ids["own"]
