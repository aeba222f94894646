"""/healthz, /readyz and /metrics through a real aiohttp server on a loopback port."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from albatross.ops_http import OpsEndpoints, ReadinessCheck, serve_ops


async def _ok() -> None:
    return None


async def _refused() -> None:
    raise ConnectionRefusedError("connection refused")


async def _hangs() -> None:
    await asyncio.sleep(30)


def _client_for(endpoints: OpsEndpoints) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    endpoints.add_routes(app)
    return TestClient(TestServer(app))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def test_healthz_is_200_even_when_a_dependency_is_down(
        registry: CollectorRegistry) -> None:
    async with _client_for(OpsEndpoints(registry, {"nats": _refused})) as client:
        response = await client.get("/healthz")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_readyz_is_200_with_every_check_when_all_pass(registry: CollectorRegistry) -> None:
    checks: dict[str, ReadinessCheck] = {"nats": _ok, "postgres": _ok}
    async with _client_for(OpsEndpoints(registry, checks)) as client:
        response = await client.get("/readyz")
        assert response.status == 200
        assert await response.json() == {"status": "ok",
                                          "checks": {"nats": "ok", "postgres": "ok"}}


async def test_readyz_is_503_when_a_check_raises(registry: CollectorRegistry) -> None:
    checks: dict[str, ReadinessCheck] = {"nats": _ok, "postgres": _refused}
    async with _client_for(OpsEndpoints(registry, checks)) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["nats"] == "ok"
        assert body["checks"]["postgres"] == "ConnectionRefusedError: connection refused"


async def test_readyz_is_503_when_a_check_times_out_and_answers_in_time(
        registry: CollectorRegistry) -> None:
    checks: dict[str, ReadinessCheck] = {"nats": _hangs, "postgres": _ok}
    endpoints = OpsEndpoints(registry, checks, check_timeout=0.2)
    async with _client_for(endpoints) as client:
        started = asyncio.get_running_loop().time()
        response = await client.get("/readyz")
        elapsed = asyncio.get_running_loop().time() - started
        assert response.status == 503
        body = await response.json()
        assert body == {"status": "unavailable",
                        "checks": {"nats": "timeout after 0.2 s", "postgres": "ok"}}
        assert elapsed < 2.0


async def test_readyz_is_503_once_stopping(registry: CollectorRegistry) -> None:
    stopping = asyncio.Event()
    endpoints = OpsEndpoints(registry, {"nats": _ok}, stopping=stopping)
    async with _client_for(endpoints) as client:
        assert (await client.get("/readyz")).status == 200
        stopping.set()
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["checks"] == {"nats": "ok", "shutdown": "stopping"}


async def test_a_check_added_later_is_run(registry: CollectorRegistry) -> None:
    endpoints = OpsEndpoints(registry)
    async with _client_for(endpoints) as client:
        assert (await client.get("/readyz")).status == 200
        endpoints.add_check("nats", _refused)
        assert (await client.get("/readyz")).status == 503


async def test_metrics_serves_the_given_registry_only(registry: CollectorRegistry) -> None:
    requests = Counter("albatross_test_requests", "Requests seen by the test.",
                       registry=registry)
    requests.inc(3)
    async with _client_for(OpsEndpoints(registry)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
        assert "albatross_test_requests_total 3.0" in text
        # Not the process-global default registry (it would list python_gc_* and friends).
        assert "python_gc_objects_collected_total" not in text


async def test_serve_ops_listens_and_stops(registry: CollectorRegistry) -> None:
    runner = await serve_ops("127.0.0.1", 0, OpsEndpoints(registry, {"nats": _ok}))
    try:
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = await reader.read()
        writer.close()
        assert raw.split(b" ", 2)[1] == b"200"
        assert b'"nats": "ok"' in raw
    finally:
        await runner.cleanup()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)
