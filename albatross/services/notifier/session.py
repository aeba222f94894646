"""One authenticated WebSocket: its outbound buffer, its resume, its close.

Promises:

* **Order and no duplicates.** Live changes arrive from the hub in stream order; each socket
  keeps a cursor (the last sequence it considered) and drops anything at or below it.
* **No gap at the seam.** The hub registers the socket and reports its ready sequence N in
  one step (no await between), so every change above N reaches :meth:`offer`. Until the socket
  is live (right after ``ready``, while it may still send ``resume``, and during a replay) live
  changes wait in ``pending``; a replay covers ``(after, N]``; then ``pending`` is drained and
  the socket goes live without an await in between. A resume after the grace is still served,
  before the next change that waits; what was already sent live stays sent (every change
  once, but those before the replay).
* **Bounded memory; a slow client slows nobody.** Frames are written straight to the
  connection's transport (the outbound queue is the transport's buffer, bounded by
  ``max_buffer_bytes``), so a fan-out costs no task switch per socket. :meth:`offer` never
  waits: when the buffer of a socket passes the bound (its client stopped reading), or its
  ``pending`` is full while it catches up, that socket is closed with 4008. The replay and the
  drain of ``pending`` wait for room instead, so they go at the client's pace.

Writing frames directly is safe alongside aiohttp's own writer (pings, pongs, the close
frame): everything runs on one event loop and each write is one whole frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from albatross.application.principal import Principal
from albatross.observability import get_logger
from albatross.services.notifier.fanout import Outgoing, encode
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.ports import ChangeFeed
from albatross.services.notifier.protocol import (
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN,
    Ready,
)

_log = get_logger("albatross.notifier.session")
_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes
TOO_SLOW = "too slow: resume to catch up"


class Transport(Protocol):
    """What a Session needs of the connection's asyncio transport."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...


@dataclass(frozen=True)
class SessionConfig:
    # Bytes waiting in a socket's transport beyond which its client is too slow (4008);
    # about 256 PIREP changes.
    max_buffer_bytes: int = 256 * 1024
    # Live changes held while a socket catches up; beyond this it is too slow (4008).
    pending_limit: int = 4096
    # After ``ready`` the client may send ``resume``; live changes wait this long for it so
    # that a resume is answered strictly in order (a later one is served, possibly not).
    resume_grace: float = 1.0
    # How long a close waits for the client's closing handshake before the connection is cut.
    close_timeout: float = 3.0
    # How often a replay checks whether the client made room.
    drain_poll: float = 0.005


class State(enum.Enum):
    HOLDING = "holding"  # ready sent; waiting for a possible resume
    CATCHING_UP = "catching_up"  # replaying and/or draining pending
    LIVE = "live"
    CLOSED = "closed"


class Session:
    """Owns the outbound side of one socket; the handler owns the inbound side."""

    def __init__(self, ws: web.WebSocketResponse, transport: Transport, principal: Principal,
                 secret: str, secret_hash: str, *, feed: ChangeFeed, config: SessionConfig,
                 metrics: NotifierMetrics, abort: Callable[[], None]) -> None:
        self.principal = principal
        self.secret = secret
        self.secret_hash = secret_hash
        self._ws = ws
        self._transport = transport
        self._feed = feed
        self._config = config
        self._limit = config.max_buffer_bytes
        self._metrics = metrics
        self._abort = abort
        self._pending: deque[tuple[int, bytes]] = deque()
        self._state = State.HOLDING
        self._ready_sequence = 0
        self._cursor = 0
        self._resumed = False
        self._resume_after: int | None = None
        self._resume_at: asyncio.Future[int] | None = None
        self._control: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    def bind(self, ready_sequence: int) -> None:
        """Called by the hub when it registers the socket, in the same step as reading N."""
        self._ready_sequence = ready_sequence
        self._cursor = ready_sequence

    def start(self) -> None:
        """Send ``ready``, then wait (briefly) for a resume."""
        if not self._send(encode(Ready(user_id=self.principal.user_id,
                                       sequence=self._ready_sequence))):
            return
        self._metrics.messages_sent.labels(type="ready").inc()
        self._resume_at = asyncio.get_running_loop().create_future()
        self._control = asyncio.create_task(self._hold(), name="notifier.session.hold")

    # Inbound requests ---------------------------------------------------------------------

    def resume(self, after: int) -> bool:
        """Handle ``{"type": "resume"}``; False if it is a protocol error (a second one)."""
        if self._resumed:
            return False
        self._resumed = True
        self._metrics.replays.inc()
        self._resume_after = after
        if self._state is State.HOLDING:
            if self._resume_at is not None and not self._resume_at.done():
                self._resume_at.set_result(after)  # ends the grace at once
            # Else the grace has just ended: the catch-up about to start takes it first.
        elif self._state is State.LIVE:
            # Late: live changes above N were already sent. Still every change once.
            self._state = State.CATCHING_UP
            self._control = asyncio.create_task(self._catch_up(),
                                                name="notifier.session.catch_up")
        # CATCHING_UP: the running catch-up takes it before the next held change it sends.
        return True

    # Live changes from the hub (synchronous: never waits) --------------------------------

    def offer(self, outgoing: Outgoing) -> bool:
        """Take one live change; whether a frame was written for it."""
        state = self._state
        if state is State.LIVE:
            if outgoing.sequence <= self._cursor:
                return False
            self._cursor = outgoing.sequence
            frame = outgoing.for_principal(self.principal)
            return frame is not None and self._send(frame)
        if state is State.CLOSED:
            return False
        frame = outgoing.for_principal(self.principal)
        if frame is None:
            return False
        if len(self._pending) >= self._config.pending_limit:
            self._metrics.drops.labels(reason="pending_full").inc()
            self.close(CLOSE_TOO_SLOW, TOO_SLOW)
            return False
        self._pending.append((outgoing.sequence, frame))
        return False

    def _send(self, frame: bytes) -> bool:
        transport = self._transport
        if self._ws.closed or transport.is_closing():
            return False  # aiohttp is closing it: no data frame may follow a close frame
        transport.write(frame)
        if transport.get_write_buffer_size() > self._limit:
            self._metrics.drops.labels(reason="buffer_full").inc()
            self.close(CLOSE_TOO_SLOW, TOO_SLOW)
        return True

    async def _send_paced(self, frame: bytes) -> None:
        """Write once the client has made room (replay and drain: at the client's pace)."""
        await self._room()
        if self._send(frame):
            self._metrics.messages_sent.labels(type="change").inc()

    async def _room(self) -> None:
        low = self._limit // 2
        # Polled: the transport is aiohttp's, whose pause/resume callbacks are not ours to
        # take over. Only a catching-up socket with a full buffer polls.
        while (self._transport.get_write_buffer_size() > low  # noqa: ASYNC110
               and self._state is not State.CLOSED):
            await asyncio.sleep(self._config.drain_poll)

    # Catching up ----------------------------------------------------------------------------

    async def _hold(self) -> None:
        assert self._resume_at is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.resume_grace):
                await self._resume_at
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Serve the resume, if any, then the held changes; a resume that comes meanwhile
        (after the grace) is served before the next held change."""
        self._state = State.CATCHING_UP
        while self._state is State.CATCHING_UP:
            after, self._resume_after = self._resume_after, None
            if after is not None:
                if not await self._replay_after(after):
                    return
                continue
            if not self._pending:
                # No await since the loop saw ``pending`` empty: nothing can slip in between.
                self._state = State.LIVE
                return
            await self._room()
            if self._resume_came():  # while this waited for room
                continue
            sequence, frame = self._pending.popleft()
            if sequence > self._cursor:
                self._cursor = sequence
                if self._send(frame):
                    self._metrics.messages_sent.labels(type="change").inc()

    def _resume_came(self) -> bool:
        return self._resume_after is not None

    async def _replay_after(self, after: int) -> bool:
        """Send what the user may see in ``(after, N]``; False if the socket was closed."""
        if after < self._ready_sequence:
            try:
                await self._replay(after, self._ready_sequence)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("replay failed", user_id=self.principal.user_id, error=repr(exc))
                self.close(CLOSE_TRY_AGAIN, "replay failed: resume again")
                return False
        self._cursor = max(self._cursor, after)
        return True

    async def _replay(self, after: int, until: int) -> None:
        changes = self._feed.replay(after, until)
        async with contextlib.aclosing(changes):
            async for change in changes:
                if self._state is State.CLOSED:
                    return
                if change.message is None or change.sequence <= after:
                    continue
                frame = Outgoing(change.message).for_principal(self.principal)
                if frame is not None:
                    await self._send_paced(frame)

    # Closing ----------------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close with ``code`` (counted as a server close); safe to call from anywhere."""
        if self._state is State.CLOSED:
            return
        self._metrics.closes.labels(code=str(code), by="server").inc()
        self._stop(current=asyncio.current_task())
        self._closing = asyncio.create_task(self._close_ws(code, reason),
                                            name="notifier.session.close")

    def client_gone(self) -> None:
        """The handler saw the connection end: stop without sending anything."""
        self._stop(current=asyncio.current_task())

    async def wait_closed(self) -> None:
        tasks = [t for t in (self._closing, self._control) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stop(self, current: asyncio.Task[object] | None) -> None:
        self._state = State.CLOSED
        self._pending.clear()
        if self._control is not None and self._control is not current:
            self._control.cancel()

    async def _close_ws(self, code: int, reason: str) -> None:
        message = reason.encode()[:_MAX_REASON_BYTES]
        try:
            async with asyncio.timeout(self._config.close_timeout):
                await self._ws.close(code=code, message=message, drain=False)
        except TimeoutError:
            # The client does not read (or not answer): cut the connection, freeing its
            # buffers, rather than wait on it.
            self._abort()
        except Exception as exc:
            _log.debug("close failed", error=repr(exc))
            self._abort()
