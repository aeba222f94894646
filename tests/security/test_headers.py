"""Security headers on every kind of response of the gateway, the notifier and the ops server.

Every response: ``X-Content-Type-Options: nosniff``, a ``Referrer-Policy``, a
``Server`` header without a version banner and, except a 304, a ``Content-Security-Policy``.
HTML gets the UI's policy (or, for ``/api/docs``, one allowing exactly its inline blocks).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry

from albatross.application.principal import Principal
from albatross.ops_http import OpsEndpoints, serve_ops
from albatross.services.gateway.app import create_app
from albatross.services.gateway.docs_page import DOCS_HTML
from albatross.services.gateway.security_headers import ui_policy
from albatross.services.notifier.app import NotifierDeps
from albatross.services.notifier.app import create_app as create_notifier_app
from albatross.services.notifier.jetstream import (
    JetStreamChangeFeed,
    JetStreamRevocationSignals,
)
from tests.integration.test_notifier_support import TOPOLOGY, FakeAuthenticator, connected
from tests.unit.test_gateway_harness import Gateway, gateway

WEB_SOURCE = Path(__file__).resolve().parents[2] / "web" / "index.html"
Headers = CIMultiDictProxy[str]


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        assert name not in parsed, f"{name} twice in {policy}"
        parsed[name] = values
    return parsed


def assert_common(headers: Headers, what: str) -> None:
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "no-referrer", what
    server = headers.getall("Server", [])
    assert server == ["albatross"], f"{what}: Server {server}"


def assert_api(headers: Headers, what: str) -> None:
    assert_common(headers, what)
    policy = directives(headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"], what
    assert policy["frame-ancestors"] == ["'none'"], what


def assert_ui(headers: Headers, host: str, what: str) -> None:
    assert_common(headers, what)
    policy = directives(headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"], what  # no inline script, no eval
    assert policy["style-src"] == ["'self'"], what
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"], what
    assert headers["X-Frame-Options"] == "DENY"


@asynccontextmanager
async def gateway_with_ui(tmp_path: Path,
                          ws_upstream: str | None = None) -> AsyncIterator[tuple[Gateway,
                                                                           TestClient[Any, Any]]]:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(WEB_SOURCE.read_text())
    (tmp_path / "assets" / "app-1234.js").write_text("console.log('hi')")
    (tmp_path / "assets" / "app-1234.css").write_text("body{}")
    async with gateway() as gw:
        registry = CollectorRegistry()
        deps = dataclasses.replace(gw.deps, web_dir=tmp_path, registry=registry,
                                   ops=OpsEndpoints(registry), ws_upstream=ws_upstream)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(deps)))
        await client.start_server()
        try:
            yield gw, client
        finally:
            await client.close()


async def test_every_kind_of_gateway_response_carries_the_headers(tmp_path: Path) -> None:
    async with gateway_with_ui(tmp_path) as (gw, client):
        auth = {"Authorization": f"Bearer {gw.admin_token}"}
        host = f"{client.host}:{client.port}"
        api: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("GET", "/api/me", {"headers": auth}, 200, "application/json"),
            ("GET", "/api/me", {}, 401, "application/problem+json"),
            ("POST", "/api/tenants", {"headers": auth, "data": b"{"}, 400,
             "application/problem+json"),
            ("DELETE", "/api/me", {"headers": auth}, 405, "application/problem+json"),
            ("GET", "/api/nowhere", {}, 404, "application/problem+json"),
            ("POST", "/api/auth/logout", {"headers": {"Authorization": "Bearer nope"}}, 401,
             "application/problem+json"),
            ("GET", "/api/openapi.json", {}, 200, "application/json"),
            ("GET", "/assets/app-1234.js", {}, 200, "application/javascript"),
            ("GET", "/assets/app-1234.css", {}, 200, "text/css"),
            ("GET", "/healthz", {}, 200, "application/json"),
            ("GET", "/metrics", {}, 200, "text/plain"),
        ]
        for method, path, kwargs, status, content_type in api:
            response = await client.request(method, path, **kwargs)
            what = f"{method} {path}"
            assert response.status == status, what
            assert response.content_type == content_type, what
            assert_api(response.headers, what)
        for path in ("/", "/index.html", "/pireps/some-id"):  # the file and the SPA fallback
            response = await client.get(path)
            assert response.status == 200
            assert response.content_type == "text/html"
            assert_ui(response.headers, host, path)
        # A 304 must not carry a policy: browsers merge it into the cached page's headers.
        first = await client.get("/")
        again = await client.get("/", headers={"If-Modified-Since":
                                                first.headers["Last-Modified"]})
        assert again.status == 304
        assert_common(again.headers, "304")
        assert "Content-Security-Policy" not in again.headers


async def test_the_docs_page_policy_allows_exactly_its_inline_blocks(tmp_path: Path) -> None:
    async with gateway_with_ui(tmp_path) as (_gw, client):
        response = await client.get("/api/docs")
        assert response.status == 200
        html = await response.text()
        assert html == DOCS_HTML
        assert_common(response.headers, "/api/docs")
        policy = directives(response.headers["Content-Security-Policy"])
        assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
        for tag in ("script", "style"):
            blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
            assert blocks, tag
            digests = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()
                       for b in blocks]
            assert policy[f"{tag}-src"] == [f"'sha256-{d}'" for d in digests]
        assert policy["default-src"] == ["'none'"]
        assert policy["connect-src"] == ["'self'"]  # it fetches /api/openapi.json


def test_the_ui_source_needs_nothing_its_policy_forbids() -> None:
    """The UI's index.html: module scripts and styles from its origin, a data: icon, no inline
    script or style (Vite keeps that shape in the built file). A change that adds any must
    change the policy too."""
    html = WEB_SOURCE.read_text()
    policy = directives(ui_policy("example.test"))
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert "<style" not in html
    assert " style=" not in html
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        if url.startswith("data:"):
            assert "data:" in policy["img-src"]
        else:
            assert url.startswith("/"), url
            assert not url.startswith("//"), url


@pytest.mark.parametrize("host", ["evil.test; script-src *", "a b", "x" * 300, ""])
def test_a_strange_host_is_never_reflected_into_the_policy(host: str) -> None:
    policy = ui_policy(host)
    assert directives(policy)["connect-src"] == ["'self'"]
    assert "*" not in policy


@pytest.mark.real
async def test_websocket_upgrades_and_notifier_responses_carry_the_headers(
        nats_url: str, tmp_path: Path) -> None:
    principal = Principal("pilot-h", "Pilot", "tenant-h", session_id="s")
    registry = CollectorRegistry()
    async with connected(nats_url) as conn:
        deps = NotifierDeps(
            authenticator=FakeAuthenticator({"tok": principal}),
            feed=JetStreamChangeFeed(conn.js, TOPOLOGY.changes_stream),
            signals=JetStreamRevocationSignals(conn.nc,
                                               sessions_bucket=TOPOLOGY.sessions_bucket),
            registry=registry, ops=OpsEndpoints(registry))
        server = TestServer(create_notifier_app(deps))
        await server.start_server()
        try:
            url = str(server.make_url("/api/ws"))
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(url) as ws:
                    assert_api(ws._response.headers, "notifier 101")
                async with http.get(url) as plain:  # not an upgrade: refused by aiohttp
                    assert plain.status >= 400
                    assert_api(plain.headers, "notifier non-WS GET")
                for path in ("/healthz", "/readyz", "/metrics", "/nowhere"):
                    async with http.get(server.make_url(path)) as response:
                        assert_api(response.headers, f"notifier {path}")
            # Through the gateway's proxy at /api/ws.
            async with gateway_with_ui(tmp_path, ws_upstream=url) as (_gw, client):
                ws = await client.ws_connect("/api/ws")
                assert_api(ws._response.headers, "gateway 101")
                await ws.close()
        finally:
            await server.close()


async def test_the_standalone_ops_server_carries_the_headers() -> None:
    runner = await serve_ops("127.0.0.1", 0, OpsEndpoints(CollectorRegistry()))
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz", "/metrics", "/nowhere"):
                async with http.get(f"http://{host}:{port}{path}") as response:
                    assert_api(response.headers, f"ops {path}")
    finally:
        await runner.cleanup()


async def test_even_an_unparseable_request_gets_no_version_banner(tmp_path: Path) -> None:
    """aiohttp answers a request it cannot parse before any route or hook runs."""
    async with gateway_with_ui(tmp_path) as (_gw, client):
        for raw in (b"GARBAGE\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"):
            reader, writer = await asyncio.open_connection(client.host, client.port)
            try:
                writer.write(raw)
                await writer.drain()
                head = (await asyncio.wait_for(reader.read(4096), 5)).split(b"\r\n\r\n")[0]
            finally:
                writer.close()
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0].split()[1] == "400", lines
            assert [x for x in lines if x.lower().startswith("server:")] == ["Server: albatross"]
