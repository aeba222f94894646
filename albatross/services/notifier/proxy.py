"""A WebSocket reverse proxy for the gateway: ``/api/ws`` on the public origin → the notifier.

The gateway mounts it (``mount_ws_proxy(app, "http://127.0.0.1:8082/api/ws")``) so that the
browser talks to one origin. Per connection it opens the upstream socket first (so an upstream
refusal, e.g. 403 for a bad ``Origin``, reaches the client as that HTTP status), then pipes
frames both ways and passes close codes (4401, 4008, 1001, ...) and reasons through.

The upstream sees the client's ``Origin`` and ``Host`` unchanged, so the notifier's same-origin
check holds, plus ``X-Forwarded-For``/``-Proto``/``-Host``. Backpressure carries through:
the proxy reads from one side only as fast as it can write to the other, so a slow browser
fills the notifier's queue for that socket and gets the notifier's 4008.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType, web

from albatross.observability import get_logger
from albatross.services.notifier.handshake import refuse_malformed_key
from albatross.services.notifier.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    MAX_CLIENT_MESSAGE_BYTES,
    aiohttp_max_msg_size,
)

_log = get_logger("albatross.notifier.proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLOSE_SERVICE_RESTART = 1012  # the upstream vanished without a close: reconnect and resume
_CLOSE_TIMEOUT = 3.0
_CLOSE_TYPES = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


def sendable(code: int | None) -> bool:
    """Whether ``code`` may be sent in a close frame (RFC 6455 section 7.4)."""
    if code is None:
        return False
    return code in {1000, 1001, 1002, 1003} or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _passed(code: int | None, fallback: int) -> int:
    """The code to pass on; ``fallback`` for 1005/1006 and the like (not sendable)."""
    return code if code is not None and sendable(code) else fallback


class WebSocketProxy:
    """Proxies WebSockets to ``upstream_url`` (``ws://`` or ``http://``)."""

    def __init__(self, upstream_url: str, *, session: aiohttp.ClientSession | None = None,
                 connect_timeout: float = 5.0, heartbeat: float | None = 25.0) -> None:
        self._upstream = upstream_url
        self._session = session
        self._own_session = session is None
        self._connect_timeout = connect_timeout
        self._heartbeat = heartbeat
        self._open: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refuse_malformed_key(request)  # before opening a connection upstream for nothing
        session = self._client_session()
        try:
            upstream = await session.ws_connect(
                self._upstream, headers=_forwarded_headers(request), autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=_CLOSE_TIMEOUT),
                max_msg_size=0, compress=0)
        except aiohttp.WSServerHandshakeError as exc:
            return _problem(exc.status if exc.status >= 400 else 502,
                            "forbidden" if exc.status == 403 else "unavailable")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            _log.warning("notifier unreachable", error=repr(exc))
            return _problem(503, "unavailable")
        downstream = web.WebSocketResponse(
            autoping=True, heartbeat=self._heartbeat, compress=False,
            max_msg_size=aiohttp_max_msg_size(MAX_CLIENT_MESSAGE_BYTES), timeout=_CLOSE_TIMEOUT)
        try:
            await downstream.prepare(request)
        except BaseException:
            await upstream.close()
            raise
        self._open.add(downstream)
        try:
            await _pipe(downstream, upstream)
        finally:
            self._open.discard(downstream)
            if not upstream.closed:
                await upstream.close()
        return downstream

    async def close_all(self, code: int = CLOSE_GOING_AWAY,
                        reason: str = "server shutting down") -> None:
        """Close every proxied socket (the gateway's shutdown)."""
        await asyncio.gather(*(_close(ws, code, reason) for ws in list(self._open)),
                             return_exceptions=True)

    async def close(self) -> None:
        await self.close_all()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout))
        return self._session


def ws_proxy_handler(upstream_url: str, *,
                     session: aiohttp.ClientSession | None = None) -> Handler:
    """A handler proxying to ``upstream_url``; prefer :func:`mount_ws_proxy`, which also
    closes the proxied sockets and the client session when the application stops."""
    return WebSocketProxy(upstream_url, session=session).handle


def mount_ws_proxy(app: web.Application, upstream_url: str, *, path: str = "/api/ws",
                   heartbeat: float | None = 25.0) -> WebSocketProxy:
    """Route ``GET path`` to a :class:`WebSocketProxy`; sockets get 1001 on app shutdown."""
    proxy = WebSocketProxy(upstream_url, heartbeat=heartbeat)
    app.router.add_get(path, proxy.handle)

    async def shutdown(_app: web.Application) -> None:
        await proxy.close_all()

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        yield
        await proxy.close()

    app.on_shutdown.append(shutdown)
    app.cleanup_ctx.append(lifetime)
    return proxy


# Piping -------------------------------------------------------------------------------------

async def _pipe(downstream: web.WebSocketResponse,
                upstream: aiohttp.ClientWebSocketResponse) -> None:
    to_upstream = asyncio.create_task(_forward(downstream, upstream.send_str,
                                               upstream.send_bytes))
    to_downstream = asyncio.create_task(_forward(upstream, downstream.send_str,
                                                 downstream.send_bytes))
    try:
        done, _ = await asyncio.wait({to_upstream, to_downstream},
                                     return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        to_upstream.cancel()
        to_downstream.cancel()
        raise
    if to_downstream in done:
        # The notifier closed (4401, 4008, 1001, ...): tell the client the same.
        code, reason = to_downstream.result() if not to_downstream.cancelled() else (None, "")
        to_upstream.cancel()
        await _close(downstream, _passed(code, CLOSE_SERVICE_RESTART), reason)
    else:
        code, reason = to_upstream.result() if not to_upstream.cancelled() else (None, "")
        to_downstream.cancel()
        await _close(upstream, _passed(code, CLOSE_NORMAL), reason)
    await asyncio.gather(to_upstream, to_downstream, return_exceptions=True)


Source = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _forward(source: Source, send_str: Callable[[str], Awaitable[None]],
                   send_bytes: Callable[[bytes], Awaitable[None]]) -> tuple[int | None, str]:
    """Copy data frames until ``source`` closes; its close code and reason."""
    while True:
        msg = await source.receive()
        if msg.type is WSMsgType.TEXT:
            await send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await send_bytes(msg.data)
        elif msg.type in _CLOSE_TYPES:
            reason = msg.extra if msg.type is WSMsgType.CLOSE and msg.extra else ""
            code = msg.data if msg.type is WSMsgType.CLOSE else source.close_code
            return (code if isinstance(code, int) else None), str(reason)


async def _close(ws: Source, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await ws.close(code=code, message=reason.encode()[:123])


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    headers = {"Host": request.host, "X-Forwarded-Host": request.host,
               "X-Forwarded-Proto": request.scheme}
    origin = request.headers.get("Origin")
    if origin is not None:
        headers["Origin"] = origin
    forwarded_for = request.headers.get("X-Forwarded-For")
    remote = request.remote or ""
    headers["X-Forwarded-For"] = f"{forwarded_for}, {remote}" if forwarded_for else remote
    return headers


def _problem(status: int, code: str) -> web.Response:
    titles = {"forbidden": "Forbidden", "unavailable": "Service Unavailable"}
    headers = {"Retry-After": "1"} if code == "unavailable" else {}
    return web.json_response(
        {"type": "about:blank", "title": titles.get(code, "Error"), "status": status,
         "detail": "the live-updates service refused or is unreachable", "code": code},
        status=status, content_type="application/problem+json", headers=headers)
