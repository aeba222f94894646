"""No password, hash, session token or API-key secret in any log line or response."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from albatross.application.credentials import secret_hash
from albatross.observability import configure_logging
from tests.unit.test_gateway_harness import PASSWORD, gateway, pirep_body


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("gateway", "debug", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_a_full_flow_leaks_no_secret(captured_logs: io.StringIO) -> None:
    secrets: list[str] = [PASSWORD, "a brand new password", "reset by the admin", "wrong pw 123"]
    bodies: list[str] = []
    async with gateway() as gw:
        secrets.append(gw.admin_token)

        async def call(method: str, path: str, token: str | None = None,
                       **kwargs: object) -> tuple[int, object]:
            status, body = await gw.call(method, path, token, **kwargs)  # type: ignore[arg-type]
            bodies.append(str(body))
            return status, body

        tenant = await gw.tenant()
        user_id, email = await gw.user("Pilot", tenant)
        await call("POST", "/api/auth/login", json={"email": email, "password": "wrong pw 123"})
        token = await gw.login(email)
        secrets.append(token)
        _, created = await call("POST", f"/api/users/{user_id}/apikeys", token,
                                     json={"name": "ACARS"})
        assert isinstance(created, dict)
        key = created["key"]
        secrets.append(key)
        bodies.pop()  # the one response allowed to show the key
        await call("POST", "/api/pireps", headers={"X-API-Key": key}, json=pirep_body())
        await call("GET", "/api/me", headers={"Authorization": f"Bearer {key}"})
        await call("POST", "/api/users", gw.admin_token, json={
            "email": "x@example.com", "display_name": "X", "password": "too short",
            "role": "Pilot", "tenant_id": tenant})
        await call("POST", f"/api/users/{user_id}/password", token,
                   json={"current_password": PASSWORD, "new_password": "a brand new password"})
        await call("POST", f"/api/users/{user_id}/password", gw.admin_token,
                   json={"new_password": "reset by the admin"})
        await call("GET", "/api/users", gw.admin_token)
        await call("GET", f"/api/users/{user_id}/apikeys", gw.admin_token)
        await call("POST", "/api/auth/logout", gw.admin_token)
        await call("GET", "/api/me", headers={"Authorization": f"Bearer {token}"})
        # The stored forms: argon2 hashes and SHA-256 digests of tokens and keys.
        stream = await gw.store.locate("user", user_id)
        assert stream is not None
        user = (await gw.repos.users.load(stream)).state
        assert user is not None
        secrets += [user.password_hash, secret_hash(key), secret_hash(token)]
    logs = captured_logs.getvalue()
    assert "request" in logs  # the capture works
    everything = logs + "\n".join(bodies)
    assert "$argon2" not in everything
    for secret in secrets:
        assert secret not in everything, f"leaked: {secret[:6]}..."


async def test_a_request_too_malformed_to_parse_leaves_its_token_out_of_the_log(
        captured_logs: io.StringIO) -> None:
    async with gateway() as gw:
        token = gw.admin_token
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.client.port)
        writer.write(b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + token.encode() + b" " + b"x" * 9000 + b"\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    refused = [line for line in lines if "unparsable" in line["event"]]
    assert [(line["level"], "LineTooLong" in line["event"]) for line in refused] == [
        ("warning", True)], lines
    assert token not in captured_logs.getvalue()

