"""The pure projection: which rows an event changes and which change messages it causes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from albatross.application.projections import (
    Projected,
    ProjectionState,
    change_subject,
    project,
    references,
)
from albatross.application.views import PirepView, TenantView, UserView
from albatross.domain.events import Event
from albatross.domain.pireps import FlightDetails, PirepAccepted, PirepRejected, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyCreated,
    ApiKeyRevoked,
    PasswordChanged,
    PasswordHashSet,
    UserRegistered,
)
from albatross.ports import PLATFORM_SCOPE, RecordedEvent, StreamId

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class Feed:
    def __init__(self) -> None:
        self.state = ProjectionState()
        self.sequence = 0

    def __call__(self, scope: str, aggregate: str, aggregate_id: str, event: Event,
                 changes: bool = True) -> Projected:
        self.sequence += 1
        record = RecordedEvent(self.sequence, StreamId(aggregate, aggregate_id, scope), event,
                               T0 + timedelta(minutes=self.sequence), "actor")
        return project(record, self.state, changes=changes)


def details(minutes: int = 75) -> FlightDetails:
    return FlightDetails(flight_number="AFR1", departure="LFPG", arrival="EGLL",
                         block_off_at=T0 - timedelta(hours=2),
                         block_on_at=T0 - timedelta(hours=2) + timedelta(minutes=minutes + 5),
                         flight_time_minutes=minutes)


def world() -> Feed:
    feed = Feed()
    feed(PLATFORM_SCOPE, "tenant", "t1", TenantCreated(tenant_id="t1", name="A", icao="AAA",
                                                       iata="AA"))
    feed("t1", "user", "u1", UserRegistered(user_id="u1", email="u1@x.io", display_name="U",
                                            role="Pilot", tenant_id="t1",
                                            must_change_password=False))
    return feed


def test_tenant_created_makes_a_tenant_and_one_change() -> None:
    feed = Feed()
    out = feed(PLATFORM_SCOPE, "tenant", "t1",
               TenantCreated(tenant_id="t1", name="A", icao="AAA", iata=None))
    tenant = feed.state.tenants["t1"]
    assert tenant == TenantView(id="t1", name="A", icao="AAA", iata=None,
                                created_at=T0 + timedelta(minutes=1), pilot_count=0)
    assert [c.subject for c in out.changes] == ["albatross.changes.t1.tenant.t1"]
    message = out.changes[0].message
    assert (message.sequence, message.entity, message.tenant_id, message.event) == (
        0, "tenant", "t1", "TenantCreated")
    assert message.data == tenant


def test_a_pilot_registration_also_changes_the_tenants_pilot_count() -> None:
    feed = world()
    assert feed.state.tenants["t1"].pilot_count == 1
    out = feed("t1", "user", "u2", UserRegistered(
        user_id="u2", email="u2@x.io", display_name="A", role="TenantAdmin", tenant_id="t1",
        must_change_password=True))
    assert [c.message.entity for c in out.changes] == ["user"]
    assert feed.state.tenants["t1"].pilot_count == 1
    out = feed("t1", "user", "u3", UserRegistered(
        user_id="u3", email="u3@x.io", display_name="P", role="Pilot", tenant_id="t1",
        must_change_password=False))
    assert [c.subject for c in out.changes] == ["albatross.changes.t1.user.u3",
                                                "albatross.changes.t1.tenant.t1"]
    assert feed.state.tenants["t1"].pilot_count == 2


def test_a_platform_admin_lives_on_the_platform_subject_and_keeps_its_email() -> None:
    feed = Feed()
    out = feed(PLATFORM_SCOPE, "user", "pa", UserRegistered(
        user_id="pa", email="pa@x.io", display_name="PA", role="PlatformAdmin", tenant_id=None,
        must_change_password=True))
    assert out.changes[0].subject == "albatross.changes.platform.user.pa"
    assert out.changes[0].message.tenant_id is None
    data = out.changes[0].message.data
    assert isinstance(data, UserView)
    assert data.email == "pa@x.io"


def test_password_changed_sets_the_flag_and_credentials_are_never_projected() -> None:
    feed = world()
    out = feed("t1", "user", "u1", PasswordChanged(user_id="u1", must_change_password=True))
    assert feed.state.users["u1"].must_change_password is True
    assert [c.message.event for c in out.changes] == ["PasswordChanged"]
    before = msgspec.structs.asdict(feed.state.users["u1"])
    secret = feed("t1", "user", "u1", PasswordHashSet(user_id="u1", password_hash="h"))
    assert secret.skipped is not None
    assert secret.changes == []
    assert msgspec.structs.asdict(feed.state.users["u1"]) == before
    assert "h" not in msgspec.json.encode(feed.state.users["u1"]).decode().split('"')


def test_api_key_changes_carry_the_owners_tenant() -> None:
    feed = world()
    out = feed("t1", "user", "u1", ApiKeyCreated(user_id="u1", key_id="k1", name="n",
                                                 prefix="alb_"))
    assert [c.subject for c in out.changes] == ["albatross.changes.t1.apikey.k1"]
    assert out.changes[0].message.tenant_id == "t1"
    revoked = feed("t1", "user", "u1", ApiKeyRevoked(user_id="u1", key_id="k1"))
    assert feed.state.api_keys["k1"].revoked_at == T0 + timedelta(minutes=4)
    assert revoked.changes[0].message.event == "ApiKeyRevoked"
    again = feed("t1", "user", "u1", ApiKeyRevoked(user_id="u1", key_id="k1"))
    assert again.skipped is not None


def test_an_accepted_pirep_adds_to_the_pilots_flight_figures_a_rejected_one_does_not() -> None:
    feed = world()
    submitted = feed("t1", "pirep", "p1", PirepSubmitted(pirep_id="p1", tenant_id="t1",
                                                         pilot_id="u1", details=details(75)))
    assert feed.state.pireps["p1"].version == 3
    assert len(submitted.history) == 1
    accepted = feed("t1", "pirep", "p1", PirepAccepted(pirep_id="p1", reviewed_by="boss",
                                                       comment="nice"))
    pirep = feed.state.pireps["p1"]
    assert isinstance(pirep, PirepView)
    assert (pirep.status, pirep.version, pirep.reviewed_by, pirep.review_comment) == (
        "accepted", 4, "boss", "nice")
    assert [c.message.entity for c in accepted.changes] == ["pirep", "user"]
    user = feed.state.users["u1"]
    assert (user.flight_count, user.flight_minutes) == (1, 75)
    feed("t1", "pirep", "p2", PirepSubmitted(pirep_id="p2", tenant_id="t1", pilot_id="u1",
                                             details=details(30)))
    rejected = feed("t1", "pirep", "p2", PirepRejected(pirep_id="p2", reviewed_by="boss",
                                                       comment=None))
    assert [c.message.entity for c in rejected.changes] == ["pirep"]
    assert (feed.state.users["u1"].flight_count, feed.state.users["u1"].flight_minutes) == (1, 75)
    assert [h.item.type for h in rejected.history] == ["PirepRejected"]
    assert rejected.history[0].item.data == {"pirep_id": "p2", "reviewed_by": "boss",
                                             "comment": None}


def test_inapplicable_events_are_skipped_without_touching_state() -> None:
    feed = world()
    before = (dict(feed.state.users), dict(feed.state.tenants))
    for out in (
        feed("t1", "pirep", "ghost", PirepAccepted(pirep_id="ghost", reviewed_by="b",
                                                   comment=None)),
        feed("t1", "user", "nobody", PasswordChanged(user_id="nobody",
                                                     must_change_password=False)),
        feed("t1", "user", "u1", UserRegistered(user_id="u1", email="dup@x.io",
                                                display_name="D", role="Pilot", tenant_id="t1",
                                                must_change_password=False)),
        feed(PLATFORM_SCOPE, "tenant", "t1", TenantCreated(tenant_id="t1", name="B",
                                                           icao="BBB", iata=None)),
    ):
        assert out.skipped is not None
        assert out.changes == []
    assert (dict(feed.state.users), dict(feed.state.tenants)) == before
    assert feed.state.tenants["t1"].pilot_count == 1


@pytest.mark.parametrize("moment", [
    datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=14))),  # before datetime.min
    datetime(9999, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-14))),  # after .max
])
def test_a_pirep_whose_block_time_has_no_utc_instant_is_skipped(moment: datetime) -> None:
    # No read model can store it (asyncpg converts to UTC and raised for the whole batch).
    feed = world()
    bad = msgspec.structs.replace(details(), block_off_at=moment, block_on_at=moment)
    out = feed("t1", "pirep", "r9", PirepSubmitted(pirep_id="r9", tenant_id="t1",
                                                   pilot_id="u1", details=bad))
    assert out.skipped is not None
    assert "no UTC instant" in out.skipped
    assert "r9" not in feed.state.pireps
    fine = feed("t1", "pirep", "r10", PirepSubmitted(pirep_id="r10", tenant_id="t1",
                                                     pilot_id="u1", details=details()))
    assert fine.skipped is None


@pytest.mark.parametrize("field", ["remarks", "route", "flight_number"])
def test_a_pirep_with_a_nul_in_any_text_is_skipped(field: str) -> None:
    # PostgreSQL's text cannot hold NUL; the in-memory read models skip it alike.
    feed = world()
    bad = msgspec.structs.replace(details(), **{field: "AB\x00C"})
    out = feed("t1", "pirep", "r9", PirepSubmitted(pirep_id="r9", tenant_id="t1",
                                                   pilot_id="u1", details=bad))
    assert out.skipped is not None
    assert "NUL" in out.skipped
    assert "r9" not in feed.state.pireps


def test_a_tenant_with_a_nul_in_its_name_is_skipped_and_nothing_else_is() -> None:
    feed = Feed()
    out = feed(PLATFORM_SCOPE, "tenant", "t1",
               TenantCreated(tenant_id="t1", name="Bad\x00Air", icao="AAA", iata=None))
    assert out.skipped is not None
    assert feed.state.tenants == {}
    # A backslash followed by "u0000" is ordinary text (its JSON escapes the backslash).
    for name in ("Slash\\u0000Air", "\\\\u0000", "Plain Air"):
        fine = feed(PLATFORM_SCOPE, "tenant", f"t{len(name)}",
                    TenantCreated(tenant_id=f"t{len(name)}", name=name, icao="AAA", iata=None))
        assert fine.skipped is None, name
        assert feed.state.tenants[f"t{len(name)}"].name == name
    odd = feed(PLATFORM_SCOPE, "tenant", "t99",
               TenantCreated(tenant_id="t99", name="\\\x00", icao="AAA", iata=None))
    assert odd.skipped is not None  # an escaped backslash, then a NUL


@pytest.mark.parametrize("minutes", [2**31, -(2**31) - 1])
def test_a_pirep_whose_flight_time_does_not_fit_the_read_model_is_skipped(minutes: int) -> None:
    feed = world()
    bad = msgspec.structs.replace(details(), flight_time_minutes=minutes)
    out = feed("t1", "pirep", "r9", PirepSubmitted(pirep_id="r9", tenant_id="t1",
                                                   pilot_id="u1", details=bad))
    assert out.skipped is not None
    assert "flight_time_minutes" in out.skipped
    edge = msgspec.structs.replace(details(), flight_time_minutes=2**31 - 1)
    assert feed("t1", "pirep", "r10", PirepSubmitted(pirep_id="r10", tenant_id="t1",
                                                     pilot_id="u1", details=edge)).skipped is None


def test_a_review_twice_is_skipped() -> None:
    feed = world()
    feed("t1", "pirep", "p1", PirepSubmitted(pirep_id="p1", tenant_id="t1", pilot_id="u1",
                                             details=details()))
    feed("t1", "pirep", "p1", PirepAccepted(pirep_id="p1", reviewed_by="b", comment=None))
    second = feed("t1", "pirep", "p1", PirepRejected(pirep_id="p1", reviewed_by="b",
                                                     comment=None))
    assert second.skipped is not None
    assert feed.state.pireps["p1"].status == "accepted"
    assert feed.state.users["u1"].flight_count == 1


def test_without_changes_the_state_still_moves() -> None:
    feed = world()
    out = feed("t1", "pirep", "p1", PirepSubmitted(pirep_id="p1", tenant_id="t1",
                                                   pilot_id="u1", details=details()),
               changes=False)
    assert out.changes == []
    assert len(out.history) == 1
    assert "p1" in feed.state.pireps


def test_references_name_the_rows_an_event_reads() -> None:
    review = references(PirepAccepted(pirep_id="p", reviewed_by="b", comment=None))
    assert (review.pireps, review.users) == ({"p"}, set())
    registered = references(UserRegistered(user_id="u", email="e@x.io", display_name="d",
                                           role="Pilot", tenant_id="t",
                                           must_change_password=False))
    assert (registered.users, registered.tenants) == ({"u"}, {"t"})
    key = references(ApiKeyRevoked(user_id="u", key_id="k"))
    assert (key.users, key.api_keys) == ({"u"}, {"k"})


def test_change_subjects_refuse_ids_that_are_not_subject_tokens() -> None:
    assert change_subject(None, "tenant", "t1") == "albatross.changes.platform.tenant.t1"
    assert change_subject("t1", "pirep", "a.b") is None
    assert change_subject("t*", "pirep", "p") is None
