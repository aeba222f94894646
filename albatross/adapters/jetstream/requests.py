"""Request/reply over one reply subscription, with less per-request work than ``nc.request``.

nats-py's request draws a NUID and random bytes for each reply subject, validates the
subject twice and waits through ``asyncio.wait_for``: together a visible share of a command's
CPU in the gateway, whose every command is one JetStream publish awaiting its ack. Here a
reply subject is ``<inbox>.<counter>`` on a wildcard subscription opened on first use, and
the timeout is one timer handle. Errors are nats-py's: ``TimeoutError`` when no reply comes
in time, ``NoRespondersError`` when the server says nobody listens on the subject.

A request is handed to the socket at once, not when nats-py's flusher task next runs
(:func:`send_now`), and as a frame built here: nats-py's ``publish`` validates the subject and
every header with regular expressions, builds the header block byte by byte and wakes its
flusher task each time, ~30 us per request against ~10 (docs/performance.md, "Gateway"). What
this path does not recognise as plain (a subject or value outside ASCII, whitespace in a
subject, a line break or surrounding whitespace in a value, a header name nats-py refuses, a
payload over the server's limit) goes through nats-py's ``publish``, whose errors are the ones
callers see. Replies reach their callers from nats-py's reader directly
(the subscription's single-response hook, ``Subscription._future``) rather than through a
queue and a task of their own. Both lean on nats-py internals; ``nats-py`` is pinned and
tests/integration/test_jetstream_requests.py fails if they change.

A request while the client is reconnecting raises :class:`NotConnected` and sends nothing.
nats-py would buffer it and send it on reconnection, after its caller gave up: an append
refused as unavailable would land later. So a ``TimeoutError`` means the request left (or sat
in the client's buffer, which goes out on reconnection): its outcome is unknown; a
``NotConnected`` means it never will.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

_NO_RESPONDERS = "503"
# RFC 9110 token characters: the header names nats-py accepts.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


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


def publish_frame(subject: str, reply: str, data: bytes,
                  headers: dict[str, str] | None) -> bytes | None:
    """The ``PUB``/``HPUB`` frame nats-py would write, or None when it needs nats-py's checks.

    Framed here: ASCII subjects without whitespace, header names of token characters (what
    nats-py accepts), and ASCII values that nats-py would send as they are (no line break,
    no leading or trailing whitespace, which it would replace or strip). The values are
    checked by a few C passes over all of them rather than per value: this function was
    ~7% of the gateway's instructions per POST with a regular expression for each part.
    """
    if not (_plain_subject(subject) and _plain_subject(reply)):
        return None
    if headers is None:
        return b"".join((f"PUB {subject} {reply} {len(data)}\r\n".encode(), data, b"\r\n"))
    template = _header_block(tuple(headers))
    values = tuple(headers.values())
    joined = "".join(values)
    if (template is None or not joined.isascii() or "\r" in joined or "\n" in joined
            or tuple(map(str.strip, values)) != values):
        return None
    block = template % values  # ASCII: as many bytes as characters
    return b"".join((f"HPUB {subject} {reply} {len(block)} {len(block) + len(data)}\r\n"
                     f"{block}".encode(), data, b"\r\n"))


def _plain_subject(text: str) -> bool:
    return (text.isascii() and text != "" and " " not in text and "\t" not in text
            and "\r" not in text and "\n" not in text)


@functools.lru_cache(maxsize=256)
def _header_block(names: tuple[str, ...]) -> str | None:
    """The header block with a ``%s`` for each value, or None when a name is not a token.

    Remembered: the code uses a few sets of names, the values change with every message."""
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        return None
    lines = "".join(f"{name.replace('%', '%%')}: %s\r\n" for name in names)
    return f"NATS/1.0\r\n{lines}\r\n"


class _Dispatcher:
    """Duck-types the future of a single-response subscription: nats-py's reader calls its
    ``set_result`` with every message of the reply subscription, and it never completes."""

    def __init__(self, deliver: Callable[[Msg], None]) -> None:
        self.set_result = deliver

    def cancelled(self) -> bool:
        return False


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
            await self._send(subject, self._prefix + token, data, headers)
            msg = await reply
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
        if not msg.data and (msg.headers or {}).get("Status") == _NO_RESPONDERS:
            raise NoRespondersError
        return msg

    async def _send(self, subject: str, reply: str, data: bytes,
                    headers: dict[str, str] | None) -> None:
        nc = self._nc
        send_now(nc)  # whatever nats-py buffered goes first
        transport = nc._transport
        if not nc._pending and transport is not None and len(data) <= nc.max_payload:
            frame = publish_frame(subject, reply, data, headers)
            if frame is not None:
                try:
                    transport.write(frame)
                    return
                except (OSError, RuntimeError):
                    pass  # a closing transport: nats-py's publish reports it its own way
        await nc.publish(subject, data, reply=reply, headers=headers)
        send_now(nc)

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
                # Not a Future: nats-py only calls cancelled() and set_result() on it.
                self._subscription = await self._nc.subscribe(
                    prefix + "*", future=_Dispatcher(self._on_reply))  # type: ignore[arg-type]
                self._prefix = prefix

    def _on_reply(self, msg: Msg) -> None:
        reply = self._waiting.get(msg.subject[len(self._prefix):])
        if reply is not None and not reply.done():
            reply.set_result(msg)


def _expire(reply: asyncio.Future[Msg]) -> None:
    if not reply.done():
        reply.set_exception(NatsTimeoutError())
