"""``GET /api/ws`` on the public origin, relayed to the notifier process.

The all-in-one run serves everything from one origin; the WebSocket itself is the notifier's.
The relay forwards the client's ``Host`` and ``Origin`` (the notifier checks same-origin
against them), copies frames both ways, and passes close codes through (4401, 4008, ...). In a
cluster an ingress routes ``/api/ws`` to the notifier directly and this relay is not used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import WSMsgType, web

from albatross.observability import get_logger

SESSION = web.AppKey("albatross.ws_client", aiohttp.ClientSession)
_FORWARDED = ("Origin", "User-Agent", "Sec-WebSocket-Protocol")
_BAD_GATEWAY = 1014  # RFC 6455 registry: "Bad Gateway"


def add_ws_relay(app: web.Application, upstream: str, path: str = "/api/ws") -> None:
    async def client(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(client)
    log = get_logger("gateway.ws")

    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
        headers["Host"] = request.host
        headers["X-Forwarded-For"] = request.remote or ""
        try:
            upstream_ws = await request.app[SESSION].ws_connect(upstream, headers=headers,
                                                                 autoping=True, heartbeat=None)
        except aiohttp.WSServerHandshakeError as exc:
            # The notifier refused the handshake (e.g. a foreign Origin): same status here.
            raise _refused(exc.status) from exc
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("notifier unreachable", error=type(exc).__name__)
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "2"}) from exc
        downstream = web.WebSocketResponse(autoping=True)
        await downstream.prepare(request)
        async with upstream_ws:
            pumps = [asyncio.create_task(_pump(downstream, upstream_ws)),
                     asyncio.create_task(_pump(upstream_ws, downstream))]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if not downstream.closed:
            code = upstream_ws.close_code or _BAD_GATEWAY
            await downstream.close(code=code)
        if not upstream_ws.closed:
            await upstream_ws.close(code=downstream.close_code or 1000)
        return downstream

    app.router.add_get(path, relay)


def _refused(status: int) -> web.HTTPException:
    if status == 403:
        return web.HTTPForbidden()
    if status in (400, 404, 426):
        return web.HTTPBadRequest()
    return web.HTTPBadGateway()


Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(source: Socket, sink: Socket) -> None:
    """Copy frames from ``source`` to ``sink``; on a close, close ``sink`` with its code."""
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.ERROR:
            break
    if not sink.closed:
        await sink.close(code=source.close_code or 1000)
