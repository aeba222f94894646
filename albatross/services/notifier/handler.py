"""``GET /api/ws``: handshake checks, first-message authentication, then the read loop.

The handler owns the inbound side of a socket (and the socket's lifetime); the
:class:`~albatross.services.notifier.session.Session` owns the outbound side.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from albatross.application.credentials import secret_hash
from albatross.application.principal import Principal
from albatross.observability import get_logger
from albatross.ports import StoreUnavailable
from albatross.services.notifier.handshake import refuse_malformed_key
from albatross.services.notifier.hub import Hub
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.origin import OriginPolicy
from albatross.services.notifier.ports import Authenticator, ChangeFeed
from albatross.services.notifier.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNSUPPORTED,
    MAX_CLIENT_MESSAGE_BYTES,
    Auth,
    ClientDecoder,
    ProtocolError,
    Resume,
    aiohttp_max_msg_size,
)
from albatross.services.notifier.session import Session, SessionConfig

_log = get_logger("albatross.notifier.ws")

OnAdmitted = Callable[[Session], None]


@dataclass(frozen=True)
class SocketConfig:
    session: SessionConfig = field(default_factory=SessionConfig)
    auth_timeout: float = 5.0
    # aiohttp pings every ``heartbeat`` seconds and drops a socket whose pong is late.
    heartbeat: float | None = 25.0
    allowed_origins: tuple[str, ...] = ()
    # SO_SNDBUF of each socket, None: the kernel's (auto-tuned, up to megabytes). A smaller
    # buffer makes a stalled client visible (4008) after less data.
    send_buffer_bytes: int | None = None
    max_message_bytes: int = MAX_CLIENT_MESSAGE_BYTES


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Gone(Exception):
    """The client closed the socket before authenticating."""


class WebSocketEndpoint:
    def __init__(self, hub: Hub, authenticator: Authenticator, feed: ChangeFeed,
                 metrics: NotifierMetrics, config: SocketConfig,
                 on_admitted: OnAdmitted | None = None) -> None:
        self._hub = hub
        self._auth = authenticator
        self._feed = feed
        self._metrics = metrics
        self._config = config
        self._origins = OriginPolicy(config.allowed_origins)
        self._decoder = ClientDecoder()
        self._on_admitted = on_admitted
        self._stopping = False
        self._open: set[web.WebSocketResponse] = set()

    def stop_admitting(self) -> None:
        """From now on, new sockets are closed with 1001 (the process is stopping)."""
        self._stopping = True

    async def close_unauthenticated(self) -> None:
        """Close sockets still in their authentication phase (shutdown)."""
        sockets = list(self._open)
        await asyncio.gather(*(self._close(ws, CLOSE_GOING_AWAY, "server shutting down")
                               for ws in sockets), return_exceptions=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._origins.allows(request.headers.get("Origin"), request.host):
            self._metrics.origin_refused.inc()
            raise web.HTTPForbidden(text="Origin not allowed\n")
        refuse_malformed_key(request)
        config = self._config
        ws = web.WebSocketResponse(
            heartbeat=config.heartbeat, compress=False,
            max_msg_size=aiohttp_max_msg_size(config.max_message_bytes),
            timeout=config.session.close_timeout)
        await ws.prepare(request)
        self._set_send_buffer(request)
        self._metrics.sockets_open.inc()
        try:
            await self._serve(request, ws)
        finally:
            self._metrics.sockets_open.dec()
        return ws

    async def _serve(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self._open.add(ws)
        try:
            principal, secret = await self._authenticate(ws)
        except _Refused as refused:
            self._metrics.closes.labels(code=str(refused.code), by="server").inc()
            await self._close(ws, refused.code, refused.reason)
            return
        except _Gone:
            self._metrics.closes.labels(code=str(ws.close_code), by="client").inc()
            return
        finally:
            self._open.discard(ws)
        if self._stopping:
            self._metrics.closes.labels(code=str(CLOSE_GOING_AWAY), by="server").inc()
            await self._close(ws, CLOSE_GOING_AWAY, "server shutting down")
            return
        transport = request.transport
        if transport is None:  # the connection is already gone
            return
        session = Session(ws, transport, principal, secret, secret_hash(secret),
                          feed=self._feed, config=self._config.session, metrics=self._metrics,
                          abort=_aborter(request))
        self._hub.register(session)
        try:
            if self._on_admitted is not None:
                self._on_admitted(session)
            session.start()
            await self._read_loop(ws, session)
        except (ConnectionError, RuntimeError) as exc:
            _log.debug("socket ended", error=repr(exc))
        finally:
            self._hub.unregister(session)
            if not session.closed:
                if ws.close_code is not None:
                    self._metrics.closes.labels(code=str(ws.close_code), by="client").inc()
                session.client_gone()
            await session.wait_closed()

    async def _authenticate(self, ws: web.WebSocketResponse) -> tuple[Principal, str]:
        try:
            msg = await ws.receive(timeout=self._config.auth_timeout)
        except TimeoutError:
            raise _Refused(CLOSE_UNAUTHORIZED, "authentication timeout") from None
        if msg.type is WSMsgType.ERROR:  # e.g. a frame over the size limit: aiohttp closed it
            raise _Refused(ws.close_code or CLOSE_TOO_BIG, "bad frame")
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            raise _Gone
        if msg.type is not WSMsgType.TEXT:
            raise _Refused(CLOSE_UNAUTHORIZED, "expected an auth message")
        try:
            first = self._decoder.decode(msg.data)
        except ProtocolError:
            raise _Refused(CLOSE_UNAUTHORIZED, "expected an auth message") from None
        if not isinstance(first, Auth):
            raise _Refused(CLOSE_UNAUTHORIZED, "expected an auth message")
        try:
            principal = await self._auth.authenticate(first.token)
        except StoreUnavailable:
            raise _Refused(CLOSE_TRY_AGAIN, "credential store unavailable") from None
        if principal is None:
            raise _Refused(CLOSE_UNAUTHORIZED, "invalid credentials")
        if principal.must_change_password:
            raise _Refused(CLOSE_FORBIDDEN, "password change required")
        return principal, first.token

    async def _read_loop(self, ws: web.WebSocketResponse, session: Session) -> None:
        while not session.closed:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                try:
                    request = self._decoder.decode(msg.data)
                except ProtocolError:
                    session.close(CLOSE_POLICY, "malformed message")
                    return
                if not isinstance(request, Resume) or not session.resume(request.after):
                    session.close(CLOSE_POLICY, "unexpected message")
                    return
            elif msg.type is WSMsgType.BINARY:
                session.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
                return
            elif msg.type is WSMsgType.ERROR:  # aiohttp has closed it (e.g. frame too big)
                session.close(ws.close_code or CLOSE_TOO_BIG, "bad frame")
                return
            else:  # CLOSE, CLOSING, CLOSED: aiohttp has answered the client's close
                return

    async def _close(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._config.session.close_timeout):
                await ws.close(code=code, message=reason.encode())

    def _set_send_buffer(self, request: web.Request) -> None:
        size = self._config.send_buffer_bytes
        transport = request.transport
        if size is None or transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _aborter(request: web.Request) -> Callable[[], None]:
    def abort() -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    return abort
