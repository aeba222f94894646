"""Request/reply over one reply subscription, with less per-request work than ``nc.request``.

nats-py's request draws a NUID and random bytes for each reply subject, validates the
subject twice and waits through ``asyncio.wait_for``: together a visible share of a command's
CPU in the gateway, whose every command is one JetStream publish awaiting its ack. Here a
reply subject is ``<inbox>.<counter>`` on a wildcard subscription opened on first use, and
the timeout is one timer handle. Errors are nats-py's: ``TimeoutError`` when no reply comes
in time, ``NoRespondersError`` when the server says nobody listens on the subject.

A request is handed to the socket at once (:func:`send_now`), not when nats-py's flusher task
next runs.

A request while the client is reconnecting raises :class:`NotConnected` and sends nothing.
nats-py would buffer it and send it on reconnection, after its caller gave up: an append
refused as unavailable would land later. So a ``TimeoutError`` means the request left (or sat
in the client's buffer, which goes out on reconnection): its outcome is unknown; a
``NotConnected`` means it never will.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

_NO_RESPONDERS = "503"


class NotConnected(NatsError):
    """The client is between connections; nothing was sent."""

    def __str__(self) -> str:
        return "nats: not connected, nothing sent"


def ensure_connected(nc: NATS) -> None:
    """Raise :class:`NotConnected` rather than let nats-py buffer a write for later."""
    if not nc.is_connected:
        raise NotConnected


def send_now(nc: NATS) -> None:
    """Write what nats-py has buffered to the socket now instead of from its flusher task.

    nats-py appends a publish to a buffer and wakes a flusher task, which runs only after
    everything else the event loop has ready. In a busy gateway that delays each append by
    the other requests' work, while nats-server, which stores (and fsyncs) one message after
    the other, runs out of messages. Measured with 64 concurrent appends and 0.3 ms of other
    CPU per append: 1,090-1,430/s through the flusher, 1,810-1,870/s written at once; through
    the gateway +9% POSTs/s for ~0.07 ms more CPU per POST in the gateway and as much in
    nats-server (a send and a segment per publish; docs/performance.md). The flusher then
    finds the buffer empty. Uses nats-py's buffer attributes (``nats-py`` is pinned;
    tests/integration/test_jetstream_requests.py fails if they change).
    """
    if nc._pending and nc.is_connected and nc._transport is not None:
        try:
            nc._transport.writelines(nc._pending[:])
        except (OSError, RuntimeError):
            # A transport closed under a client that has not noticed yet (uvloop raises
            # RuntimeError): the buffer stays for the flusher, which reports the broken
            # connection to nats-py, and the request goes unanswered like any lost one.
            return
        nc._pending = []
        nc._pending_data_size = 0


class Requests:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._subscription: Any = None
        self._opening: asyncio.Lock | None = None
        self._numbers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Msg]] = {}

    async def request(self, subject: str, data: bytes, *, timeout: float,
                      headers: dict[str, str] | None = None) -> Msg:
        if self._subscription is None:
            await self._open()
        ensure_connected(self._nc)
        token = str(next(self._numbers))
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = reply
        timer = loop.call_later(timeout, _expire, reply)
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
            send_now(self._nc)
            msg = await reply
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
        if not msg.data and (msg.headers or {}).get("Status") == _NO_RESPONDERS:
            raise NoRespondersError
        return msg

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _open(self) -> None:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._subscription is None:
                prefix = self._nc.new_inbox() + "."
                self._subscription = await self._nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix

    async def _on_reply(self, msg: Msg) -> None:
        reply = self._waiting.get(msg.subject[len(self._prefix):])
        if reply is not None and not reply.done():
            reply.set_result(msg)


def _expire(reply: asyncio.Future[Msg]) -> None:
    if not reply.done():
        reply.set_exception(NatsTimeoutError())
