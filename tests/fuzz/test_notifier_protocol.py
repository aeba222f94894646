"""Fuzzing the WebSocket protocol against a model of the contract.

Whatever a client sends (JSON of any shape, random text, binary frames, frames over the 4 KiB
limit, messages in the wrong order: resume before auth, auth twice, resume twice or with a bad
sequence, pings, client closes, pauses past the auth timeout), the server

* ends the socket with exactly the close code the contract gives for the first offending
  message (docs/notifier.md, "Close codes"), or keeps serving it when nothing offended;
* never logs an unhandled error, and keeps serving the next client;
* keeps delivering to a bystander of another tenant every change of that tenant, in order,
  each once, while the fuzzing goes on;
* never sends the fuzzing client (a pilot of tenant A) anything of tenant B, live or replayed.

The notifier runs on its own event loop in a thread for the whole module, so each Hypothesis
example is a plain synchronous call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from albatross.application.principal import Principal
from albatross.services.notifier.protocol import (
    MAX_CLIENT_MESSAGE_BYTES,
    Auth,
    ClientDecoder,
    ProtocolError,
    Resume,
)
from tests.integration.test_notifier_support import (
    Client,
    FakeAuthenticator,
    Nats,
    RunningNotifier,
    change_of,
    connect,
    connected,
    notifier,
    notifier_config,
    pirep,
    publish,
    uid,
)
from tests.reliability_figures import record

pytestmark = pytest.mark.real
T = TypeVar("T")
TOKEN = "good-token"  # a pilot of tenant A: the fuzzing client
BYSTANDER = "bystander-token"  # a pilot of tenant B
TENANT_A, TENANT_B = uid("ta-"), uid("tb-")
PILOT_A, PILOT_B = uid("ua-"), uid("ub-")
AUTH_TIMEOUT = 0.3
# Pauses before auth beyond this may meet the deadline on a loaded machine: either answer.
AUTH_UNCERTAIN = 0.05
TOO_BIG = {1009, 1006}  # aiohttp closes with 1009, or drops the connection (1006)


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Bystander:
    client: Client
    expected: list[int] = field(default_factory=list)  # tenant B change sequences published
    seen: list[int] = field(default_factory=list)


class Background:
    """A notifier on a private loop in a worker thread, plus a bystander socket of tenant B."""

    def __init__(self, nats_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stop_event: asyncio.Event | None = None
        self.running: RunningNotifier | None = None
        self.conn: Nats | None = None
        self.bystander: Bystander | None = None
        self.nats_url = nats_url
        self.examples = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        assert self.run(self._started())

    async def _started(self) -> bool:
        started = asyncio.Event()
        self.stop_event = asyncio.Event()

        async def serve() -> None:
            auth = FakeAuthenticator({
                TOKEN: Principal(PILOT_A, "Pilot", TENANT_A, session_id="sa"),
                BYSTANDER: Principal(PILOT_B, "Pilot", TENANT_B, session_id="sb")})
            config = notifier_config(auth_timeout=AUTH_TIMEOUT, resume_grace=0.05)
            async with connected(self.nats_url) as conn, notifier(conn, auth, config) as running:
                self.conn, self.running = conn, running
                self.bystander = Bystander(await connect(running.url(), BYSTANDER))
                started.set()
                assert self.stop_event is not None
                await self.stop_event.wait()
                await self.bystander.client.close()

        self.task = asyncio.create_task(serve())
        await asyncio.wait({self.task, asyncio.create_task(started.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            self.task.result()
        return True

    def stop(self) -> None:
        async def stopping() -> None:
            assert self.stop_event is not None
            self.stop_event.set()
            await self.task

        self.run(stopping())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def background(nats_url: str) -> Iterator[tuple[Background, ErrorLog]]:
    errors = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("aiohttp", "asyncio", "albatross")]
    for logger in loggers:
        logger.addHandler(errors)
    server = Background(nats_url)
    server.start()
    try:
        yield server, errors
    finally:
        record("fuzz", target="websocket_protocol", cases=server.examples)
        server.stop()
        for logger in loggers:
            logger.removeHandler(errors)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["auth", "resume", "change", "ready", "ping", ""])},
    optional={"token": st.sampled_from([TOKEN, "", "x" * 300]) | json_values,
              "after": st.integers(-5, 2**64) | json_values, "extra": json_values})
actions = st.one_of(
    st.tuples(st.just("json"), messages),
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("binary"), st.binary(max_size=200)),
    st.tuples(st.just("huge"), st.integers(MAX_CLIENT_MESSAGE_BYTES - 96, 200_000)),
    st.tuples(st.just("auth"), st.just(TOKEN)),
    st.tuples(st.just("resume"), st.integers(0, 2**63 - 1) | st.integers(-3, -1)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("sleep"), st.floats(0, 0.1)),
    st.tuples(st.just("close"), st.sampled_from([1000, 1001, 3000, 4999])),
)


def frame(kind: str, value: Any) -> str | bytes | None:
    """The data frame an action sends (None: not a data frame)."""
    if kind == "json":
        return msgspec.json.encode(value).decode()
    if kind == "text":
        return str(value)
    if kind == "binary":
        return bytes(value)
    if kind == "huge":
        return "x" * int(value)
    if kind == "auth":
        return f'{{"type": "auth", "token": "{value}"}}'
    if kind == "resume":
        return f'{{"type": "resume", "after": {value}}}'
    return None


@dataclass(frozen=True)
class Expected:
    """The contract's answer to a script: the close codes allowed (None: still open), and
    whether the socket may have authenticated."""

    codes: frozenset[int | None]
    authenticated: bool


def expected(script: list[tuple[str, Any]]) -> Expected:
    """The model's answer. Two races widen it: a client that closes the socket itself later in
    the script may do so before the server's close reaches it (no server code to see), and a
    frame over the limit sent after the offence, while the server closes, may abort the
    connection (1009/1006) before the close frame gets out."""
    answer, decided_at = _answer(script)
    codes = set(answer.codes)
    later = script[decided_at + 1:] if decided_at is not None else []
    if any(kind == "close" for kind, _ in script):
        codes.add(None)
    if any(kind == "huge" and value > MAX_CLIENT_MESSAGE_BYTES for kind, value in later):
        codes |= TOO_BIG
    return Expected(frozenset(codes), answer.authenticated)


def _answer(script: list[tuple[str, Any]]) -> tuple[Expected, int | None]:
    """The model: walk the script as the contract reads it, up to the first offence (its
    index; None if nothing offended)."""
    decoder = ClientDecoder()
    authed = resumed = False
    waited = 0.0
    for at, (kind, value) in enumerate(script):
        if kind == "sleep":
            waited += 0 if authed else value
            continue
        if kind == "ping":
            continue
        if kind == "close":
            return Expected(frozenset({None}), authed), at  # the client ended it
        if not authed and waited > AUTH_UNCERTAIN:
            # Near the auth deadline: a timeout (4401) is right, or whatever the script earns
            # from here had the frame arrived in time (then it may authenticate).
            in_time = [a for a in script[:at] if a[0] != "sleep"] + script[at:]
            alternative, _ = _answer(in_time)
            return Expected(frozenset({4401}) | alternative.codes,
                            alternative.authenticated), at
        data = frame(kind, value)
        assert data is not None
        size = len(data.encode() if isinstance(data, str) else data)
        if size > MAX_CLIENT_MESSAGE_BYTES:
            return Expected(frozenset(TOO_BIG), authed), at
        if not authed:
            first = _first_frame(kind, value, decoder)
            if first.codes != frozenset({None}):
                return first, at
            authed = True
            continue
        if isinstance(data, bytes):
            return Expected(frozenset({1003}), True), at
        try:
            message = decoder.decode(data)
        except ProtocolError:
            return Expected(frozenset({1008}), True), at
        if not isinstance(message, Resume) or resumed:
            return Expected(frozenset({1008}), True), at  # auth twice, resume twice
        resumed = True
    if not authed:
        return Expected(frozenset({4401}), False), None  # no auth at all: the deadline passes
    return Expected(frozenset({None}), True), None


def _first_frame(kind: str, value: Any, decoder: ClientDecoder) -> Expected:
    """The answer to the first data frame: authenticated (None), or refused with 4401."""
    data = frame(kind, value)
    if data is None or isinstance(data, bytes):
        return Expected(frozenset({4401}), False)
    if len(data.encode()) > MAX_CLIENT_MESSAGE_BYTES:
        return Expected(frozenset(TOO_BIG), False)
    try:
        message = decoder.decode(data)
    except ProtocolError:
        return Expected(frozenset({4401}), False)
    if isinstance(message, Auth) and message.token == TOKEN:
        return Expected(frozenset({None}), True)
    return Expected(frozenset({4401}), False)


async def play(url: str, script: list[tuple[str, Any]],
               expect: Expected) -> tuple[int | None, list[dict[str, Any]]]:
    """Run a script; the server's close code (None if open or closed by the client) and every
    text message the server sent."""
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for kind, value in script:
            if ws.closed:
                break
            try:
                if kind == "ping":
                    await ws.ping(value)
                elif kind == "sleep":
                    await asyncio.sleep(value)
                elif kind == "close":
                    await ws.close(code=value)
                    return None, received
                else:
                    data = frame(kind, value)
                    if isinstance(data, bytes):
                        await ws.send_bytes(data)
                    else:
                        await ws.send_str(str(data))
            except (ConnectionError, aiohttp.ClientError):
                break
        # Wait for the close the model predicts (bounded), or watch an open socket a while.
        window = 0.3 if None in expect.codes else 5.0
        try:
            while True:
                msg = await ws.receive(timeout=window)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    received.append(msgspec.json.decode(msg.data))
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                    return ws.close_code, received
        except TimeoutError:
            return None, received


async def publish_changes(server: Background) -> None:
    """One PIREP change of each tenant, while the script runs."""
    assert server.conn is not None
    assert server.bystander is not None
    await asyncio.sleep(0.02)
    await publish(server.conn.js, change_of(pirep(TENANT_A, PILOT_A)))
    sequence = await publish(server.conn.js, change_of(pirep(TENANT_B, PILOT_B)))
    server.bystander.expected.append(sequence)


async def round_trip(server: Background, script: list[tuple[str, Any]],
                     expect: Expected) -> tuple[int | None, list[dict[str, Any]]]:
    assert server.running is not None
    played, _ = await asyncio.gather(play(server.running.url(), script, expect),
                                     publish_changes(server))
    return played


async def bystander_caught_up(server: Background) -> list[int]:
    """The bystander's change sequences once it has every tenant B change published."""
    assert server.bystander is not None
    bystander = server.bystander
    async with asyncio.timeout(10):
        while len(bystander.seen) < len(bystander.expected):
            message = await bystander.client.next(10)
            assert message["type"] == "change", message
            assert message["tenant_id"] == TENANT_B, message  # nothing of tenant A
            bystander.seen.append(message["sequence"])
    return bystander.seen


async def healthy(url: str) -> bool:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(f'{{"type": "auth", "token": "{TOKEN}"}}')
        msg = await ws.receive(timeout=5)
        return msg.type is aiohttp.WSMsgType.TEXT and '"ready"' in msg.data


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=st.lists(actions, min_size=1, max_size=6))
@example(script=[("auth", TOKEN), ("text", "garbage")])
@example(script=[("auth", TOKEN), ("binary", b"\x00")])
@example(script=[("auth", TOKEN), ("resume", 0), ("resume", 1)])
@example(script=[("auth", TOKEN), ("auth", TOKEN)])
@example(script=[("auth", TOKEN), ("resume", -1)])
@example(script=[("auth", TOKEN), ("resume", 0)])
@example(script=[("auth", TOKEN), ("huge", 100_000)])
@example(script=[("huge", 100_000)])
@example(script=[("huge", MAX_CLIENT_MESSAGE_BYTES)])  # exactly 4 KiB: allowed (malformed)
@example(script=[("auth", TOKEN), ("huge", MAX_CLIENT_MESSAGE_BYTES + 1)])
@example(script=[("resume", 5), ("auth", TOKEN)])
@example(script=[("binary", b"{}"), ("auth", TOKEN)])
@example(script=[("json", {"type": "auth", "token": "wrong"})])
@example(script=[("ping", b""), ("sleep", 0.1)])
@example(script=[("auth", TOKEN), ("close", 4999)])
def test_every_client_input_gets_the_contracts_answer(background: tuple[Background, ErrorLog],
                                                      script: list[tuple[str, Any]]) -> None:
    server, errors = background
    assert server.running is not None
    server.examples += 1
    expect = expected(script)
    code, received = server.run(round_trip(server, script, expect))
    assert code in expect.codes, (code, sorted(expect.codes, key=str), script)
    # No leak: a pilot of tenant A gets tenant A's changes only, live or replayed.
    assert all(m.get("tenant_id") in (None, TENANT_A) for m in received), received
    if received:
        assert expect.authenticated, received
        assert received[0]["type"] == "ready", received
    sequences = [m["sequence"] for m in received if m["type"] == "change"]
    assert sequences == sorted(set(sequences)), sequences  # in order, each once
    # The bystander of tenant B got every change of B so far, in order, each once.
    seen = server.run(bystander_caught_up(server))
    assert seen == server.bystander.expected if server.bystander else False
    assert server.run(healthy(server.running.url()))
    assert server.running.notifier.hub.running
    assert errors.records == [], [r.getMessage() for r in errors.records]
