"""Bytes that are not UTF-8 (or not ASCII where only ASCII is valid) get a 4xx, never a 500.

HTTP clients can put any byte in a header or a body; aiohttp decodes header values with
``surrogateescape`` and msgspec raises ``UnicodeDecodeError`` (not its own ``DecodeError``)
for a string that is not UTF-8, so these inputs reach code that the JSON-level tests with
well-formed text never exercise. Sent here over a raw socket, byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from albatross.application.principal import Principal
from albatross.ops_http import OpsEndpoints
from albatross.services.gateway.app import create_app
from tests.integration.test_notifier_support import FakeAuthenticator, connected, notifier
from tests.unit.test_gateway_harness import gateway, pirep_body

# A WebSocket upgrade whose Sec-WebSocket-Key is not ASCII (aiohttp's own check raises
# ValueError on it instead of answering 400).
BAD_KEY_UPGRADE = (b"GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: \xff\xfe\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")


async def exchange(host: str, port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` as is; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, _, value in
                   (line.partition(": ") for line in lines[1:] if line)}
        body = await asyncio.wait_for(
            reader.readexactly(int(headers.get("content-length", "0"))), 10)
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: str, headers: bytes, body: bytes | None = None) -> bytes:
    head = b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s" % (
        method.encode(), path.encode(), headers)
    if body is None:
        return head + b"\r\n"
    return head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)


def problem_code(headers: dict[str, str], body: bytes) -> str:
    assert headers["content-type"].startswith("application/problem+json"), headers
    code: str = json.loads(body)["code"]
    return code


@pytest.mark.parametrize(("credential", "secret"), [
    (b"Authorization: Bearer ", b"\xff\xfe"),
    (b"Authorization: Bearer ", b"albs_\xc3\x28"),
    (b"X-API-Key: ", b"alb_\xff"),
    (b"X-API-Key: ", "alb_ключ".encode()),  # well-formed UTF-8, but no secret is issued so
])
async def test_a_secret_that_is_not_ascii_is_401(credential: bytes, secret: bytes) -> None:
    async with gateway() as gw:
        status, headers, body = await exchange(
            gw.client.host, gw.client.port,
            request("GET", "/api/me", credential + secret + b"\r\n"))
        assert status == 401
        assert problem_code(headers, body) == "unauthorized"


@pytest.mark.parametrize("body", [
    json.dumps(pirep_body(remarks="@")).encode().replace(b'"@"', b'"caf\xe9"'),  # Latin-1
    b'{"flight_number": "AB\xc3\x281"}',
    b'{"\xff": 1}',
    b'"\xed\xa0\x80"',  # an encoded surrogate: not UTF-8 either
])
async def test_a_body_that_is_not_utf8_is_400_and_stores_nothing(body: bytes) -> None:
    async with gateway() as gw:
        _user_id, email = await gw.user("Pilot", await gw.tenant())
        pilot = await gw.login(email)
        status, headers, answer = await exchange(
            gw.client.host, gw.client.port,
            request("POST", "/api/pireps", b"Authorization: Bearer %s\r\n" % pilot.encode(),
                    body))
        assert status == 400
        assert problem_code(headers, answer) == "malformed_request"
        listed, page = await gw.call("GET", "/api/pireps", pilot)
        assert listed == 200
        assert page["items"] == []


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000,
                                  b'{"a":' * 3000 + b"1" + b"}" * 3000])
async def test_a_body_nested_too_deeply_is_400(body: bytes) -> None:
    # Well-formed JSON under the size limit, but deeper than msgspec's recursion limit: the
    # generic decode (for a body the typed one refused) raised RecursionError.
    async with gateway() as gw:
        status, headers, answer = await exchange(
            gw.client.host, gw.client.port,
            request("POST", "/api/tenants",
                    b"Authorization: Bearer %s\r\n" % gw.admin_token.encode(), body))
        assert status == 400
        assert problem_code(headers, answer) == "malformed_request"


async def test_non_ascii_digits_are_not_a_sequence() -> None:
    async with gateway() as gw:
        status, headers, body = await exchange(
            gw.client.host, gw.client.port,
            request("GET", "/api/pireps",
                    b"Authorization: Bearer %s\r\nAlbatross-Min-Sequence: %s\r\n" % (
                        gw.admin_token.encode(), "\u0661\u0662".encode())))  # Arabic-Indic 12
        assert status == 400
        assert problem_code(headers, body) == "malformed_request"


async def test_the_gateway_relay_refuses_a_non_ascii_websocket_key() -> None:
    async with gateway() as gw:
        registry = CollectorRegistry()
        # Nothing listens upstream: the key is refused before the relay would connect.
        deps = dataclasses.replace(gw.deps, registry=registry, ops=OpsEndpoints(registry),
                                   ws_upstream="http://127.0.0.1:9/api/ws")
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(deps)))
        await client.start_server()
        try:
            status, headers, body = await exchange(client.host, client.port,
                                                   BAD_KEY_UPGRADE)
        finally:
            await client.close()
        assert status == 400
        assert problem_code(headers, body) == "malformed_request"


async def test_the_notifier_refuses_a_non_ascii_websocket_key(nats_url: str) -> None:
    async with connected(nats_url) as conn, notifier(
            conn, FakeAuthenticator({"tok": Principal("p", "Pilot", "t")})) as running:
        status, _headers, body = await exchange(running.server.host, running.server.port,
                                                BAD_KEY_UPGRADE)
    assert status == 400
    assert b"Handshake error" in body


async def test_non_ascii_digits_are_not_a_version_we_issued() -> None:
    async with gateway() as gw:
        _user_id, email = await gw.user("Pilot", await gw.tenant())
        pilot = await gw.login(email)
        status, pirep = await gw.call("POST", "/api/pireps", pilot, json=pirep_body())
        assert status == 201
        version = str(pirep["version"])
        # The same number in Arabic-Indic digits, which int() and a Unicode-aware `\d` accept.
        lookalike = "".join(chr(0x660 + int(digit)) for digit in version)
        assert int(lookalike) == pirep["version"]
        path = f"/api/pireps/{pirep['id']}/review"
        status, headers, body = await exchange(
            gw.client.host, gw.client.port,
            request("POST", path, b"Authorization: Bearer %s\r\nIf-Match: \"%s\"\r\n" % (
                gw.admin_token.encode(), lookalike.encode()), b'{"decision": "accept"}'))
        assert status == 412
        assert problem_code(headers, body) == "precondition_failed"
        status, _ = await gw.call("POST", path, gw.admin_token, json={"decision": "accept"},
                                  headers={"If-Match": f'"{version}"'})
        assert status == 200


@pytest.mark.parametrize("limit", ["%C2%B2", "9" * 5000, "%D9%A1%D9%A0", "0010x", "1e2"])
async def test_a_limit_that_is_not_ascii_digits_is_422(limit: str) -> None:
    # "²" passes str.isdigit() but not int(); 5,000 digits pass both checks but not int()'s
    # limit; Arabic-Indic "10" passes both and meant nothing here.
    async with gateway() as gw:
        status, body = await gw.call("GET", f"/api/pireps?limit={limit}", gw.admin_token)
        assert status == 422, body
        assert body["code"] == "validation_failed"
        assert body["errors"][0]["field"] == "limit"
