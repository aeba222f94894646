"""The /api/ws relay to the notifier: frames both ways, close codes and Host/Origin forwarded."""

from __future__ import annotations

from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from albatross.ops_http import OpsEndpoints
from albatross.services.gateway.app import create_app
from tests.unit.test_gateway_harness import gateway


async def fake_notifier(seen: dict[str, str]) -> TestServer:
    async def handle(request: web.Request) -> web.StreamResponse:
        seen["host"] = request.host
        seen["origin"] = request.headers.get("Origin", "")
        if seen["origin"] == "https://evil.example":
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.data == "bye":
                await ws.close(code=4401, message=b"revoked")
                break
            await ws.send_str(f"echo:{message.data}")
        return ws

    app = web.Application()
    app.router.add_get("/api/ws", handle)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_the_relay_copies_frames_and_close_codes() -> None:
    seen: dict[str, str] = {}
    notifier = await fake_notifier(seen)
    try:
        async with gateway() as gw:
            registry = CollectorRegistry()
            deps = gw.deps.__class__(**{**gw.deps.__dict__, "registry": registry,
                                        "ops": OpsEndpoints(registry),
                                        "ws_upstream": str(notifier.make_url("/api/ws"))})
            client: TestClient[Any, Any] = TestClient(TestServer(create_app(deps)))
            await client.start_server()
            try:
                ws = await client.ws_connect("/api/ws", headers={"Origin": "http://x.test"})
                await ws.send_str("hello")
                reply = await ws.receive()
                assert reply.data == "echo:hello"
                await ws.send_str("bye")
                closing = await ws.receive()
                assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
                assert ws.close_code == 4401
                assert seen["origin"] == "http://x.test"
                assert seen["host"] == f"{client.host}:{client.port}"
                response = await client.get("/api/ws", headers={
                    "Origin": "https://evil.example", "Connection": "Upgrade",
                    "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
                assert response.status == 403
            finally:
                await client.close()
    finally:
        await notifier.close()
