"""Handler tests of the gateway on in-memory adapters: problem shapes, auth, commands."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.application.principal import Principal
from albatross.ops_http import OpsEndpoints
from albatross.ports import OutcomeUnknown, StoreUnavailable
from albatross.services.gateway.app import create_app
from tests.unit.test_gateway_harness import ADMIN_EMAIL, PASSWORD, gateway, pirep_body

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(status: int, body: object, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict)
    assert set(body) >= PROBLEM_KEYS, body
    assert body["code"] == code
    assert body["status"] == expected_status


# Problem shapes -----------------------------------------------------------------------------

async def test_bad_json_wrong_content_type_and_unknown_fields() -> None:
    async with gateway() as gw:
        headers = {"Authorization": f"Bearer {gw.admin_token}",
                   "Content-Type": "application/json"}
        response = await gw.client.post("/api/tenants", data=b"{nope", headers=headers)
        assert response.content_type == "application/problem+json"
        assert_problem(response.status, await response.json(content_type=None), 400,
                       "malformed_request")
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token, data=b"x=1",
                                     headers={"Content-Type": "text/plain"})
        assert_problem(status, body, 400, "malformed_request")
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token,
                                     json={"name": "A", "icao": "ABC", "colour": "red",
                                           "size": 3})
        assert_problem(status, body, 422, "validation_failed")
        assert {e["field"] for e in body["errors"]} == {"colour", "size"}
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token,
                                     json={"name": "A", "icao": "abcd"})
        assert_problem(status, body, 422, "validation_failed")
        assert body["errors"][0]["field"] == "icao"
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token, json=[1, 2])
        assert_problem(status, body, 422, "validation_failed")


@pytest.mark.parametrize(("content_type", "expected"), [
    ("application/json", 201), ("application/json; charset=utf-8", 201),
    ("Application/JSON", 201), ("application/merge-patch+json", 201),
    ("application/jsonx", 400), ("text/plain", 400), ("application/json-seq", 400),
])
async def test_json_bodies_are_known_by_their_media_type(content_type: str,
                                                         expected: int) -> None:
    # The exact "application/json" is taken without aiohttp's parse; every other spelling
    # goes through it, so both paths must agree with the media type's rules.
    async with gateway() as gw:
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token,
                                     data=b'{"name": "Media Air", "icao": "MED"}',
                                     headers={"Content-Type": content_type})
        assert status == expected, body
        if expected == 400:
            assert_problem(status, body, 400, "malformed_request")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_its_content_encoding_does_not_decode_is_400(
        encoding: str, caplog: pytest.LogCaptureFixture) -> None:
    async with gateway() as gw:
        login = {"email": ADMIN_EMAIL, "password": PASSWORD}
        compress = {"gzip": gzip.compress, "deflate": zlib.compress}[encoding]
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        response = await gw.client.post("/api/auth/login", headers=headers,
                                        data=compress(json.dumps(login).encode()))
        assert response.status == 200  # encoded right: decoded
        for plain in (json.dumps(login).encode(), b"hello"):
            status, body = await gw.call("POST", "/api/auth/login", data=plain,
                                         headers=headers)
            assert_problem(status, body, 400, "malformed_request")
    # A client's mistake, not the server's: nothing logged as an error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_bodies_over_64_kib_are_413() -> None:
    async with gateway() as gw:
        big = b'{"name": "' + b"x" * (65 * 1024) + b'", "icao": "ABC"}'
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token, data=big,
                                     headers={"Content-Type": "application/json"})
        assert_problem(status, body, 413, "payload_too_large")

        async def chunks():  # no Content-Length: the limit applies while reading
            for _ in range(70):
                yield b"x" * 1024

        status, body = await gw.call("POST", "/api/tenants", gw.admin_token, data=chunks(),
                                     headers={"Content-Type": "application/json"})
        assert_problem(status, body, 413, "payload_too_large")


async def test_unknown_routes_and_methods_are_problems() -> None:
    async with gateway() as gw:
        status, body = await gw.call("GET", "/api/nowhere", gw.admin_token)
        assert_problem(status, body, 404, "not_found")
        status, body = await gw.call("PUT", "/api/tenants", gw.admin_token)
        assert_problem(status, body, 405, "method_not_allowed")


async def test_api_answers_are_never_stored_by_browsers_or_proxies() -> None:
    async with gateway() as gw:
        user_id, token, _key = await gw.pilot_with_api_key()
        auth = {"Authorization": f"Bearer {token}"}
        # The answers that hold a secret (a session token, an API key) first of all.
        login = await gw.client.post("/api/auth/login",
                                     json={"email": ADMIN_EMAIL, "password": PASSWORD})
        assert login.status == 200
        assert login.headers["Cache-Control"] == "no-store"
        key = await gw.client.post(f"/api/users/{user_id}/apikeys", json={"name": "CI"},
                                   headers=auth)
        assert key.status == 201
        assert key.headers["Cache-Control"] == "no-store"
        created = await gw.client.post("/api/pireps", json=pirep_body(), headers=auth)
        assert created.status == 201
        assert created.headers["Cache-Control"] == "no-store"
        pirep_id = (await created.json())["id"]
        for path in ("/api/me", f"/api/users/{user_id}", f"/api/users/{user_id}/apikeys",
                     f"/api/pireps/{pirep_id}", "/api/pireps", f"/api/pireps/{pirep_id}/history"):
            response = await gw.client.get(path, headers=auth)
            assert response.status == 200, path
            assert response.headers["Cache-Control"] == "no-store", path
        # The public description of the API is not one principal's data.
        assert "Cache-Control" not in (await gw.client.get("/api/openapi.json")).headers


async def test_a_pirep_read_with_its_current_etag_is_304_without_a_body() -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        _, email = await gw.user("Pilot", tenant)
        pilot = await gw.login(email)
        _, admin_email = await gw.user("TenantAdmin", tenant)
        reviewer = await gw.login(admin_email)
        status, created = await gw.call("POST", "/api/pireps", pilot, json=pirep_body())
        assert status == 201
        path = f"/api/pireps/{created['id']}"
        first = await gw.client.get(path, headers={"Authorization": f"Bearer {pilot}"})
        etag = first.headers["ETag"]

        async def read(if_none_match: str, method: str = "GET") -> Any:
            return await gw.client.request(method, path, headers={
                "Authorization": f"Bearer {pilot}", "If-None-Match": if_none_match})

        for current in (etag, f"W/{etag}", f'"999", {etag}', "*"):
            response = await read(current)
            assert response.status == 304, current
            assert await response.read() == b""
            assert response.headers["ETag"] == etag
            assert response.headers["Cache-Control"] == "no-store"
        assert (await read(etag, "HEAD")).status == 304
        stale = await read('"999"')
        assert stale.status == 200
        assert (await stale.json())["id"] == created["id"]
        # A review makes a new version: the old tag no longer matches.
        status, reviewed = await gw.call("POST", f"{path}/review", reviewer,
                                         json={"decision": "accept"})
        assert status == 200, reviewed
        fresh = await read(etag)
        assert fresh.status == 200
        assert fresh.headers["ETag"] != etag
        assert (await fresh.json())["status"] == "accepted"
        # Scoping comes first: another tenant learns nothing, not even "not modified".
        _, other_token, _ = await gw.pilot_with_api_key()
        foreign = await gw.client.get(path, headers={"Authorization": f"Bearer {other_token}",
                                                     "If-None-Match": "*"})
        assert foreign.status == 404


async def test_head_answers_every_get_operation_with_its_headers_and_no_body() -> None:
    async with gateway() as gw:
        user_id, token, _key = await gw.pilot_with_api_key()
        status, created = await gw.call("POST", "/api/pireps", token, json=pirep_body())
        assert status == 201, created
        auth = {"Authorization": f"Bearer {token}"}
        for path in ("/api/me", f"/api/pireps/{created['id']}", "/api/pireps",
                     f"/api/users/{user_id}", f"/api/pireps/{created['id']}/history"):
            got = await gw.client.get(path, headers=auth)
            assert got.status == 200, path
            body = await got.read()
            head = await gw.client.head(path, headers=auth)
            assert head.status == 200, path
            assert await head.read() == b"", path
            for name in ("Content-Type", "ETag", "Cache-Control"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
            assert head.headers.get("Content-Length") in (None, str(len(body))), path
        # HEAD goes through the same authentication and scoping as GET.
        head = await gw.client.head("/api/me")
        assert head.status == 401
        assert await head.read() == b""
        _, other_token, _ = await gw.pilot_with_api_key()
        head = await gw.client.head(f"/api/pireps/{created['id']}",
                                    headers={"Authorization": f"Bearer {other_token}"})
        assert head.status == 404
        # Only where GET is served: HEAD on a command is still 405, with its Allow.
        head = await gw.client.head("/api/auth/login")
        assert head.status == 405
        assert head.headers["Allow"] == "POST"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc",
                                    "Bearer albs_forged", "Bearer alb_forged"])
async def test_missing_or_bad_credentials_are_401(header: str | None) -> None:
    async with gateway() as gw:
        headers = {"Authorization": header} if header else {}
        status, body = await gw.call("GET", "/api/me", headers=headers)
        assert_problem(status, body, 401, "unauthorized")
        status, body = await gw.call("GET", "/api/me", headers={"X-API-Key": "alb_forged"})
        assert_problem(status, body, 401, "unauthorized")


async def test_an_unexpected_error_is_500_without_internals_and_logged(
        capsys: pytest.CaptureFixture[str]) -> None:
    async with gateway() as gw:
        async def boom(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("secret internals /etc/passwd")

        gw.read_models.get_tenant = boom  # type: ignore[method-assign]
        status, body = await gw.call("GET", "/api/tenants/abc", gw.admin_token)
        assert_problem(status, body, 500, "internal")
        assert "internals" not in str(body)
        logged = capsys.readouterr().out
        assert "unhandled error" in logged
        assert "Traceback" in logged
        assert "RuntimeError" in logged


async def test_a_store_outage_is_503_with_retry_after() -> None:
    async with gateway() as gw:
        async def down(*_args: object, **_kwargs: object) -> None:
            raise StoreUnavailable("nats down")

        gw.read_models.list_tenants = down  # type: ignore[method-assign]
        response = await gw.client.get("/api/tenants",
                                       headers={"Authorization": f"Bearer {gw.admin_token}"})
        assert_problem(response.status, await response.json(content_type=None), 503,
                       "unavailable")
        assert int(response.headers["Retry-After"]) >= 1
        gw.store.append = down  # type: ignore[method-assign]
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token,
                                     json={"name": "Down Air", "icao": "DWN"})
        assert_problem(status, body, 503, "unavailable")


async def test_a_command_the_store_never_confirmed_is_504_not_503() -> None:
    # 503 promises that nothing was written; this command may have been.
    async with gateway() as gw:
        async def unconfirmed(*_args: object, **_kwargs: object) -> None:
            raise OutcomeUnknown("no answer")

        gw.store.append = unconfirmed  # type: ignore[method-assign]
        response = await gw.client.post("/api/tenants", json={"name": "Maybe Air", "icao": "MBY"},
                                        headers={"Authorization": f"Bearer {gw.admin_token}"})
        body = await response.json(content_type=None)
        assert_problem(response.status, body, 504, "outcome_unknown")
        assert "read the resource" in body["detail"]
        assert int(response.headers["Retry-After"]) >= 1
        _, spec = await gw.call("GET", "/api/openapi.json")
        review = spec["paths"]["/api/pireps/{pirep_id}/review"]["post"]["responses"]
        assert "outcome_unknown" in review["504"]["description"]
        assert "Retry-After" in review["504"]["headers"]
        assert "504" not in spec["paths"]["/api/pireps"]["get"]["responses"]
        assert "504" not in spec["paths"]["/api/auth/logout"]["post"]["responses"]


# Tenants and users --------------------------------------------------------------------------

async def test_tenants_are_created_once_per_icao_with_a_sequence_header() -> None:
    async with gateway() as gw:
        response = await gw.client.post("/api/tenants", json={"name": "Speedbird",
                                                              "icao": "BAW", "iata": "BA"},
                                        headers={"Authorization": f"Bearer {gw.admin_token}"})
        assert response.status == 201
        assert int(response.headers["Albatross-Sequence"]) > 0
        tenant = await response.json()
        assert tenant["icao"] == "BAW"
        assert tenant["pilot_count"] == 0
        status, body = await gw.call("POST", "/api/tenants", gw.admin_token,
                                     json={"name": "Other", "icao": "BAW"})
        assert_problem(status, body, 409, "icao_taken")
        status, body = await gw.call("GET", f"/api/tenants/{tenant['id']}", gw.admin_token)
        assert status == 200
        assert body["name"] == "Speedbird"
        status, body = await gw.call("GET", "/api/tenants?limit=0", gw.admin_token)
        assert_problem(status, body, 422, "validation_failed")
        status, body = await gw.call("GET", "/api/tenants?cursor=garbage", gw.admin_token)
        assert_problem(status, body, 422, "validation_failed")


async def test_emails_are_unique_case_insensitively() -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        await gw.user("Pilot", tenant, email="Jane@Example.com")
        status, body = await gw.call("POST", "/api/users", gw.admin_token, json={
            "email": "jane@EXAMPLE.com", "display_name": "J", "password": PASSWORD,
            "role": "Pilot", "tenant_id": tenant})
        assert_problem(status, body, 409, "email_taken")
        token = await gw.login("JANE@example.com")
        status, body = await gw.call("GET", "/api/me", token)
        assert status == 200
        assert body["email"] == "jane@example.com"


async def test_registration_validates_every_field() -> None:
    async with gateway() as gw:
        status, body = await gw.call("POST", "/api/users", gw.admin_token, json={
            "email": "not-an-email", "display_name": "X", "password": "short",
            "role": "Pilot"})
        assert_problem(status, body, 422, "validation_failed")
        status, body = await gw.call("POST", "/api/users", gw.admin_token, json={
            "email": "bad@", "display_name": "X", "password": PASSWORD, "role": "Pilot"})
        assert_problem(status, body, 422, "validation_failed")
        assert {e["field"] for e in body["errors"]} == {"email", "tenant_id"}
        status, body = await gw.call("POST", "/api/users", gw.admin_token, json={
            "email": "x@example.com", "display_name": "X", "password": PASSWORD,
            "role": "Pilot", "tenant_id": "no-such-tenant"})
        assert_problem(status, body, 422, "validation_failed")
        assert body["errors"] == [{"field": "tenant_id", "message": "no such tenant"}]


# Login, sessions, throttling ----------------------------------------------------------------

async def test_unknown_email_and_wrong_password_get_the_same_401() -> None:
    async with gateway() as gw:
        a = await gw.client.post("/api/auth/login",
                                 json={"email": ADMIN_EMAIL, "password": "wrong password!"})
        b = await gw.client.post("/api/auth/login",
                                 json={"email": "ghost@example.com", "password": PASSWORD})
        assert a.status == b.status == 401
        body_a, body_b = await a.json(content_type=None), await b.json(content_type=None)
        assert body_a == body_b
        assert body_a["code"] == "unauthorized"


async def test_five_failures_throttle_even_the_right_password_until_the_window_passes() -> None:
    async with gateway() as gw:
        for _ in range(5):
            status, _ = await gw.call("POST", "/api/auth/login",
                                      json={"email": ADMIN_EMAIL, "password": "wrong!" * 3})
            assert status == 401
        response = await gw.client.post("/api/auth/login",
                                        json={"email": ADMIN_EMAIL.upper(),
                                              "password": PASSWORD})
        assert_problem(response.status, await response.json(content_type=None), 429,
                       "rate_limited")
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        # Throttling is per email: another user is not affected.
        status, _ = await gw.call("POST", "/api/auth/login",
                                  json={"email": "other@example.com", "password": "x" * 12})
        assert status == 401
        gw.clock.set(gw.clock.now() + timedelta(minutes=15, seconds=1))
        assert await gw.login(ADMIN_EMAIL)


async def test_logout_ends_the_session_and_sessions_expire() -> None:
    async with gateway(session_ttl=timedelta(hours=1)) as gw:
        other = await gw.login(ADMIN_EMAIL)
        response = await gw.client.post("/api/auth/logout",
                                        headers={"Authorization": f"Bearer {other}"})
        assert response.status == 204
        status, body = await gw.call("GET", "/api/me", other)
        assert_problem(status, body, 401, "unauthorized")
        assert (await gw.call("GET", "/api/me", gw.admin_token))[0] == 200
        gw.clock.set(gw.clock.now() + timedelta(hours=1))
        status, body = await gw.call("GET", "/api/me", gw.admin_token)
        assert_problem(status, body, 401, "unauthorized")


async def test_a_revocation_reaches_another_replica_within_one_second() -> None:
    async with gateway(cache_ttl=0.5) as gw:
        token = await gw.login(ADMIN_EMAIL)
        # A second replica: its own authenticator and cache over the same stores.
        from albatross.application.auth import Authenticator

        replica = Authenticator(gw.repos.users, gw.sessions, gw.store, gw.clock,
                                cache_ttl=0.5)
        assert isinstance(await replica.authenticate(token), Principal)
        assert (await gw.call("POST", "/api/auth/logout", token))[0] == 204
        assert (await gw.call("GET", "/api/me", token))[0] == 401  # this replica: at once
        await asyncio.sleep(0.55)
        assert await replica.authenticate(token) is None


# Passwords ----------------------------------------------------------------------------------

async def test_self_password_change_keeps_this_session_and_revokes_the_others() -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        user_id, email = await gw.user("Pilot", tenant)
        first, second = await gw.login(email), await gw.login(email)
        status, body = await gw.call("POST", f"/api/users/{user_id}/password", first,
                                     json={"current_password": "not it at all",
                                           "new_password": "a new long password"})
        assert_problem(status, body, 422, "validation_failed")
        assert body["errors"][0]["field"] == "current_password"
        response = await gw.client.post(f"/api/users/{user_id}/password",
                                        json={"current_password": PASSWORD,
                                              "new_password": "a new long password"},
                                        headers={"Authorization": f"Bearer {first}"})
        assert response.status == 204
        assert int(response.headers["Albatross-Sequence"]) > 0
        assert (await gw.call("GET", "/api/me", first))[0] == 200
        assert (await gw.call("GET", "/api/me", second))[0] == 401
        assert await gw.login(email, "a new long password")


class HeldHasher(Argon2PasswordHasher):
    """Cheap argon2 whose hash of one chosen password waits until the test lets it finish."""

    def __init__(self, held_password: str) -> None:
        super().__init__(TEST_ONLY_CHEAP, max_concurrency=2)
        self.held_password = held_password
        self.hashing = asyncio.Event()
        self.release = asyncio.Event()

    async def hash(self, password: str) -> str:
        if password == self.held_password:
            self.hashing.set()
            await self.release.wait()
        return await super().hash(password)


async def _change_while_held(gw: Any, hasher: HeldHasher, user_id: str, token: str,
                             meanwhile: Callable[[], Awaitable[None]]) -> tuple[int, Any]:
    """A self change to ``hasher.held_password`` with ``meanwhile`` landing during its hash."""
    change = asyncio.create_task(gw.call(
        "POST", f"/api/users/{user_id}/password", token,
        json={"current_password": PASSWORD, "new_password": hasher.held_password}))
    await asyncio.wait_for(hasher.hashing.wait(), 5)
    await meanwhile()
    hasher.release.set()
    result: tuple[int, Any] = await change
    return result


async def test_a_self_change_checked_before_an_admin_reset_cannot_undo_it() -> None:
    hasher = HeldHasher("the attacker's password")
    async with gateway(hasher=hasher) as gw:
        user_id, email = await gw.user("Pilot", await gw.tenant())
        stolen = await gw.login(email)

        async def reset() -> None:
            assert (await gw.call("POST", f"/api/users/{user_id}/password", gw.admin_token,
                                  json={"new_password": "the admin's temporary"}))[0] == 204

        status, body = await _change_while_held(gw, hasher, user_id, stolen, reset)
        # PASSWORD stopped being the current password when the reset landed.
        assert_problem(status, body, 422, "validation_failed")
        assert body["errors"][0]["field"] == "current_password"
        assert (await gw.call("GET", "/api/me", stolen))[0] == 401
        token = await gw.login(email, "the admin's temporary")
        assert (await gw.call("GET", "/api/me", token))[1]["must_change_password"] is True
        status, _ = await gw.call("POST", "/api/auth/login",
                                  json={"email": email, "password": "the attacker's password"})
        assert status == 401


async def test_of_two_changes_from_one_old_password_only_the_first_lands() -> None:
    hasher = HeldHasher("the second new password")
    async with gateway(hasher=hasher) as gw:
        user_id, email = await gw.user("Pilot", await gw.tenant())
        slow, fast = await gw.login(email), await gw.login(email)

        async def other_change() -> None:
            assert (await gw.call("POST", f"/api/users/{user_id}/password", fast,
                                  json={"current_password": PASSWORD,
                                        "new_password": "the first new password"}))[0] == 204

        status, body = await _change_while_held(gw, hasher, user_id, slow, other_change)
        assert_problem(status, body, 422, "validation_failed")
        assert await gw.login(email, "the first new password")


async def test_a_self_change_survives_an_unrelated_write_to_the_user() -> None:
    hasher = HeldHasher("a brand new password")
    async with gateway(hasher=hasher) as gw:
        user_id, email = await gw.user("Pilot", await gw.tenant())
        token = await gw.login(email)

        async def new_key() -> None:
            assert (await gw.call("POST", f"/api/users/{user_id}/apikeys", token,
                                  json={"name": "ACARS"}))[0] == 201

        status, body = await _change_while_held(gw, hasher, user_id, token, new_key)
        assert status == 204, body
        assert (await gw.call("GET", "/api/me", token))[0] == 200
        assert await gw.login(email, "a brand new password")


async def test_wrong_current_passwords_are_throttled_like_logins() -> None:
    async with gateway() as gw:
        user_id, email = await gw.user("Pilot", await gw.tenant())
        token = await gw.login(email)
        path = f"/api/users/{user_id}/password"
        for guess in range(5):
            status, body = await gw.call("POST", path, token, json={
                "current_password": f"guess number {guess}",
                "new_password": f"guess number {guess}"})
            assert_problem(status, body, 422, "validation_failed")
        response = await gw.client.post(path, json={"current_password": PASSWORD,
                                                    "new_password": "a new long password"},
                                        headers={"Authorization": f"Bearer {token}"})
        assert_problem(response.status, await response.json(content_type=None), 429,
                       "rate_limited")
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        assert await gw.login(email)  # a login's own count is separate
        gw.clock.set(gw.clock.now() + timedelta(minutes=15, seconds=1))
        token = await gw.login(email)
        assert (await gw.call("POST", path, token, json={
            "current_password": PASSWORD, "new_password": "a new long password"}))[0] == 204


async def test_a_right_current_password_clears_the_failures() -> None:
    async with gateway() as gw:
        user_id, email = await gw.user("Pilot", await gw.tenant())
        token = await gw.login(email)
        path = f"/api/users/{user_id}/password"
        current = PASSWORD
        for round_ in range(2):
            for guess in range(4):
                assert (await gw.call("POST", path, token, json={
                    "current_password": f"guess {guess} of {round_}",
                    "new_password": "whatever it may be"}))[0] == 422
            new = f"the password of round {round_}"
            assert (await gw.call("POST", path, token, json={
                "current_password": current, "new_password": new}))[0] == 204
            current = new


async def test_admin_reset_forces_a_change_before_anything_else() -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        user_id, email = await gw.user("Pilot", tenant)
        old = await gw.login(email)
        assert (await gw.call("POST", f"/api/users/{user_id}/password", gw.admin_token,
                              json={"new_password": "temporary password"}))[0] == 204
        assert (await gw.call("GET", "/api/me", old))[0] == 401
        token = await gw.login(email, "temporary password")
        status, body = await gw.call("GET", "/api/tenants", token)
        assert_problem(status, body, 403, "password_change_required")
        status, body = await gw.call("GET", "/api/me", token)
        assert status == 200
        assert body["must_change_password"] is True
        status, body = await gw.call("POST", "/api/users/someone-else/password", token,
                                     json={"new_password": "whatever it is!"})
        assert_problem(status, body, 403, "password_change_required")
        status, body = await gw.call("POST", f"/api/users/{user_id}/password", token,
                                     json={"current_password": "temporary password",
                                           "new_password": "temporary password"})
        assert_problem(status, body, 422, "validation_failed")
        assert body["errors"][0]["field"] == "new_password"
        assert (await gw.call("GET", "/api/me", token))[1]["must_change_password"] is True
        assert (await gw.call("POST", f"/api/users/{user_id}/password", token,
                              json={"current_password": "temporary password",
                                    "new_password": "my own new password"}))[0] == 204
        assert (await gw.call("GET", "/api/tenants", token))[0] == 200


async def test_block_times_are_answered_in_utc_whatever_offset_was_sent() -> None:
    async with gateway() as gw:
        _, token, _ = await gw.pilot_with_api_key()
        status, created = await gw.call("POST", "/api/pireps", token, json=pirep_body(
            block_off_at="2026-11-26T10:00:00+02:00", block_on_at="2026-11-26T12:30:00+02:00"))
        assert status == 201, created
        assert (created["block_off_at"], created["block_on_at"]) == (
            "2026-11-26T08:00:00Z", "2026-11-26T10:30:00Z")
        status, read = await gw.call("GET", f"/api/pireps/{created['id']}", token)
        assert read == created


@pytest.mark.parametrize(("if_match", "expected"), [
    ("*", 200), ('"{v}"', 200), ('"999", "{v}"', 200), (' "{v}" ,"7"', 200), ("{v}", 200),
    ('W/"{v}"', 412), ('W/"999", W/"{v}"', 412), ('"999"', 412), ("", 412),
    ("garbage", 412), ('"{v}', 412),
])
async def test_if_match_compares_strongly_and_takes_lists_and_star(if_match: str,
                                                                   expected: int) -> None:
    """RFC 9110 13.1.1: ``*`` matches any current PIREP, a list matches if one tag does,
    and a weak tag never matches."""
    async with gateway() as gw:
        _, token, _ = await gw.pilot_with_api_key()
        status, pirep = await gw.call("POST", "/api/pireps", token, json=pirep_body())
        assert status == 201
        status, body = await gw.call("POST", f"/api/pireps/{pirep['id']}/review",
                                     gw.admin_token, json={"decision": "accept"},
                                     headers={"If-Match": if_match.format(v=pirep["version"])})
        assert status == expected, body
        if expected == 412:
            assert_problem(status, body, 412, "precondition_failed")
            status, body = await gw.call("POST", "/api/pireps/no-such-pirep/review",
                                         gw.admin_token, json={"decision": "accept"},
                                         headers={"If-Match": if_match})
            assert_problem(status, body, 404, "not_found")


async def test_a_generated_admin_password_must_be_changed() -> None:
    async with gateway(admin_must_change=True) as gw:
        status, body = await gw.call("GET", "/api/setup")
        assert body == {"initialized": True}
        status, body = await gw.call("POST", "/api/auth/login",
                                     json={"email": ADMIN_EMAIL, "password": PASSWORD})
        assert status == 401  # the generated password is not PASSWORD


# API keys -----------------------------------------------------------------------------------

async def test_api_keys_are_shown_once_work_in_both_headers_and_can_be_revoked() -> None:
    async with gateway() as gw:
        user_id, token, created = await gw.pilot_with_api_key()
        key = created["key"]
        assert key.startswith("alb_")
        assert len(key) >= 4 + 22
        assert key.startswith(created["prefix"])
        assert created["prefix"] != key
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            status, me = await gw.call("GET", "/api/me", headers=headers)
            assert status == 200
            assert me["id"] == user_id
        status, listed = await gw.call("GET", f"/api/users/{user_id}/apikeys", token)
        assert status == 200
        assert [k["id"] for k in listed["items"]] == [created["id"]]
        assert "key" not in listed["items"][0]
        assert key not in str(listed)
        status, _ = await gw.call("DELETE", f"/api/users/{user_id}/apikeys/{created['id']}",
                                  token)
        assert status == 204
        assert (await gw.call("GET", "/api/me", headers={"X-API-Key": key}))[0] == 401
        status, body = await gw.call("DELETE",
                                     f"/api/users/{user_id}/apikeys/{created['id']}", token)
        assert_problem(status, body, 409, "invalid_state")
        status, listed = await gw.call("GET", f"/api/users/{user_id}/apikeys", token)
        assert listed["items"][0]["revoked_at"] is not None


async def test_last_used_at_is_kept_with_one_event_per_flush_not_per_request() -> None:
    async with gateway() as gw:
        user_id, token, created = await gw.pilot_with_api_key()
        usage = gw.deps.api_key_usage
        assert usage is not None
        assert await usage.flush() == 0  # sessions are not API keys: nothing noted
        before = await gw.store.inner.last_sequence()
        for _ in range(20):
            assert (await gw.call("GET", "/api/me", headers={"X-API-Key": created["key"]}))[0] \
                == 200
        # Twenty uses, no write yet: last_used_at costs nothing per request.
        assert await gw.store.inner.last_sequence() == before
        assert await usage.flush() == 1
        assert await gw.store.inner.last_sequence() == before + 1
        assert await usage.flush() == 0
        status, listed = await gw.call("GET", f"/api/users/{user_id}/apikeys", token)
        assert status == 200
        last_used = listed["items"][0]["last_used_at"]
        assert last_used is not None
        assert datetime.fromisoformat(last_used) > datetime.fromisoformat(created["created_at"])


# PIREPs -------------------------------------------------------------------------------------

async def test_pirep_submit_review_history_and_precondition() -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        _, pilot_email = await gw.user("Pilot", tenant)
        pilot = await gw.login(pilot_email)
        status, body = await gw.call("POST", "/api/pireps", gw.admin_token, json=pirep_body())
        assert_problem(status, body, 403, "forbidden")
        status, body = await gw.call("POST", "/api/pireps", pilot,
                                     json=pirep_body(block_on_at="2026-11-26T07:00:00Z"))
        assert_problem(status, body, 422, "validation_failed")
        assert body["errors"][0]["field"] == "block_on_at"
        status, pirep = await gw.call("POST", "/api/pireps", pilot, json=pirep_body())
        assert status == 201
        assert pirep["status"] == "pending"
        assert pirep["tenant_id"] == tenant
        status, body = await gw.call("POST", f"/api/pireps/{pirep['id']}/review",
                                     gw.admin_token, json={"decision": "accept"},
                                     headers={"If-Match": f'"{pirep["version"] + 1}"'})
        assert_problem(status, body, 412, "precondition_failed")
        status, reviewed = await gw.call("POST", f"/api/pireps/{pirep['id']}/review",
                                         gw.admin_token, json={"decision": "accept",
                                                               "comment": "nice"},
                                         headers={"If-Match": f'"{pirep["version"]}"'})
        assert status == 200
        assert reviewed["status"] == "accepted"
        assert reviewed["reviewed_by"]
        assert reviewed["version"] > pirep["version"]
        status, body = await gw.call("POST", f"/api/pireps/{pirep['id']}/review",
                                     gw.admin_token, json={"decision": "reject"})
        assert_problem(status, body, 409, "invalid_state")
        status, history = await gw.call("GET", f"/api/pireps/{pirep['id']}/history", pilot)
        assert status == 200
        assert [i["type"] for i in history["items"]] == ["PirepSubmitted", "PirepAccepted"]
        status, listed = await gw.call("GET", "/api/pireps?status=accepted", pilot)
        assert [p["id"] for p in listed["items"]] == [pirep["id"]]
        status, body = await gw.call("GET", "/api/pireps?status=bogus", pilot)
        assert_problem(status, body, 422, "validation_failed")
        status, body = await gw.call("POST", "/api/pireps/no-such/review", gw.admin_token,
                                     json={"decision": "accept"})
        assert_problem(status, body, 404, "not_found")


async def test_idempotency_key_returns_the_first_pirep() -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        _, email = await gw.user("Pilot", tenant)
        token = await gw.login(email)
        headers = {"Idempotency-Key": "flight-42"}
        first = await gw.call("POST", "/api/pireps", token, json=pirep_body(), headers=headers)
        before = await gw.store.last_sequence()
        again = await gw.call("POST", "/api/pireps", token, json=pirep_body(), headers=headers)
        assert first[0] == again[0] == 201
        assert first[1]["id"] == again[1]["id"]
        assert await gw.store.last_sequence() == before  # nothing was written
        other = await gw.call("POST", "/api/pireps", token, json=pirep_body(),
                              headers={"Idempotency-Key": "flight-43"})
        assert other[1]["id"] != first[1]["id"]
        # Another user's identical key is another PIREP.
        _, email2 = await gw.user("Pilot", tenant)
        token2 = await gw.login(email2)
        theirs = await gw.call("POST", "/api/pireps", token2, json=pirep_body(),
                               headers=headers)
        assert theirs[1]["id"] != first[1]["id"]
        # Past the contract's 10 minutes the key is free again: a new PIREP.
        gw.clock.set(gw.clock.now() + timedelta(minutes=11))
        later = await gw.call("POST", "/api/pireps", token, json=pirep_body(), headers=headers)
        assert later[0] == 201, later
        assert later[1]["id"] != first[1]["id"]


async def test_read_your_writes_waits_for_the_sequence_or_answers_503() -> None:
    async with gateway() as gw:
        gw.store.auto_project = False
        response = await gw.client.post("/api/tenants", json={"name": "Lag Air", "icao": "LAG"},
                                        headers={"Authorization": f"Bearer {gw.admin_token}"})
        sequence = response.headers["Albatross-Sequence"]
        tenant_id = (await response.json())["id"]
        headers = {"Authorization": f"Bearer {gw.admin_token}",
                   "Albatross-Min-Sequence": sequence}
        late = await gw.client.get(f"/api/tenants/{tenant_id}", headers=headers)
        assert_problem(late.status, await late.json(content_type=None), 503, "unavailable")
        assert late.headers["Retry-After"]
        pending = asyncio.ensure_future(gw.client.get(f"/api/tenants/{tenant_id}",
                                                      headers=headers))
        await asyncio.sleep(0.05)
        await gw.read_models.catch_up(gw.store.inner)
        assert (await pending).status == 200
        status, body = await gw.call("GET", "/api/tenants", gw.admin_token,
                                     headers={"Albatross-Min-Sequence": "soon"})
        assert_problem(status, body, 400, "malformed_request")


# OpenAPI, docs, operations ------------------------------------------------------------------

async def test_openapi_is_valid_3_1_and_lists_every_operation() -> None:
    async with gateway() as gw:
        status, spec = await gw.call("GET", "/api/openapi.json")
        assert status == 200
        validate(spec)
        assert spec["openapi"].startswith("3.1")
        assert len([m for p in spec["paths"].values() for m in p]) == 19
        cache_controlled = [op["operationId"] for path in spec["paths"].values()
                            for op in path.values()
                            if any(p["name"] == "Cache-Control" for p in op.get("parameters", []))]
        assert cache_controlled == ["getPirep"]
        docs = await gw.client.get("/api/docs")
        html = await docs.text()
        assert docs.status == 200
        assert "openapi.json" in html
        assert "http://" not in html
        assert "https://" not in html
        assert (await gw.client.get("/healthz")).status == 200
        metrics = await (await gw.client.get("/metrics")).text()
        assert "albatross_http_requests_total" in metrics


async def test_production_password_parameters_are_argon2id_above_owasp() -> None:
    from argon2 import extract_parameters

    from albatross.adapters.passwords import PRODUCTION, Argon2PasswordHasher

    hasher = Argon2PasswordHasher(PRODUCTION, max_concurrency=1)
    try:
        encoded = await hasher.hash("a password to hash")
        params = extract_parameters(encoded)
        assert encoded.startswith("$argon2id$")
        # OWASP: m >= 19 MiB with t >= 2 (or m >= 46 MiB with t >= 1), p >= 1.
        assert params.memory_cost >= 19 * 1024
        assert params.time_cost >= 2
        assert await hasher.verify(encoded, "a password to hash")
        assert not await hasher.verify(encoded, "another password!")
        assert not hasher.needs_rehash(encoded)
        assert hasher.needs_rehash(encoded.replace("m=65536", "m=19456"))
    finally:
        hasher.close()


async def test_the_web_ui_is_served_with_a_spa_fallback(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<html>albatross ui</html>")
    (tmp_path / "assets" / "app.js").write_text("console.log('hi')")
    (tmp_path.parent / "outside.txt").write_text("secret")
    async with gateway() as gw:
        registry = CollectorRegistry()
        deps = dataclasses.replace(gw.deps, web_dir=tmp_path, registry=registry,
                                   ops=OpsEndpoints(registry))
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(deps)))
        await client.start_server()
        try:
            # A NUL, a name over the filesystem's 255 bytes, a path over its 4,096 bytes: no
            # such file, so the UI, not a 500 (they raised ValueError and OSError).
            for path in ("/", "/pireps/123", "/%2e%2e/outside.txt", "/%00", "/a%00b/c",
                         "/" + "n" * 300, "/assets/" + "n" * 300 + ".js",
                         "/" + "/".join(["d" * 200] * 25)):
                response = await client.get(path)
                assert response.status == 200
                assert await response.text() == "<html>albatross ui</html>"
                assert response.headers["Cache-Control"] == "no-cache"
            asset = await client.get("/assets/app.js")
            assert await asset.text() == "console.log('hi')"
            # Hashed asset names change with their content: cache them for a year.
            assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            for path in ("/api/nowhere", "/api", "/api/"):
                missing = await client.get(path)
                assert missing.status == 404, path
                assert missing.content_type == "application/problem+json"
            assert await (await client.get("/apix")).text() == "<html>albatross ui</html>"
            assert (await client.get("/api/setup")).status == 200
            # The UI's catch-all does not reach under /api: a 405 lists the route's methods.
            for method, path, allowed in (
                    ("OPTIONS", "/api/auth/login", "POST"), ("GET", "/api/auth/login", "POST"),
                    ("PUT", "/api/users/u1/apikeys/k1", "DELETE"),
                    ("DELETE", "/api/me", "GET,HEAD")):
                refused = await client.request(method, path)
                assert refused.status == 405, (method, path)
                assert refused.headers["Allow"] == allowed, (method, path)
        finally:
            await client.close()


async def test_uncommon_http_methods_share_one_metrics_label() -> None:
    async with gateway() as gw:
        for method in ("PROPFIND", "MKCOL", "LOCK", "SEARCH", "PURGE"):
            response = await gw.client.request(method, "/api/no-such-thing")
            assert response.status in (404, 405)
        metrics = await (await gw.client.get("/metrics")).text()
        assert "PROPFIND" not in metrics
        assert "MKCOL" not in metrics
        assert 'method="OTHER"' in metrics


@pytest.mark.parametrize(("headers", "fresh"), [
    ({}, False), ({"Cache-Control": "max-age=60"}, False), ({"Cache-Control": "no-cache"}, True),
    ({"Cache-Control": "max-age=0, No-Cache"}, True), ({"Pragma": "no-cache"}, True)])
async def test_a_pirep_read_asks_for_a_fresh_answer_on_no_cache(headers: dict[str, str],
                                                                 fresh: bool) -> None:
    async with gateway() as gw:
        tenant = await gw.tenant()
        _, email = await gw.user("Pilot", tenant)
        pilot = await gw.login(email)
        status, pirep = await gw.call("POST", "/api/pireps", pilot, json=pirep_body())
        assert status == 201
        asked: list[bool] = []
        read = gw.read_models.get_pirep

        async def spy(principal: Any, pirep_id: str, *, fresh: bool = False) -> Any:
            asked.append(fresh)
            return await read(principal, pirep_id, fresh=fresh)

        gw.read_models.get_pirep = spy  # type: ignore[method-assign]
        status, body = await gw.call("GET", f"/api/pireps/{pirep['id']}", pilot, headers=headers)
        assert status == 200
        assert body["id"] == pirep["id"]
        assert asked == [fresh]
