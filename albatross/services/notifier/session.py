"""One authenticated WebSocket: its outbound queue, its resume, its close.

Promises:

* **Order and no duplicates.** Live changes arrive from the hub in stream order; each socket
  keeps a cursor (the last sequence it considered) and drops anything at or below it.
* **No gap at the seam.** The hub registers the socket and reports its ready sequence N in
  one step (no await between), so every change above N reaches :meth:`offer`. Until the socket
  is live (right after ``ready``, while it may still send ``resume``, and during a replay) live
  changes wait in ``pending``; a replay covers ``(after, N]``; then ``pending`` is drained and
  the socket goes live without an await in between.
* **Bounded memory; a slow client slows nobody.** :meth:`offer` never waits: a full outbound
  queue (or a full ``pending`` while catching up) closes the socket with 4008. The replay and
  the drain wait for room instead, so they go at the client's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

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


@dataclass(frozen=True)
class SessionConfig:
    queue_size: int = 256
    # Live changes held while a socket catches up; beyond this it is too slow (4008).
    pending_limit: int = 4096
    # After ``ready`` the client may send ``resume``; live changes wait this long for it so
    # that a resume is answered strictly in order (a later one is served, possibly not).
    resume_grace: float = 1.0
    # How long a close waits for the client's closing handshake before the connection is cut.
    close_timeout: float = 3.0


class State(enum.Enum):
    HOLDING = "holding"  # ready sent; waiting for a possible resume
    CATCHING_UP = "catching_up"  # replaying and/or draining pending
    LIVE = "live"
    CLOSED = "closed"


class Session:
    """Owns the outbound side of one socket; the handler owns the inbound side."""

    def __init__(self, ws: web.WebSocketResponse, principal: Principal, secret: str,
                 secret_hash: str, *, feed: ChangeFeed, config: SessionConfig,
                 metrics: NotifierMetrics, abort: Callable[[], None]) -> None:
        self.principal = principal
        self.secret = secret
        self.secret_hash = secret_hash
        self._ws = ws
        self._feed = feed
        self._config = config
        self._metrics = metrics
        self._abort = abort
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(config.queue_size)
        self._pending: deque[tuple[int, bytes]] = deque()
        self._state = State.HOLDING
        self._ready_sequence = 0
        self._cursor = 0
        self._resumed = False
        self._resume_at: asyncio.Future[int] | None = None
        self._writer: asyncio.Task[None] | None = None
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

    async def start(self) -> None:
        """Send ``ready``, then start writing and waiting for a resume."""
        await self._ws.send_frame(
            encode(Ready(user_id=self.principal.user_id, sequence=self._ready_sequence)),
            WSMsgType.TEXT)
        self._metrics.messages_sent.labels(type="ready").inc()
        if self.closed:
            return
        self._resume_at = asyncio.get_running_loop().create_future()
        self._writer = asyncio.create_task(self._write(), name="notifier.session.write")
        self._control = asyncio.create_task(self._hold(), name="notifier.session.hold")

    # Inbound requests ---------------------------------------------------------------------

    def resume(self, after: int) -> bool:
        """Handle ``{"type": "resume"}``; False if it is a protocol error (a second one)."""
        if self._resumed:
            return False
        self._resumed = True
        self._metrics.replays.inc()
        if self._state is State.HOLDING and self._resume_at is not None:
            if not self._resume_at.done():
                self._resume_at.set_result(after)
        elif self._state is State.LIVE:
            # Late: live changes above N were already sent. Still every change once.
            self._state = State.CATCHING_UP
            self._control = asyncio.create_task(self._catch_up(after),
                                                name="notifier.session.catch_up")
        return True

    # Live changes from the hub (synchronous: never waits) --------------------------------

    def offer(self, outgoing: Outgoing) -> None:
        state = self._state
        if state is State.CLOSED:
            return
        if state is State.LIVE:
            if outgoing.sequence <= self._cursor:
                return
            self._cursor = outgoing.sequence
            data = outgoing.for_principal(self.principal)
            if data is None:
                return
            try:
                self._queue.put_nowait(data)
            except asyncio.QueueFull:
                self._metrics.drops.labels(reason="queue_full").inc()
                self.close(CLOSE_TOO_SLOW, "too slow: resume to catch up")
            return
        data = outgoing.for_principal(self.principal)
        if data is None:
            return
        if len(self._pending) >= self._config.pending_limit:
            self._metrics.drops.labels(reason="pending_full").inc()
            self.close(CLOSE_TOO_SLOW, "too slow: resume to catch up")
            return
        self._pending.append((outgoing.sequence, data))

    # Catching up ----------------------------------------------------------------------------

    async def _hold(self) -> None:
        assert self._resume_at is not None
        after: int | None
        try:
            async with asyncio.timeout(self._config.resume_grace):
                after = await self._resume_at
        except TimeoutError:
            after = None
        await self._catch_up(after)

    async def _catch_up(self, after: int | None) -> None:
        self._state = State.CATCHING_UP
        if after is not None:
            if after < self._ready_sequence:
                try:
                    await self._replay(after, self._ready_sequence)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _log.warning("replay failed", user_id=self.principal.user_id,
                                 error=repr(exc))
                    self.close(CLOSE_TRY_AGAIN, "replay failed: resume again")
                    return
            self._cursor = max(self._cursor, after)
        while self._pending:
            sequence, data = self._pending.popleft()
            if sequence <= self._cursor:
                continue
            self._cursor = sequence
            await self._queue.put(data)
        # No await since the loop saw ``pending`` empty: nothing can slip in between.
        if self._state is State.CATCHING_UP:
            self._state = State.LIVE

    async def _replay(self, after: int, until: int) -> None:
        changes = self._feed.replay(after, until)
        async with contextlib.aclosing(changes):
            async for change in changes:
                if change.message is None or change.sequence <= after:
                    continue
                data = Outgoing(change.message).for_principal(self.principal)
                if data is not None:
                    await self._queue.put(data)  # at the client's pace

    # Writing ----------------------------------------------------------------------------------

    async def _write(self) -> None:
        queue, ws, sent = self._queue, self._ws, self._metrics.messages_sent.labels(type="change")
        try:
            while True:
                data = await queue.get()
                await ws.send_frame(data, WSMsgType.TEXT)
                sent.inc()
        except (ConnectionError, RuntimeError) as exc:
            # The peer is gone (reset, or the socket closed under us): the handler's receive
            # loop sees the same and cleans up.
            _log.debug("write failed", error=repr(exc))
            self._stop_tasks(current=asyncio.current_task())

    # Closing ----------------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close with ``code`` (counted as a server close); safe to call from anywhere."""
        if self._state is State.CLOSED:
            return
        self._metrics.closes.labels(code=str(code), by="server").inc()
        self._stop_tasks(current=asyncio.current_task())
        self._closing = asyncio.create_task(self._close_ws(code, reason),
                                            name="notifier.session.close")

    def client_gone(self) -> None:
        """The handler saw the connection end: stop without sending anything."""
        self._stop_tasks(current=asyncio.current_task())

    async def wait_closed(self) -> None:
        tasks = [t for t in (self._closing, self._writer, self._control) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _stop_tasks(self, current: asyncio.Task[object] | None) -> None:
        self._state = State.CLOSED
        self._pending.clear()
        for task in (self._writer, self._control):
            if task is not None and task is not current:
                task.cancel()

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
