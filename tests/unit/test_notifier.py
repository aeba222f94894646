"""The notifier's logic without a network: the seam between replay and live, backpressure,
the per-recipient views, the Origin rule, the protocol and the revocation decisions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from albatross.application.principal import Principal
from albatross.application.views import ChangeMessage, PirepView, UserView
from albatross.ports import StoreUnavailable
from albatross.services.notifier.fanout import Outgoing, text_frame
from albatross.services.notifier.hub import Hub
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.origin import OriginPolicy, normalise_origin
from albatross.services.notifier.ports import Change
from albatross.services.notifier.protocol import Auth, ClientDecoder, ProtocolError, Resume
from albatross.services.notifier.revocation import RevocationWatcher
from albatross.services.notifier.session import Session, SessionConfig, State

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PILOT = Principal("pilot-a", "Pilot", "A", session_id="s")
ADMIN = Principal("admin-a", "TenantAdmin", "A", session_id="s2")
OTHER_ADMIN = Principal("admin-a2", "TenantAdmin", "A", session_id="s3")


def pirep(tenant: str, n: int) -> PirepView:
    return PirepView(
        id=f"p{n}", tenant_id=tenant, pilot_id="pilot-a", status="pending", flight_number="X1",
        departure="EGLL", arrival="LFPG", aircraft_type=None, aircraft_registration=None,
        block_off_at=T0, block_on_at=T0 + timedelta(hours=1), flight_time_minutes=50,
        fuel_used_kg=None, distance_nm=None, landing_rate_fpm=None, route=None, remarks=None,
        source="manual", submitted_at=T0, reviewed_at=None, reviewed_by=None,
        review_comment=None, version=1)


def user(user_id: str, tenant: str = "A") -> UserView:
    return UserView(id=user_id, email=f"{user_id}@example.com", display_name=user_id,
                    role="Pilot", tenant_id=tenant, created_at=T0, must_change_password=False,
                    flight_count=0, flight_minutes=0)


def change(sequence: int, tenant: str = "A") -> Change:
    view = pirep(tenant, sequence)
    return Change(sequence, ChangeMessage(sequence=sequence, entity="pirep", id=view.id,
                                          tenant_id=tenant, event="PirepSubmitted", data=view))


class FakeWs:
    """What a Session uses of an aiohttp WebSocketResponse and of its transport."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed_with: tuple[int, bytes] | None = None
        self.stalled = False  # a client that stopped reading: writes pile up in the buffer
        self.buffered = 0

    # The transport.
    def write(self, data: bytes) -> None:
        length, head = data[1] & 0x7F, 2
        if length == 126:
            length, head = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[2:10], "big"), 10
        assert data[0] == 0x81
        assert len(data) == head + length
        if self.stalled:
            self.buffered += len(data)
        else:
            self.frames.append(msgspec.json.decode(data[head:]))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed_with is not None

    # The WebSocketResponse.
    @property
    def closed(self) -> bool:
        return self.closed_with is not None

    async def close(self, *, code: int, message: bytes, drain: bool = True) -> bool:
        self.closed_with = (code, message)
        return True

    def sequences(self) -> list[int]:
        return [f["sequence"] for f in self.frames if f["type"] == "change"]


class FakeFeed:
    """A stored changes stream; replay yields ``pause`` times between items."""

    def __init__(self, stored: list[Change], pauses: list[int] | None = None) -> None:
        self.stored = stored
        self.pauses = pauses or []
        self.replays: list[tuple[int, int]] = []
        self.gate: asyncio.Event | None = None

    async def replay(self, after: int, until: int) -> AsyncGenerator[Change, None]:
        self.replays.append((after, until))
        for i, item in enumerate(c for c in self.stored if after < c.sequence <= until):
            for _ in range(self.pauses[i % len(self.pauses)] if self.pauses else 0):
                await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            yield item


def make_session(ws: FakeWs, feed: FakeFeed, principal: Principal = PILOT,
                 **config: Any) -> tuple[Session, NotifierMetrics]:
    metrics = NotifierMetrics(CollectorRegistry())
    session = Session(ws, ws, principal, "secret", "hash", feed=feed,  # type: ignore[arg-type]
                      config=SessionConfig(**{"resume_grace": 0.05, **config}),
                      metrics=metrics, abort=lambda: None)
    return session, metrics


def hub_at(sequence: int, metrics: NotifierMetrics | None = None) -> Hub:
    hub = Hub(FakeFeed([]), metrics or NotifierMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    for n in range(1, sequence + 1):
        hub.dispatch(Change(n, None))
    return hub


async def settle(session: Session, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while session.state is not State.LIVE:
            await asyncio.sleep(0.005)


# The seam ---------------------------------------------------------------------------------

async def run_seam(before: int, after: int, live: int, replay_pauses: list[int],
                   live_pauses: list[int], foreign: set[int], pipelined: bool) -> list[int]:
    stored = [change(n, "B" if n in foreign else "A") for n in range(1, before + live + 1)]
    feed = FakeFeed(stored, replay_pauses)
    hub = hub_at(0)
    for item in stored[:before]:
        hub.dispatch(item)
    ws = FakeWs()
    session, _ = make_session(ws, feed, resume_grace=5.0)
    hub.register(session)
    session.start()
    if pipelined:
        assert session.resume(after)

    async def publish_live() -> None:
        for i, item in enumerate(stored[before:]):
            for _ in range(live_pauses[i % len(live_pauses)]):
                await asyncio.sleep(0)
            hub.dispatch(item)

    publisher = asyncio.create_task(publish_live())
    if not pipelined:
        await asyncio.sleep(0)
        assert session.resume(after)
    await publisher
    await settle(session)
    session.close(1000, "done")
    await session.wait_closed()
    assert ws.frames[0] == {"type": "ready", "user_id": "pilot-a", "sequence": before}
    return ws.sequences()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.integers(0, 25), after_offset=st.integers(-30, 5), live=st.integers(0, 25),
       replay_pauses=st.lists(st.integers(0, 4), min_size=1, max_size=6),
       live_pauses=st.lists(st.integers(0, 4), min_size=1, max_size=6),
       foreign=st.sets(st.integers(1, 50)), pipelined=st.booleans())
def test_resume_gives_every_visible_change_after_n_once_in_order(
        before: int, after_offset: int, live: int, replay_pauses: list[int],
        live_pauses: list[int], foreign: set[int], pipelined: bool) -> None:
    after = max(0, before + after_offset)
    got = asyncio.run(run_seam(before, after, live, replay_pauses, live_pauses, foreign,
                               pipelined))
    expected = [n for n in range(after + 1, before + live + 1) if n not in foreign]
    assert got == expected


async def test_without_resume_live_changes_start_after_ready_once_the_grace_ends() -> None:
    hub, ws = hub_at(7), FakeWs()
    session, _ = make_session(ws, FakeFeed([]), resume_grace=0.1)
    hub.register(session)
    session.start()
    for n in range(8, 12):
        hub.dispatch(change(n))
    await asyncio.sleep(0.03)
    assert ws.sequences() == []  # held: a resume may still come
    await settle(session)
    assert ws.sequences() == [8, 9, 10, 11]
    hub.dispatch(change(12))
    await settle(session)
    assert ws.sequences() == [8, 9, 10, 11, 12]


@dataclass
class Started:
    stored: list[Change]
    hub: Hub
    ws: FakeWs
    feed: FakeFeed
    session: Session


def started(total: int, *, ready: int, grace: float) -> Started:
    """A socket started (``ready`` sent) once the hub has seen changes 1..``ready`` of
    ``total`` stored ones; the rest are the test's to dispatch."""
    stored = [change(n) for n in range(1, total + 1)]
    hub, ws = hub_at(0), FakeWs()
    for item in stored[:ready]:
        hub.dispatch(item)
    feed = FakeFeed(stored)
    session, _ = make_session(ws, feed, resume_grace=grace)
    hub.register(session)
    session.start()
    return Started(stored, hub, ws, feed, session)


async def test_a_late_resume_replays_only_what_was_never_sent() -> None:
    s = started(20, ready=10, grace=0.01)
    stored, hub, ws, feed, session = s.stored, s.hub, s.ws, s.feed, s.session
    await settle(session)
    for item in stored[10:15]:
        hub.dispatch(item)
    await settle(session)
    assert session.resume(4)
    for item in stored[15:]:
        hub.dispatch(item)
    await settle(session)
    assert feed.replays == [(4, 10)]
    assert sorted(ws.sequences()) == list(range(5, 21))
    assert len(set(ws.sequences())) == len(ws.sequences())
    assert not session.resume(0)  # a second resume is a protocol error


async def test_a_resume_while_held_changes_wait_for_room_is_served_first_in_order() -> None:
    """The grace ended without a resume; the held changes wait for a slow client to make
    room; a resume then is served before them (it was accepted, and then ignored)."""
    s = started(13, ready=10, grace=0.05)
    stored, hub, ws, feed, session = s.stored, s.hub, s.ws, s.feed, s.session
    for item in stored[10:]:  # 11..13 held
        hub.dispatch(item)
    ws.buffered = 10**9  # the client is not reading just now
    await asyncio.sleep(0.1)
    assert session.state is State.CATCHING_UP
    assert session.resume(5)
    ws.buffered = 0
    await settle(session)
    assert feed.replays == [(5, 10)]
    assert ws.sequences() == list(range(6, 14))


async def test_a_resume_just_as_the_grace_ends_is_served() -> None:
    s = started(12, ready=10, grace=0.05)
    stored, hub, ws, session = s.stored, s.hub, s.ws, s.session
    hub.dispatch(stored[10])
    waiting = session._resume_at
    assert waiting is not None
    while not waiting.done():  # the grace's timeout cancels the wait; the hold wakes after us
        await asyncio.sleep(0)
    assert session.state is State.HOLDING
    assert session.resume(7)
    hub.dispatch(stored[11])
    await settle(session)
    assert ws.sequences() == [8, 9, 10, 11, 12]


# Backpressure -----------------------------------------------------------------------------

async def test_a_full_buffer_closes_that_socket_4008_and_never_blocks_the_hub() -> None:
    metrics = NotifierMetrics(CollectorRegistry())
    hub, slow_ws, fast_ws = hub_at(0, metrics), FakeWs(), FakeWs()
    frame = len(Outgoing(change(1).message).for_principal(PILOT) or b"")  # type: ignore[arg-type]
    slow, slow_metrics = make_session(slow_ws, FakeFeed([]), max_buffer_bytes=8 * frame)
    fast, _ = make_session(fast_ws, FakeFeed([]), max_buffer_bytes=8 * frame)
    for s in (slow, fast):
        hub.register(s)
        s.start()
        await settle(s)
    slow_ws.stalled = True
    for n in range(1, 101):
        hub.dispatch(change(n))  # synchronous: returns at once whatever the sockets do
    assert fast_ws.sequences() == list(range(1, 101))
    assert slow.closed
    await slow.wait_closed()
    assert slow_ws.closed_with is not None
    assert slow_ws.closed_with[0] == 4008
    assert slow_metrics.drops.labels(reason="buffer_full")._value.get() == 1
    assert slow_ws.buffered <= 10 * frame  # bounded: nothing more was written after the bound
    assert metrics.messages_sent.labels(type="change")._value.get() == 100 + 9


async def test_too_many_live_changes_while_catching_up_close_4008() -> None:
    stored = [change(n) for n in range(1, 6)]
    feed = FakeFeed(stored)
    feed.gate = asyncio.Event()  # the replay is stuck (a slow client)
    hub, ws = hub_at(0), FakeWs()
    for item in stored:
        hub.dispatch(item)
    session, _ = make_session(ws, feed, pending_limit=20)
    hub.register(session)
    session.start()
    session.resume(0)
    await asyncio.sleep(0.01)
    for n in range(6, 30):
        hub.dispatch(change(n))
    assert session.closed
    await session.wait_closed()
    assert ws.closed_with is not None
    assert ws.closed_with[0] == 4008


# Per-recipient views ----------------------------------------------------------------------

def unframe(frame: bytes | None) -> Any:
    """The JSON inside one server text frame."""
    assert frame is not None
    ws = FakeWs()
    ws.write(frame)
    return ws.frames[0]


def test_views_follow_the_policy_and_equal_views_share_their_encoding() -> None:
    other = user("pilot-b")
    message = ChangeMessage(sequence=9, entity="user", id=other.id, tenant_id="A",
                            event="UserRegistered", data=other)
    outgoing = Outgoing(message)
    as_pilot = unframe(outgoing.for_principal(PILOT))
    as_admin = unframe(outgoing.for_principal(ADMIN))
    assert as_pilot["data"]["email"] is None
    assert as_admin["data"]["email"] == "pilot-b@example.com"
    assert as_admin["type"] == "change"
    assert as_admin["sequence"] == 9
    assert outgoing.for_principal(ADMIN) is outgoing.for_principal(OTHER_ADMIN)
    same_pilot = Principal("pilot-c", "Pilot", "A", session_id="x")
    assert outgoing.for_principal(PILOT) is outgoing.for_principal(same_pilot)
    assert outgoing.for_principal(Principal("admin-b", "TenantAdmin", "B")) is None
    own = Outgoing(ChangeMessage(sequence=1, entity="user", id="pilot-a", tenant_id="A",
                                 event="UserRegistered", data=user("pilot-a")))
    assert unframe(own.for_principal(PILOT))["data"]["email"] == "pilot-a@example.com"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frames_use_the_right_length_encoding(size: int) -> None:
    payload = b'"' + b"x" * max(0, size - 2) + b'"' if size >= 2 else b"1" * size
    frame = text_frame(payload)
    ws = FakeWs()
    if size:
        ws.write(frame)
        assert len(msgspec.json.encode(ws.frames[0])) == size
    assert frame.endswith(payload)


# Origin -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("origin", "host", "allowed"), [
    (None, "example.com", True),
    ("https://example.com", "example.com", True),
    ("https://example.com:443", "example.com", True),
    ("http://example.com", "example.com:80", True),
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
    ("http://127.0.0.1:8080", "127.0.0.1:8082", False),
    ("https://example.com", "example.com:8443", False),
    ("https://evil.com", "example.com", False),
    ("https://example.com.evil.com", "example.com", False),
    ("null", "example.com", False),
    ("file://", "example.com", False),
    ("https://example.com/path", "example.com", False),
    ("https://user@example.com", "example.com", False),
    ("https://example.com", "", False),
    ("https://example.com", None, False),
    ("https://[::1]:8080", "[::1]:8080", True),
    ("https://app.example.org", "example.com", True),  # configured below
    ("http://app.example.org", "example.com", False),  # scheme matters for extras
])
def test_origin_rule(origin: str | None, host: str | None, allowed: bool) -> None:
    policy = OriginPolicy(["https://APP.example.org/", "not an origin"])
    assert policy.allows(origin, host) is allowed


def test_normalise_origin() -> None:
    assert normalise_origin("HTTPS://Example.COM:443") == "https://example.com"
    assert normalise_origin("http://example.com:8080/") == "http://example.com:8080"
    assert normalise_origin("http://example.com:99999") is None
    assert normalise_origin("ws://example.com") is None


# Protocol ---------------------------------------------------------------------------------

def test_client_messages() -> None:
    decoder = ClientDecoder()
    assert decoder.decode('{"type": "auth", "token": "abc"}') == Auth(token="abc")
    assert decoder.decode(b'{"type": "resume", "after": 12}') == Resume(after=12)
    for bad in ('{"type": "auth", "token": ""}', '{"type": "resume", "after": -1}',
                '{"type": "resume", "after": "1"}', '{"type": "ping"}', "{}", "[]", "",
                '{"type": "auth", "token": "' + "x" * 201 + '"}', "\x00", '{"type": "auth"'):
        with pytest.raises(ProtocolError):
            decoder.decode(bad)


# Revocation decisions ---------------------------------------------------------------------

class Credentials:
    def __init__(self, tokens: dict[str, Principal]) -> None:
        self.tokens = tokens
        self.forgotten: list[tuple[str | None, str | None]] = []
        self.down = False

    async def authenticate(self, secret: str) -> Principal | None:
        if self.down:
            raise StoreUnavailable("down")
        return self.tokens.get(secret)

    def forget(self, secret: str | None = None, *, user_id: str | None = None) -> None:
        self.forgotten.append((secret, user_id))


class NoSignals:
    async def start(self, on_session_removed: Any, on_user_changed: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


async def test_a_socket_admitted_between_a_signal_and_its_commit_is_closed_within_1_s(
        ) -> None:
    """The user had no socket here when the signal came; one is admitted right after, its
    authentication reading the state before the revocation commits (20 ms later)."""
    creds = Credentials({"token": PILOT})
    hub = hub_at(0)
    watcher = RevocationWatcher(hub, creds, NoSignals(), NotifierMetrics(CollectorRegistry()))
    await watcher.user_changed("pilot-a")
    ws = FakeWs()
    session = Session(ws, ws, PILOT, "token", "h-token", feed=FakeFeed([]),  # type: ignore[arg-type]
                      config=SessionConfig(), metrics=NotifierMetrics(CollectorRegistry()),
                      abort=lambda: None)
    hub.register(session)
    watcher.admitted(session)
    await asyncio.sleep(0.02)
    del creds.tokens["token"]  # the revocation commits
    for _ in range(100):  # up to 1 s after the signal
        if session.closed:
            break
        await asyncio.sleep(0.01)
    await session.wait_closed()
    assert ws.closed_with == (4401, b"credential revoked")
    await watcher.stop()


async def test_user_change_re_authenticates_that_users_sockets_only() -> None:
    principals = {"a1": PILOT, "a2": PILOT, "b": ADMIN}
    creds = Credentials(dict(principals))
    hub = hub_at(0)
    sessions = {}
    for token, principal in principals.items():
        ws = FakeWs()
        session = Session(ws, ws, principal, token, f"h-{token}", feed=FakeFeed([]),  # type: ignore[arg-type]
                          config=SessionConfig(), metrics=NotifierMetrics(CollectorRegistry()),
                          abort=lambda: None)
        hub.register(session)
        sessions[token] = (session, ws)
    watcher = RevocationWatcher(hub, creds, NoSignals(), NotifierMetrics(CollectorRegistry()))
    del creds.tokens["a1"]
    creds.down = True
    await watcher.user_changed("pilot-a")
    await asyncio.sleep(0.01)
    assert not any(s.closed for s, _ in sessions.values())  # unknown: nothing closed
    creds.down = False
    await watcher.user_changed("pilot-a")
    await asyncio.sleep(0.01)
    assert (None, "pilot-a") in creds.forgotten
    assert sessions["a1"][0].closed
    assert not sessions["a2"][0].closed
    assert not sessions["b"][0].closed
    await sessions["a1"][0].wait_closed()
    assert sessions["a1"][1].closed_with == (4401, b"credential revoked")
    await watcher.session_removed("h-b")
    await sessions["b"][0].wait_closed()
    assert sessions["b"][1].closed_with == (4401, b"credential revoked")
    creds.tokens["a2"] = Principal("pilot-a", "Pilot", "A", session_id="s",
                                   must_change_password=True)
    await watcher.revalidate_all()
    await sessions["a2"][0].wait_closed()
    assert sessions["a2"][1].closed_with == (4403, b"password change required")
