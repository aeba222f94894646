"""Property tests: replaying events rebuilds the state that deciding built, through every format.

For each aggregate, random command sequences (valid and invalid) are decided against the
current state; what the decisions produce is folded incrementally (continuing from a msgpack
snapshot after each step, as the repository does) and, separately, encoded and decoded with
the wire codec. Folding the decoded events from scratch must give exactly the same state.

A rule-based state machine then drives the in-memory event store through the
AggregateRepository (two replicas with their own snapshot caches) and checks that what a
repository loads is always a fold of what the store holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from albatross.adapters.codec import EventCodec
from albatross.adapters.memory import InMemoryEventStore, InMemorySnapshotStore
from albatross.application.repository import AggregateRepository
from albatross.domain.aggregates import PIREP, TENANT, USER, AggregateKind, default_registry
from albatross.domain.errors import (
    Conflict,
    DomainError,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from albatross.domain.events import Event
from albatross.domain.pireps import (
    CLOCK_SKEW,
    FlightDetails,
    Pirep,
    ReviewPirep,
    SubmitPirep,
    decide_review,
    decide_submit,
)
from albatross.domain.tenants import CreateTenant, decide_create
from albatross.domain.users import (
    CreateApiKey,
    RegisterUser,
    RevokeApiKey,
    SetPassword,
    User,
    decide_create_api_key,
    decide_register,
    decide_revoke_api_key,
    decide_set_password,
)
from albatross.ports import StreamId

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
CODEC = EventCodec(default_registry())
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ZONES = [UTC, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]
AIRPORTS = ["EGLL", "KJFK", "LFPG", "YSSY", "EDDF"]


# Strategies -------------------------------------------------------------------------------

@st.composite
def flight_details(draw: st.DrawFn, ref: datetime = T0) -> FlightDetails:
    """Mostly valid reports (relative to ``ref``), one field in five spoiled."""
    zone = draw(st.sampled_from(ZONES))
    off = ref - timedelta(minutes=draw(st.integers(60, 3000)), seconds=draw(st.integers(0, 59)),
                          microseconds=draw(st.integers(0, 999_999)))
    block = draw(st.integers(1, 24 * 60))
    on = off + timedelta(minutes=block)
    fields: dict[str, Any] = {
        "flight_number": draw(st.from_regex(r"[A-Z0-9]{1,10}", fullmatch=True)),
        "departure": draw(st.sampled_from(AIRPORTS)),
        "arrival": draw(st.sampled_from(AIRPORTS)),
        "block_off_at": off.astimezone(zone),
        "block_on_at": on.astimezone(zone),
        "flight_time_minutes": draw(st.integers(1, block)),
        "aircraft_type": draw(st.none() | st.from_regex(r"[A-Z0-9]{2,4}", fullmatch=True)),
        "aircraft_registration": draw(st.none() | st.sampled_from(["G-EUPT", "N12345", "A"])),
        "fuel_used_kg": draw(st.none() | st.floats(0, 300_000)),
        "distance_nm": draw(st.none() | st.floats(0, 12_500)),
        "landing_rate_fpm": draw(st.none() | st.floats(-5_000, 1_000)),
        "route": draw(st.none() | st.text(max_size=30)),
        "remarks": draw(st.none() | st.text(max_size=30)),
        "source": draw(st.sampled_from(["manual", "acars", "api"])),
    }
    if draw(st.integers(0, 4)) == 0:
        spoil = draw(st.sampled_from(["flight_number", "departure", "aircraft_type",
                                      "flight_time_minutes", "fuel_used_kg", "landing_rate_fpm",
                                      "naive", "reversed", "future", "remarks"]))
        if spoil in {"flight_number", "departure", "aircraft_type", "remarks"}:
            fields[spoil] = draw(st.text(max_size=12))
        elif spoil == "flight_time_minutes":
            fields[spoil] = draw(st.integers(-10, 3000))
        elif spoil in {"fuel_used_kg", "landing_rate_fpm"}:
            fields[spoil] = draw(st.floats(allow_nan=True, allow_infinity=True))
        elif spoil == "naive":
            name = draw(st.sampled_from(["block_off_at", "block_on_at"]))
            fields[name] = fields[name].replace(tzinfo=None)
        elif spoil == "reversed":
            fields["block_off_at"], fields["block_on_at"] = on, off
        else:
            ahead = timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
            fields["block_on_at"] = ref + ahead
            fields["block_off_at"] = ref + ahead - timedelta(minutes=block)
    return FlightDetails(**fields)


def plausible(details: FlightDetails, now: datetime) -> bool:
    """An independent statement of the time rules an accepted report must satisfy."""
    off, on = details.block_off_at, details.block_on_at
    if off.tzinfo is None or on.tzinfo is None:
        return False
    block_minutes = int((on - off).total_seconds() // 60)
    return (on > off and on - off <= timedelta(hours=24)
            and 1 <= details.flight_time_minutes <= block_minutes
            and on <= now + CLOCK_SKEW)


@dataclass(frozen=True)
class Submit:
    details: FlightDetails
    pilot_id: str


@dataclass(frozen=True)
class Review:
    decision: str
    reviewer_id: str
    comment: str | None


pirep_commands = st.one_of(
    st.builds(Submit, flight_details(), st.sampled_from(["u1", "u2"])),
    st.builds(Review, st.sampled_from(["accept", "reject"]), st.sampled_from(["a1", "a2"]),
              st.none() | st.text(max_size=20) | st.just("x" * 2001)),
)

user_commands = st.one_of(
    st.builds(RegisterUser, user_id=st.just("u1"),
              email=st.sampled_from(["pilot@example.com", "Pilot+VA@Example.COM", "bad",
                                     "a..b@example.com"]),
              display_name=st.sampled_from(["Jane", "  Jane Pilot ", "", "x" * 101]),
              role=st.sampled_from(["PlatformAdmin", "TenantAdmin", "Pilot"]),
              tenant_id=st.sampled_from([None, "t1", ""]),
              password_hash=st.sampled_from(["", "ph-1"]), must_change_password=st.booleans()),
    st.builds(SetPassword, password_hash=st.sampled_from(["", "ph-2", "ph-3"]),
              by_admin=st.booleans(), keep_session_id=st.none() | st.just("s1")),
    st.builds(CreateApiKey, key_id=st.sampled_from(["k1", "k2", "k3"]),
              name=st.sampled_from(["ACARS", " tracker ", "", "  ", "x" * 101]),
              prefix=st.just("alb_ab12"), key_hash=st.sampled_from(["kh-1", "kh-2"])),
    st.builds(RevokeApiKey, key_id=st.sampled_from(["k1", "k2", "k3", "k4"])),
)

tenant_commands = st.builds(
    CreateTenant, tenant_id=st.just("t1"), name=st.sampled_from(["Speedbird", " Air ", ""]),
    icao=st.sampled_from(["BAW", "DLH", "baw", "BA"]), iata=st.sampled_from([None, "BA", "B"]))

gaps = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3))


# The replay property ----------------------------------------------------------------------

class Replay:
    """Decides commands one by one and keeps the incremental state and the wire history."""

    def __init__(self, kind: AggregateKind[Any]) -> None:
        self.kind = kind
        self.state: Any = None
        self.at = T0
        self.history: list[tuple[Event, datetime]] = []
        self.snapshot_decoder = msgspec.msgpack.Decoder(kind.state_type)

    def step(self, gap: timedelta, decide: Callable[[Any, datetime], Sequence[Event]],
             actor: str | None = "actor-1") -> type[DomainError] | None:
        self.at += gap
        before = self.state
        try:
            events = decide(self.state, self.at)
        except DomainError as exc:
            assert self.state is before  # a refused command changes nothing
            return type(exc)
        assert events, "a command that is not refused produces events"
        for event in events:
            assert isinstance(event, self.kind.events)
            decoded, occurred_at, actor_id = CODEC.decode(CODEC.encode(event, self.at, actor))
            assert decoded == event
            assert type(decoded) is type(event)
            assert occurred_at == self.at
            assert actor_id == actor
            self.history.append((decoded, occurred_at))
        state = self.kind.fold(self.state, [(e, self.at) for e in events])
        assert state is not None
        # Continue from what the snapshot store would hand back.
        restored = self.snapshot_decoder.decode(msgspec.msgpack.encode(state))
        assert restored == state
        self.state = restored
        return None

    def check(self) -> None:
        assert self.kind.fold(None, self.history) == self.state
        if self.state is not None:
            assert self.snapshot_decoder.decode(msgspec.msgpack.encode(self.state)) == self.state
            # The state survives JSON too (the shape read models and APIs start from).
            assert msgspec.json.decode(msgspec.json.encode(self.state),
                                       type=self.kind.state_type) == self.state


@PROPERTY
@given(st.lists(st.tuples(pirep_commands, gaps), max_size=12))
def test_pirep_replay(steps: list[tuple[Submit | Review, timedelta]]) -> None:
    replay = Replay(PIREP)
    status: str | None = None
    for command, gap in steps:
        if isinstance(command, Submit):
            def decide(state: Pirep | None, now: datetime, c: Submit = command) -> list[Event]:
                return decide_submit(state, SubmitPirep(pirep_id="p1", tenant_id="t1",
                                                        pilot_id=c.pilot_id, details=c.details,
                                                        now=now))
            refused = replay.step(gap, decide)
            if status is not None:
                assert refused is Conflict
            elif refused is None:
                assert plausible(command.details, replay.at), command.details
                status = "pending"
            else:
                assert refused is ValidationFailed
        else:
            review = ReviewPirep(decision=command.decision,  # type: ignore[arg-type]
                                 reviewer_id=command.reviewer_id, comment=command.comment)
            refused = replay.step(gap, lambda s, _, r=review: decide_review(s, r))
            if status is None:
                assert refused is NotFound
            elif status != "pending":
                assert refused is InvalidState
            elif command.comment is not None and len(command.comment) > 2000:
                assert refused is ValidationFailed
            elif refused is None:
                status = "accepted" if command.decision == "accept" else "rejected"
                assert replay.state.reviewed_by == command.reviewer_id
                assert replay.state.reviewed_at == replay.at
            else:
                assert refused is ValidationFailed  # a control character in the comment
        assert (replay.state.status if replay.state else None) == status
    replay.check()


@PROPERTY
@given(st.lists(st.tuples(user_commands, gaps), max_size=15))
def test_user_replay(steps: list[tuple[Any, timedelta]]) -> None:
    replay = Replay(USER)
    keys: dict[str, bool] = {}  # key id -> revoked
    password_hash: str | None = None
    for command, gap in steps:
        exists = replay.state is not None
        if isinstance(command, RegisterUser):
            refused = replay.step(gap, lambda s, _, c=command: decide_register(s, c))
            if exists:
                assert refused is Conflict
            elif refused is None:
                password_hash = command.password_hash
                assert (command.role == "PlatformAdmin") is (replay.state.tenant_id is None)
            else:
                assert refused is ValidationFailed
        elif not exists:
            decide = {SetPassword: decide_set_password, CreateApiKey: decide_create_api_key,
                      RevokeApiKey: decide_revoke_api_key}[type(command)]
            refused = replay.step(gap, lambda s, _, c=command, d=decide: d(s, c))
            assert refused is NotFound
        elif isinstance(command, SetPassword):
            refused = replay.step(gap, lambda s, _, c=command: decide_set_password(s, c))
            if command.password_hash:
                assert refused is None
                password_hash = command.password_hash
                assert replay.state.must_change_password is command.by_admin
                assert replay.state.sessions_revoked_at == replay.at
            else:
                assert refused is ValidationFailed
        elif isinstance(command, CreateApiKey):
            refused = replay.step(gap, lambda s, _, c=command: decide_create_api_key(s, c))
            name_ok = bool(command.name.strip()) and len(command.name) <= 100
            if not name_ok:
                assert refused is ValidationFailed
            elif command.key_id in keys:
                assert refused is Conflict
            else:
                assert refused is None
                keys[command.key_id] = False
        else:
            refused = replay.step(gap, lambda s, _, c=command: decide_revoke_api_key(s, c))
            if command.key_id not in keys:
                assert refused is NotFound
            elif keys[command.key_id]:
                assert refused is InvalidState
            else:
                assert refused is None
                keys[command.key_id] = True
        if replay.state is not None:
            user: User = replay.state
            assert user.password_hash == password_hash
            assert {k: v.revoked_at is not None for k, v in user.api_keys.items()} == keys
            assert all(v.key_hash for v in user.api_keys.values())
    replay.check()


@PROPERTY
@given(st.lists(st.tuples(tenant_commands, gaps), max_size=6))
def test_tenant_replay(steps: list[tuple[CreateTenant, timedelta]]) -> None:
    replay = Replay(TENANT)
    for command, gap in steps:
        existed = replay.state is not None
        refused = replay.step(gap, lambda s, _, c=command: decide_create(s, c), actor=None)
        if existed:
            assert refused is Conflict
        elif refused is not None:
            assert refused is ValidationFailed
        else:
            assert replay.state.created_at == replay.at
    replay.check()


# The repository over the in-memory store, as a state machine ------------------------------

PIREP_IDS = ["p1", "p2", "p3"]
USER_IDS = ["u1", "u2"]
KEY_IDS = ["k1", "k2", "k3"]
SCOPE = "t1"


class RepositoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = InMemoryEventStore(CODEC)
        # Two replicas of the command side, each with its own snapshot cache.
        self.snapshots = [InMemorySnapshotStore(), InMemorySnapshotStore()]
        self.pireps = [AggregateRepository(PIREP, self.store, s) for s in self.snapshots]
        self.users = [AggregateRepository(USER, self.store, s) for s in self.snapshots]
        self.now = T0
        self.statuses: dict[str, str] = {}
        self.seen: dict[str, str] = {}
        self.keys: dict[str, dict[str, bool]] = {}
        self.password: dict[str, str] = {}

    def teardown(self) -> None:
        self.loop.close()

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def execute(self, repo: AggregateRepository[Any], aggregate_id: str,
                decide: Callable[[Any], Sequence[Event]]) -> type[DomainError] | None:
        self.now += timedelta(minutes=7)
        before = self.run(self.store.last_sequence())
        try:
            self.run(repo.execute(repo.stream(aggregate_id, SCOPE), decide, occurred_at=self.now,
                                  actor_id="actor"))
        except DomainError as exc:
            assert self.run(self.store.last_sequence()) == before  # nothing was written
            return type(exc)
        assert self.run(self.store.last_sequence()) > before
        return None

    # PIREPs

    @rule(replica=st.integers(0, 1), pirep_id=st.sampled_from(PIREP_IDS),
          details=flight_details(), pilot=st.sampled_from(USER_IDS))
    def submit(self, replica: int, pirep_id: str, details: FlightDetails, pilot: str) -> None:
        now = self.now + timedelta(minutes=7)
        command = SubmitPirep(pirep_id=pirep_id, tenant_id=SCOPE, pilot_id=pilot,
                              details=details, now=now)
        refused = self.execute(self.pireps[replica], pirep_id,
                               lambda s: decide_submit(s, command))
        if pirep_id in self.statuses:
            assert refused is Conflict
        elif refused is None:
            self.statuses[pirep_id] = "pending"
        else:
            assert refused is ValidationFailed

    @rule(replica=st.integers(0, 1), pirep_id=st.sampled_from(PIREP_IDS),
          decision=st.sampled_from(["accept", "reject"]))
    def review(self, replica: int, pirep_id: str, decision: str) -> None:
        command = ReviewPirep(decision=decision, reviewer_id="admin")  # type: ignore[arg-type]
        refused = self.execute(self.pireps[replica], pirep_id,
                               lambda s: decide_review(s, command))
        status = self.statuses.get(pirep_id)
        if status is None:
            assert refused is NotFound
        elif status != "pending":
            assert refused is InvalidState
        else:
            assert refused is None
            self.statuses[pirep_id] = "accepted" if decision == "accept" else "rejected"

    # Users

    @rule(replica=st.integers(0, 1), user_id=st.sampled_from(USER_IDS))
    def register(self, replica: int, user_id: str) -> None:
        command = RegisterUser(user_id=user_id, email=f"{user_id}@example.com",
                               display_name=user_id, role="Pilot", tenant_id=SCOPE,
                               password_hash=f"ph-{user_id}-0")
        refused = self.execute(self.users[replica], user_id,
                               lambda s: decide_register(s, command))
        if user_id in self.keys:
            assert refused is Conflict
        else:
            assert refused is None
            self.keys[user_id] = {}
            self.password[user_id] = command.password_hash

    @rule(replica=st.integers(0, 1), user_id=st.sampled_from(USER_IDS),
          key_id=st.sampled_from(KEY_IDS))
    def create_api_key(self, replica: int, user_id: str, key_id: str) -> None:
        command = CreateApiKey(key_id=key_id, name="tracker", prefix="alb_x",
                               key_hash=f"kh-{key_id}")
        refused = self.execute(self.users[replica], user_id,
                               lambda s: decide_create_api_key(s, command))
        if user_id not in self.keys:
            assert refused is NotFound
        elif key_id in self.keys[user_id]:
            assert refused is Conflict
        else:
            assert refused is None
            self.keys[user_id][key_id] = False

    @rule(replica=st.integers(0, 1), user_id=st.sampled_from(USER_IDS),
          key_id=st.sampled_from(KEY_IDS))
    def revoke_api_key(self, replica: int, user_id: str, key_id: str) -> None:
        refused = self.execute(self.users[replica], user_id,
                               lambda s: decide_revoke_api_key(s, RevokeApiKey(key_id=key_id)))
        keys = self.keys.get(user_id)
        if keys is None or key_id not in keys:
            assert refused is NotFound
        elif keys[key_id]:
            assert refused is InvalidState
        else:
            assert refused is None
            keys[key_id] = True

    @rule(replica=st.integers(0, 1), user_id=st.sampled_from(USER_IDS), by_admin=st.booleans())
    def change_password(self, replica: int, user_id: str, by_admin: bool) -> None:
        new_hash = f"ph-{user_id}-{self.now.timestamp()}"
        command = SetPassword(password_hash=new_hash, by_admin=by_admin)
        refused = self.execute(self.users[replica], user_id,
                               lambda s: decide_set_password(s, command))
        if user_id not in self.keys:
            assert refused is NotFound
        else:
            assert refused is None
            self.password[user_id] = new_hash

    # Caches

    @rule(replica=st.integers(0, 1))
    def lose_snapshots(self, replica: int) -> None:
        """A replica restarts with a cold cache: it must rebuild from the events."""
        self.snapshots[replica] = InMemorySnapshotStore()
        self.pireps[replica] = AggregateRepository(PIREP, self.store, self.snapshots[replica])
        self.users[replica] = AggregateRepository(USER, self.store, self.snapshots[replica])

    # Invariants

    def _check(self, kind: AggregateKind[Any], repos: list[AggregateRepository[Any]],
               ids: list[str]) -> list[Any]:
        states = []
        for aggregate_id in ids:
            stream = StreamId(kind.name, aggregate_id, SCOPE)
            records = self.run(self.store.load(stream))
            folded = kind.fold(None, ((r.event, r.occurred_at) for r in records))
            version = records[-1].sequence if records else 0
            assert self.run(self.store.version(stream)) == version
            assert [r.sequence for r in records] == sorted({r.sequence for r in records})
            assert all(r.stream == stream for r in records)
            for repo in repos:
                loaded = self.run(repo.load(stream))
                assert loaded.state == folded
                assert loaded.version == version
            states.append(folded)
        return states

    @invariant()
    def pireps_load_as_their_events_fold(self) -> None:
        for pirep_id, state in zip(PIREP_IDS, self._check(PIREP, self.pireps, PIREP_IDS),
                                   strict=True):
            expected = self.statuses.get(pirep_id)
            assert (state.status if state else None) == expected
            # Once decided, a PIREP never changes status again.
            if self.seen.get(pirep_id) in {"accepted", "rejected"}:
                assert state is not None
                assert state.status == self.seen[pirep_id]
            if state is not None:
                self.seen[pirep_id] = state.status
            if state is not None and state.status != "pending":
                assert state.reviewed_by == "admin"
                assert state.reviewed_at is not None

    @invariant()
    def users_load_as_their_events_fold(self) -> None:
        for user_id, state in zip(USER_IDS, self._check(USER, self.users, USER_IDS),
                                  strict=True):
            if user_id not in self.keys:
                assert state is None
                continue
            assert state.password_hash == self.password[user_id]
            assert {k: v.revoked_at is not None for k, v in state.api_keys.items()} == (
                self.keys[user_id])


RepositoryMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=25,
                                               deadline=None,
                                               suppress_health_check=[HealthCheck.too_slow])
TestRepositoryMachine = RepositoryMachine.TestCase
