"""A Hypothesis state machine over the users aggregate's sessions (the gap next to
tests/unit/test_replay_properties.py, which covers its events, API keys and snapshots).

Logins may read the user at any earlier point (a login that checked the password against an
older state and writes its session now: the race of tests/concurrency/test_races.py), password
changes by the user (keeping the changing session) or by an admin, clocks that stand still or
jump past the session lifetime. After every step ``session_alive`` must agree with the
contract's rule: a session lives until it expires, unless a password change happened after its
login read the user, in which case only the session that made the latest change lives on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from albatross.application.auth import session_alive
from albatross.application.credentials import SessionRecord
from albatross.domain import users
from tests.reliability_figures import record

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TTL = timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    record: SessionRecord
    read_at: int  # how many password changes had happened in the state the login read


class Sessions(RuleBasedStateMachine):
    steps = 0

    @initialize()
    def start(self) -> None:
        self.now = T0
        self.user = users.User(user_id="u1", email="u1@example.com", display_name="U",
                               role="Pilot", tenant_id="t1", must_change_password=False,
                               password_hash="h0", created_at=T0)
        self.states = [self.user]  # the state after each password change
        self.sessions: list[Session] = []
        self.latest_kept: str | None = None
        self.serial = 0

    @rule(gap=st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(seconds=1),
                               timedelta(hours=5), TTL]))
    def time_passes(self, gap: timedelta) -> None:
        self.now += gap

    @rule(back=st.integers(0, 3))
    def login(self, back: int) -> None:
        """A login that read the user ``back`` password changes ago and writes its session
        now (back=0: an ordinary login)."""
        index = max(0, len(self.states) - 1 - back)
        read = self.states[index]
        self.serial += 1
        session = SessionRecord(session_id=f"s{self.serial}", user_id="u1",
                                user_stream="t1.user.u1", created_at=self.now,
                                expires_at=self.now + TTL,
                                revocations_seen=read.sessions_revocations)
        self.sessions.append(Session(session, index))

    def _change(self, keep: str | None) -> None:
        self.serial += 1
        cmd = users.SetPassword(password_hash=f"h{self.serial}", by_admin=keep is None,
                                keep_session_id=keep)
        for event in users.decide_set_password(self.user, cmd):
            evolved = users.evolve(self.user, event, self.now)
            assert evolved is not None
            self.user = evolved
        self.states.append(self.user)
        self.latest_kept = keep

    @precondition(lambda self: any(self.alive_by_model(s) for s in self.sessions))
    @rule(data=st.data())
    def change_own_password(self, data: st.DataObject) -> None:
        alive = [s for s in self.sessions if self.alive_by_model(s)]
        changer = data.draw(st.sampled_from(alive))
        self._change(changer.record.session_id)

    @rule()
    def admin_resets_password(self) -> None:
        self._change(None)

    def alive_by_model(self, session: Session) -> bool:
        if self.now >= session.record.expires_at:
            return False
        changes_since_read = len(self.states) - 1 - session.read_at
        return changes_since_read == 0 or session.record.session_id == self.latest_kept

    @invariant()
    def sessions_live_exactly_as_the_contract_says(self) -> None:
        Sessions.steps += 1
        for session in self.sessions:
            assert session_alive(session.record, self.user, self.now) == (
                self.alive_by_model(session)), (session, self.user)


def test_sessions_live_exactly_as_long_as_the_contract_says() -> None:
    Sessions.steps = 0
    run_state_machine_as_test(Sessions, settings=settings(
        max_examples=150, stateful_step_count=30, deadline=None))
    record("race", target="session_state_machine", cases=Sessions.steps, anomalies=0)
