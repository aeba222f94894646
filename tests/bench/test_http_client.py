"""The benchmark's lean HTTP client (bench/_http.py) against a real aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench._http import HttpError, HttpPool


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, list[str]]]:
    peers: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        peers.append(str(request.transport.get_extra_info("peername")) if request.transport
                     else "?")
        body = await request.read()
        status = int(request.headers.get("X-Status", "201"))
        return web.Response(body=body.upper(), status=status)

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length
        await response.prepare(request)
        await response.write(b"chunk")
        await response.write_eof()
        return response

    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/streamed", streamed)
    app.router.add_post("/closing", closing)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield test_server, peers
    finally:
        await test_server.close()


def base(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_answers_come_back_to_their_requests_over_reused_connections(
        server: tuple[TestServer, list[str]]) -> None:
    test_server, peers = server
    pool = HttpPool(base(test_server), 4)
    try:
        answers = await asyncio.gather(*(
            pool.send(pool.post("/echo", f"body {n}".encode(), {"X-Status": str(200 + n % 3)}))
            for n in range(40)))
        assert answers == [(200 + n % 3, f"BODY {n}".encode()) for n in range(40)]
        assert len(set(peers)) <= 4  # 40 requests, at most 4 connections
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def raw_server(answer: Callable[[asyncio.StreamWriter], Awaitable[None]],
                     on_connect: Callable[[], None] = lambda: None) -> AsyncIterator[int]:
    """A bare TCP server on a free port that calls ``answer`` after each request's head."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        on_connect()
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_open_connects_every_connection_before_the_first_request() -> None:
    accepted = 0

    def count() -> None:
        nonlocal accepted
        accepted += 1

    async def ok(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with raw_server(ok, on_connect=count) as port:
        pool = HttpPool(f"http://127.0.0.1:{port}", 3)
        try:
            await pool.open()
            for _ in range(100):  # the server's side of each accept runs on its next turn
                if accepted == 3:
                    break
                await asyncio.sleep(0.05)
            assert accepted == 3  # connected before any request was sent
            get = pool.prepare("GET", "/", None, {})
            assert (await asyncio.gather(*(pool.send(get) for _ in range(9)))
                    == [(200, b"ok")] * 9)
            assert accepted == 3  # and the requests went over those connections
        finally:
            await pool.close()


async def test_a_connection_the_server_closes_is_replaced(
        server: tuple[TestServer, list[str]]) -> None:
    test_server, _ = server
    pool = HttpPool(base(test_server), 1)
    try:
        assert await pool.send(pool.post("/closing", b"", {})) == (200, b"bye")
        again = await asyncio.wait_for(pool.send(pool.post("/echo", b"again", {})), 5)
        assert again == (201, b"AGAIN")
    finally:
        await pool.close()


async def test_a_connection_closed_while_idle_is_not_reused() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_post("/", ok)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server(keepalive_timeout=0.1)
    pool = HttpPool(base(test_server), 1)
    try:
        assert await pool.send(pool.post("/", b"", {})) == (200, b"ok")
        await asyncio.sleep(0.5)  # past the server's keep-alive: it closes the idle connection
        assert await asyncio.wait_for(pool.send(pool.post("/", b"", {})), 5) == (200, b"ok")
    finally:
        await pool.close()
        await test_server.close()


async def test_what_it_cannot_read_is_an_error_not_a_hang(
        server: tuple[TestServer, list[str]]) -> None:
    test_server, _ = server
    pool = HttpPool(base(test_server), 2)
    try:
        with pytest.raises(HttpError, match="not an answer"):
            await asyncio.wait_for(pool.send(pool.post("/streamed", b"", {})), 5)
    finally:
        await pool.close()
    refused = HttpPool("http://127.0.0.1:9", 1)  # the discard port: nobody listens
    with pytest.raises(ConnectionRefusedError):
        await refused.send(refused.post("/echo", b"", {}))
    with pytest.raises(ValueError, match="plain http"):
        HttpPool("https://example.org", 1)


async def test_answers_split_anywhere_and_header_names_in_any_case_are_read() -> None:
    answer = (b"HTTP/1.1 202 Accepted\r\nX-Length-Note: content-length: 99\r\n"
              b"CONTENT-LENGTH:  5 \r\nContent-Type: text/plain\r\n\r\nhello")

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for offset in range(len(answer)):  # one byte per segment
            writer.write(answer[offset:offset + 1])
            await writer.drain()
            await asyncio.sleep(0)

    async with raw_server(trickle) as port:
        pool = HttpPool(f"http://127.0.0.1:{port}", 1)
        try:
            get = pool.prepare("GET", "/", None, {})
            for _ in range(3):  # the same connection, answer after answer
                assert await asyncio.wait_for(pool.send(get), 5) == (202, b"hello")
        finally:
            await pool.close()
