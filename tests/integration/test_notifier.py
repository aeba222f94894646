"""The notifier on real NATS: scoped fan-out, resume, backpressure, the handshake rules.

Every test publishes its own change messages (unique tenants), so changes published by other
tests on the shared stream cannot be mistaken for ours: no socket here belongs to a
PlatformAdmin.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import aiohttp
import msgspec
import pytest

from albatross.application.principal import Principal
from tests.integration.test_notifier_support import (
    FakeAuthenticator,
    change_of,
    connect,
    connected,
    notifier,
    notifier_config,
    open_socket,
    pirep,
    publish,
    uid,
    user,
)

pytestmark = pytest.mark.real


def seqs(changes: list[dict[str, Any]]) -> list[int]:
    return [c["sequence"] for c in changes]


async def test_each_socket_gets_exactly_its_tenants_changes_once_in_order(nats_url: str) -> None:
    tenants = [uid("t-"), uid("t-")]
    people = {t: {"pilot": uid("pilot-"), "admin": uid("admin-")} for t in tenants}
    tokens = {}
    for t in tenants:
        tokens[f"pilot-{t}"] = Principal(people[t]["pilot"], "Pilot", t, session_id="s")
        tokens[f"admin-{t}"] = Principal(people[t]["admin"], "TenantAdmin", t, api_key_id="k")
    auth = FakeAuthenticator(tokens)
    async with connected(nats_url) as conn, notifier(conn, auth) as running:
        clients = {name: await connect(running.url(), name) for name in tokens}
        rng = random.Random(5)
        published: list[tuple[int, str, Any]] = []  # (sequence, tenant, change)
        # The users first (their emails are what a pilot must not see), then 100 PIREPs.
        for t in tenants:
            for role in ("pilot", "admin"):
                view = user(t, people[t][role],
                            "Pilot" if role == "pilot" else "TenantAdmin")
                change = change_of(view, "UserRegistered")
                published.append((await publish(conn.js, change), t, change))
        for n in range(100):
            t = rng.choice(tenants)
            change = change_of(pirep(t, people[t]["pilot"], n))
            published.append((await publish(conn.js, change), t, change))

        for name, client in clients.items():
            principal = tokens[name]
            mine = [(seq, change) for seq, t, change in published if t == principal.tenant_id]
            expected = len(mine)
            got = await client.changes_until(lambda c, n=expected: len(c) >= n)
            assert await client.quiet(0.5) == [], f"{name} got extra changes"
            assert seqs(got) == [seq for seq, _ in mine], f"{name}: wrong set or order"
            for message, (_seq, change) in zip(got, mine, strict=True):
                assert message["id"] == change.id
                assert message["entity"] == change.entity
                assert message["tenant_id"] == principal.tenant_id
                assert message["event"] == change.event
                if change.entity == "user":
                    own = change.id == principal.user_id
                    sees_email = own or principal.role == "TenantAdmin"
                    expected = change.data.email if sees_email else None
                    assert message["data"]["email"] == expected, (name, message)
                else:
                    assert message["data"] == msgspec.to_builtins(change.data)
            assert client.ready is not None
            assert client.ready["sequence"] < seqs(got)[0]
        for client in clients.values():
            await client.close()
        assert running.metric("albatross_notifier_messages_sent_total", type="change") == \
            sum(len(c.received) - 1 for c in clients.values())


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "after-ready"])
async def test_resume_after_disconnect_loses_and_repeats_nothing(nats_url: str,
                                                                 pipelined: bool) -> None:
    tenant, pilot = uid("t-"), uid("pilot-")
    auth = FakeAuthenticator({"tok": Principal(pilot, "Pilot", tenant, session_id="s")})
    total = 150
    async with connected(nats_url) as conn, notifier(conn, auth) as running:
        client = await connect(running.url(), "tok")
        acked: list[int] = []

        async def publisher() -> None:
            for n in range(total):
                acked.append(await publish(conn.js, change_of(pirep(tenant, pilot, n))))
                await asyncio.sleep(0.004)

        task = asyncio.create_task(publisher())
        first = await client.changes_until(lambda c: len(c) >= 40)
        await client.close()  # mid-stream: the publisher keeps going
        await asyncio.sleep(0.2)
        last = first[-1]["sequence"]
        if pipelined:
            client = await connect(running.url(), "tok", resume_after=last)
        else:
            client = await connect(running.url(), "tok")
            await client.ws.send_str(msgspec.json.encode(
                {"type": "resume", "after": last}).decode())
        assert not task.done(), "the publisher should still be running at the resume"
        await task
        rest = await client.changes_until(lambda c: bool(c) and c[-1]["sequence"] >= acked[-1],
                                          timeout=15)
        assert await client.quiet(0.3) == []
        assert seqs(first) + seqs(rest) == acked
        await client.close()


async def test_a_client_that_stops_reading_is_closed_4008_and_slows_nobody(
        nats_url: str) -> None:
    tenant, pilot = uid("t-"), uid("pilot-")
    auth = FakeAuthenticator({"slow": Principal(pilot, "Pilot", tenant, session_id="s1"),
                              "fast": Principal(pilot, "Pilot", tenant, session_id="s2")})
    config = notifier_config(max_buffer_bytes=16 * 1024, pending_limit=64, send_buffer_bytes=4096,
                             close_timeout=10.0)
    async with connected(nats_url) as conn, notifier(conn, auth, config) as running:
        slow = await RawSocket.open(running.server.host, running.server.port, "slow")
        fast = await connect(running.url(), "fast")
        await asyncio.sleep(0.4)  # past the resume grace: both sockets are live
        total = 600
        reading = asyncio.create_task(fast.changes_until(lambda c: len(c) >= total, timeout=30))
        acked = []
        for n in range(total):
            view = msgspec.structs.replace(pirep(tenant, pilot, n), remarks="x" * 1500)
            acked.append(await publish(conn.js, change_of(view)))
        got = await reading
        assert seqs(got) == acked
        assert running.metric("albatross_notifier_closes_total", code="4008", by="server") == 1
        assert await slow.read_until_close(timeout=10) == 4008
        assert running.metric("albatross_notifier_drops_total", reason="buffer_full") == 1
        await fast.close()
        slow.close()


async def test_no_auth_message_within_the_timeout_closes_4401(nats_url: str) -> None:
    async with connected(nats_url) as conn, \
            notifier(conn, FakeAuthenticator(), notifier_config(auth_timeout=0.5)) as running:
        client = await open_socket(running.url())
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await client.close_code(timeout=3) == 4401
        assert 0.4 < loop.time() - started < 2.0
        await client.close()


@pytest.mark.parametrize("first", [
    "not json", '{"type": "resume", "after": 1}', '{"type": "auth"}',
    '{"type": "auth", "token": 5}', '{"type": "auth", "token": "unknown"}',
    '{"type": "auth", "token": "tok", "extra": 1}', b'{"type": "auth", "token": "tok"}',
    '["auth", "tok"]', "",
], ids=["text", "resume-first", "no-token", "token-type", "unknown-token", "extra-field",
        "binary", "array", "empty"])
async def test_a_bad_first_message_closes_4401(nats_url: str, first: str | bytes) -> None:
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", uid(), session_id="s")})
    async with connected(nats_url) as conn, notifier(conn, auth) as running:
        client = await open_socket(running.url())
        if isinstance(first, bytes):
            await client.ws.send_bytes(first)
        else:
            await client.ws.send_str(first)
        assert await client.close_code() == 4401
        await client.close()


async def test_must_change_password_is_refused_4403(nats_url: str) -> None:
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", uid(), session_id="s",
                                               must_change_password=True)})
    async with connected(nats_url) as conn, notifier(conn, auth) as running:
        client = await connect(running.url(), "tok", wait_ready=False)
        assert await client.close_code() == 4403
        await client.close()


async def test_origin_allow_list(nats_url: str) -> None:
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", uid(), session_id="s")})
    config = notifier_config(allowed_origins=("https://app.example.com",))
    async with connected(nats_url) as conn, notifier(conn, auth, config) as running:
        host = f"{running.server.host}:{running.server.port}"
        for origin in ("http://evil.example", "null", f"http://{host}.evil.example",
                       "https://app.example.com.evil", f"ftp://{host}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await open_socket(running.url(), origin=origin)
            assert refused.value.status == 403, origin
        for origin in (None, f"http://{host}", f"HTTP://{host.upper()}",
                       "https://app.example.com", "https://APP.example.com:443"):
            client = await open_socket(running.url(), origin=origin)
            await client.ws.send_str('{"type": "auth", "token": "tok"}')
            assert (await client.next())["type"] == "ready", origin
            await client.close()
        assert running.metric("albatross_notifier_origin_refused_total") == 5


async def test_a_second_resume_or_an_unknown_message_closes_1008(nats_url: str) -> None:
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", uid(), session_id="s")})
    async with connected(nats_url) as conn, notifier(conn, auth) as running:
        client = await connect(running.url(), "tok", resume_after=0)
        await client.ws.send_str('{"type": "resume", "after": 0}')
        assert await client.close_code() == 1008
        await client.close()
        client = await connect(running.url(), "tok")
        await client.ws.send_str('{"type": "auth", "token": "tok"}')
        assert await client.close_code() == 1008
        await client.close()


async def test_shutdown_closes_every_socket_with_1001(nats_url: str) -> None:
    tenant = uid("t-")
    auth = FakeAuthenticator({"tok": Principal(uid(), "Pilot", tenant, session_id="s")})
    async with connected(nats_url) as conn, notifier(conn, auth) as running:
        ready = [await connect(running.url(), "tok") for _ in range(3)]
        unauthenticated = await open_socket(running.url())
        codes = asyncio.gather(*(c.close_code(timeout=5) for c in
                                 [*ready, unauthenticated]))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await running.server.close()
        assert await codes == [1001, 1001, 1001, 1001]
        assert loop.time() - started < 5
        for client in [*ready, unauthenticated]:
            await client.close()


# A client that stops reading, with a small receive window (aiohttp's client would keep
# reading into its own buffers) ----------------------------------------------------------------

class RawSocket:
    """A minimal WebSocket client on a socket with a 4 KiB receive buffer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> RawSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        # A small limit: the reader stops taking data from the kernel once 2 KiB wait unread.
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        writer.write((f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        raw = cls(reader, writer)
        raw.send_text(msgspec.json.encode({"type": "auth", "token": token}))
        opcode, payload = await raw.frame()
        assert opcode == 1
        assert b'"ready"' in payload
        return raw

    def send_text(self, payload: bytes) -> None:
        mask = bytes([1, 2, 3, 4])
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        head = await self.reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def read_until_close(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.frame()
                if opcode == 8:
                    return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.close()
