"""A minimal HTTP/1.1 keep-alive client for load generation, cheap in CPU like ``wrk``.

The end-to-end benchmark runs its load process on the same two cores as everything it
measures, so what the client spends is taken from the servers. aiohttp's client cost about
1.1 ms of CPU per ``POST`` there (5.4 s of CPU for the 5,000 requests of a 500/s step, a
quarter of the machine); this one writes a request prepared as bytes on an idle keep-alive
connection and reads the answer by its ``Content-Length``. It speaks only what the gateway
answers (no chunked bodies, no redirects, no TLS); anything else is an error.
"""

from __future__ import annotations

import asyncio
import re
from typing import cast
from urllib.parse import urlsplit

_HEADERS_END = b"\r\n\r\n"
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3}) ")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)[ \t]*\r\n", re.IGNORECASE)


class HttpError(OSError):
    """The connection failed or the answer was not HTTP/1.1 with a ``Content-Length``."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection lost: {exc!r}"))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        assert self._answer is None, "one request at a time per connection"
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
        end = data.find(_HEADERS_END)
        if end < 0:
            self._buffer[:] = data
            return
        # Two regular expressions instead of a dict of every header line: the answers carry a
        # dozen headers, and splitting them cost ~10 us of this process's CPU per request.
        status = _STATUS_LINE.match(data)
        length = _CONTENT_LENGTH.search(data, 0, end + 2)
        if status is None or length is None:
            self._fail(HttpError(f"not an answer this client reads: {data[:40]!r}"))
            self.close()
            return
        start = end + len(_HEADERS_END)
        stop = start + int(length[1])
        if len(data) < stop:
            self._buffer[:] = data
            return
        body = data[start:stop]
        self._buffer[:] = data[stop:]
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_result((int(status[1]), body))

    def _fail(self, exc: Exception) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)


class HttpPool:
    """Up to ``size`` keep-alive connections to one ``http://host:port``; one request each."""

    def __init__(self, base_url: str, size: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port only, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._size = size
        self._opened = 0
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The request's bytes, prepared once; send them with :meth:`send`."""
        return self.prepare("POST", path, body, headers)

    def prepare(self, method: str, path: str, body: bytes | None,
                headers: dict[str, str]) -> bytes:
        """Any method's request as bytes; ``None`` for no body (a ``GET``)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}",
                 *([] if body is None else [f"Content-Length: {len(body)}"]),
                 *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Status and body of the answer; :class:`HttpError` (an ``OSError``) on failure."""
        # An idle connection is taken at once (with a client per connection, always): the
        # queue's waiting get costs a coroutine and more per request.
        connection = self._open_idle() or await self._connection()
        try:
            return await connection.send(request)
        finally:
            if connection.closed:
                self._opened -= 1
            else:
                self._idle.put_nowait(connection)

    async def open(self) -> None:
        """Open every connection now, so that no measured request pays a TCP connect (and
        the server's accept) in its latency: a load measures requests on kept-alive
        connections, as a steady client makes them."""
        while self._opened < self._size:
            self._idle.put_nowait(await self._connect())

    async def close(self) -> None:
        for connection in self._all:
            connection.close()

    def _open_idle(self) -> _Connection | None:
        """An idle connection the server has not closed, without waiting; None if none."""
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if not connection.closed:
                return connection
            self._opened -= 1  # the server closed it while it was idle
        return None

    async def _connection(self) -> _Connection:
        while True:
            if self._idle.empty() and self._opened < self._size:
                return await self._connect()
            connection = await self._idle.get()
            if not connection.closed:
                return connection
            self._opened -= 1  # the server closed it while it was idle

    async def _connect(self) -> _Connection:
        self._opened += 1
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection, self._host, self._port)
        except BaseException:
            self._opened -= 1
            raise
        self._all.append(connection)
        return connection
