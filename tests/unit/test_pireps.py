"""The Pirep aggregate: what a flight report must satisfy, and its single review."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from albatross.domain.aggregates import PIREP
from albatross.domain.errors import Conflict, InvalidState, NotFound, ValidationFailed
from albatross.domain.pireps import (
    Decision,
    FlightDetails,
    Pirep,
    PirepAccepted,
    PirepRejected,
    PirepSubmitted,
    ReviewPirep,
    SubmitPirep,
    decide_review,
    decide_submit,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OFF = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
ON = OFF + timedelta(hours=2)  # 120 block minutes


def details(**overrides: Any) -> FlightDetails:
    fields: dict[str, Any] = {"flight_number": "BAW123", "departure": "EGLL", "arrival": "LFPG",
                              "block_off_at": OFF, "block_on_at": ON, "flight_time_minutes": 100,
                              "aircraft_type": "A320", "aircraft_registration": "G-EUPT",
                              "fuel_used_kg": 4200.0, "distance_nm": 210.0,
                              "landing_rate_fpm": -180.0, "route": "MID UL612 LGL",
                              "remarks": "smooth", "source": "acars"}
    fields.update(overrides)
    return FlightDetails(**fields)


def submit(now: datetime = NOW, **overrides: Any) -> SubmitPirep:
    return SubmitPirep(pirep_id="p1", tenant_id="t1", pilot_id="u1", details=details(**overrides),
                       now=now)


def accepted(cmd: SubmitPirep) -> None:
    assert decide_submit(None, cmd) == [PirepSubmitted(pirep_id="p1", tenant_id="t1",
                                                       pilot_id="u1", details=cmd.details)]


def refused(cmd: SubmitPirep) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        decide_submit(None, cmd)
    return sorted({e.field for e in caught.value.errors})


def pending() -> Pirep:
    state = PIREP.fold(None, [(e, NOW) for e in decide_submit(None, submit())])
    assert state is not None
    return state


# Submission -------------------------------------------------------------------------------

def test_submit_produces_a_pending_pirep() -> None:
    events = decide_submit(None, submit())
    assert [type(e) for e in events] == [PirepSubmitted]
    assert not events[0].secret
    state = PIREP.fold(None, [(e, NOW) for e in events])
    assert state == Pirep(pirep_id="p1", tenant_id="t1", pilot_id="u1", details=details(),
                          status="pending", submitted_at=NOW)


def test_block_times_with_an_offset_are_stored_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    events = decide_submit(None, submit(block_off_at=OFF.astimezone(plus_two),
                                        block_on_at=ON.astimezone(plus_two)))
    assert isinstance(events[0], PirepSubmitted)
    stored = events[0].details
    assert (stored.block_off_at, stored.block_on_at) == (OFF, ON)
    assert stored.block_off_at.tzinfo is UTC
    assert stored.block_on_at.tzinfo is UTC
    assert msgspec.json.encode(stored) == msgspec.json.encode(details())


def test_minimal_report_with_defaults_is_accepted() -> None:
    minimal = FlightDetails(flight_number="1", departure="EGLL", arrival="EGLL",
                            block_off_at=OFF, block_on_at=ON, flight_time_minutes=1)
    assert minimal.source == "manual"
    accepted(SubmitPirep(pirep_id="p1", tenant_id="t1", pilot_id="u1", details=minimal, now=NOW))


def test_submit_twice_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        decide_submit(pending(), submit())


@pytest.mark.parametrize("field", ["departure", "arrival"])
@pytest.mark.parametrize("code", ["EGL", "EGLLX", "egll", "EG1L", "EG L", "", "ÉGLL"])
def test_airport_must_be_four_icao_letters(field: str, code: str) -> None:
    assert refused(submit(**{field: code})) == [field]


@pytest.mark.parametrize("code", ["EGLL", "KJFK", "YSSY"])
def test_airport_four_letters_accepted(code: str) -> None:
    accepted(submit(departure=code, arrival=code))


@pytest.mark.parametrize("aircraft", ["A320", "B77W", "C1", "DH8", None])
def test_aircraft_type_accepted(aircraft: str | None) -> None:
    accepted(submit(aircraft_type=aircraft))


@pytest.mark.parametrize("aircraft", ["", "A", "A3201", "a320", "A-20", "A 2"])
def test_aircraft_type_must_be_2_to_4_alphanumerics(aircraft: str) -> None:
    assert refused(submit(aircraft_type=aircraft)) == ["aircraft_type"]


@pytest.mark.parametrize("number", ["1", "BAW123", "ABCDEFGHIJ", "1234567890"])
def test_flight_number_accepted(number: str) -> None:
    accepted(submit(flight_number=number))


@pytest.mark.parametrize("number", ["", "ABCDEFGHIJK", "BA 123", "BA-123", "baw123", "BA#1"])
def test_flight_number_must_be_1_to_10_alphanumerics(number: str) -> None:
    assert refused(submit(flight_number=number)) == ["flight_number"]


@pytest.mark.parametrize("registration", ["", "-GEUP", "g-eupt", "G EUPT", "ABCDEFGHIJK"])
def test_bad_registration_refused(registration: str) -> None:
    assert refused(submit(aircraft_registration=registration)) == ["aircraft_registration"]


# Block times ------------------------------------------------------------------------------

@pytest.mark.parametrize("block_on", [OFF, OFF - timedelta(minutes=1)])
def test_block_on_must_be_after_block_off(block_on: datetime) -> None:
    assert refused(submit(block_on_at=block_on, flight_time_minutes=1)) == ["block_on_at"]


def test_block_longer_than_24_hours_refused() -> None:
    off = NOW - timedelta(hours=30)
    accepted(submit(block_off_at=off, block_on_at=off + timedelta(hours=24)))
    assert refused(submit(block_off_at=off, block_on_at=off + timedelta(hours=24, minutes=1))) == [
        "block_on_at"]


@pytest.mark.parametrize("minutes", [1, 60, 120])
def test_flight_time_within_block_accepted(minutes: int) -> None:
    accepted(submit(flight_time_minutes=minutes))


@pytest.mark.parametrize("minutes", [0, -1, 121, 10_000])
def test_flight_time_outside_1_to_block_minutes_refused(minutes: int) -> None:
    assert refused(submit(flight_time_minutes=minutes)) == ["flight_time_minutes"]


def test_flight_time_counts_whole_block_minutes() -> None:
    on = OFF + timedelta(minutes=90, seconds=59)
    accepted(submit(block_on_at=on, flight_time_minutes=90))
    assert refused(submit(block_on_at=on, flight_time_minutes=91)) == ["flight_time_minutes"]
    # Under a minute of block time leaves no valid flight time at all.
    assert refused(submit(block_on_at=OFF + timedelta(seconds=59), flight_time_minutes=1)) == [
        "flight_time_minutes"]


def test_block_times_in_other_offsets_compare_as_instants() -> None:
    plus2 = timezone(timedelta(hours=2))
    off = datetime(2026, 11, 26, 10, 0, tzinfo=plus2)  # 08:00Z
    on = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)  # 90 minutes later
    accepted(submit(block_off_at=off, block_on_at=on, flight_time_minutes=90))
    assert refused(submit(block_off_at=off, block_on_at=on, flight_time_minutes=91)) == [
        "flight_time_minutes"]


@pytest.mark.parametrize("field", ["block_off_at", "block_on_at"])
def test_naive_datetimes_refused(field: str) -> None:
    value = (OFF if field == "block_off_at" else ON).replace(tzinfo=None)
    assert refused(submit(**{field: value})) == [field]


def test_both_naive_datetimes_refused() -> None:
    assert refused(submit(block_off_at=OFF.replace(tzinfo=None),
                          block_on_at=ON.replace(tzinfo=None))) == ["block_off_at", "block_on_at"]


def test_block_times_from_1970_on_are_accepted_earlier_ones_refused() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    accepted(submit(block_off_at=epoch, block_on_at=epoch + timedelta(hours=1),
                    flight_time_minutes=60))
    early = epoch - timedelta(seconds=1)
    assert refused(submit(block_off_at=early, block_on_at=early + timedelta(hours=1),
                          flight_time_minutes=60)) == ["block_off_at"]
    # 1970-01-01T08:00 at +09:00 is 1969-12-31T23:00 UTC: the instant counts, not the digits.
    tokyo = timezone(timedelta(hours=9))
    off = datetime(1970, 1, 1, 8, 0, tzinfo=tokyo)
    assert refused(submit(block_off_at=off, block_on_at=off + timedelta(hours=2),
                          flight_time_minutes=60)) == ["block_off_at"]


def test_a_block_time_that_has_no_utc_instant_is_refused_not_raised() -> None:
    # Year 1 at +14:00 lies before datetime.min in UTC: converting it overflows (the
    # projection's database driver raised on it and the projector retried forever).
    far = timezone(timedelta(hours=14))
    off = datetime(1, 1, 1, 0, 0, tzinfo=far)
    assert refused(submit(block_off_at=off, block_on_at=off + timedelta(hours=1),
                          flight_time_minutes=60)) == ["block_off_at", "block_on_at"]


def test_block_on_up_to_five_minutes_ahead_is_tolerated() -> None:
    off = NOW - timedelta(hours=2)
    accepted(submit(block_off_at=off, block_on_at=NOW))
    accepted(submit(block_off_at=off, block_on_at=NOW + timedelta(minutes=5)))


@pytest.mark.parametrize("ahead", [timedelta(minutes=5, seconds=1), timedelta(hours=1),
                                   timedelta(days=30)])
def test_block_on_in_the_future_refused(ahead: timedelta) -> None:
    on = NOW + ahead
    cmd = submit(block_off_at=on - timedelta(hours=2), block_on_at=on)
    assert refused(cmd) == ["block_on_at"]


# Numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "low", "high"), [
    ("fuel_used_kg", 0.0, 300_000.0),
    ("distance_nm", 0.0, 12_500.0),
    ("landing_rate_fpm", -5_000.0, 1_000.0),
])
def test_numbers_within_physical_ranges(field: str, low: float, high: float) -> None:
    accepted(submit(**{field: low}))
    accepted(submit(**{field: high}))
    accepted(submit(**{field: None}))
    for bad in (low - 1, high + 1, math.nan, math.inf, -math.inf):
        assert refused(submit(**{field: bad})) == [field], bad


@pytest.mark.parametrize("field", ["route", "remarks"])
def test_free_text_limits(field: str) -> None:
    accepted(submit(**{field: "x" * 2000}))
    accepted(submit(**{field: None}))
    assert refused(submit(**{field: "x" * 2001})) == [field]
    assert refused(submit(**{field: "a\x00b"})) == [field]


def test_every_bad_field_is_reported_at_once() -> None:
    cmd = submit(flight_number="", departure="xx", arrival="yy", aircraft_type="?",
                 fuel_used_kg=-1.0, flight_time_minutes=0)
    assert refused(cmd) == ["aircraft_type", "arrival", "departure", "flight_number",
                            "flight_time_minutes", "fuel_used_kg"]


def test_refusals_name_contract_fields() -> None:
    contract_fields = {f.name for f in msgspec.structs.fields(FlightDetails)}
    cmd = submit(flight_number="", departure="", arrival="", aircraft_type="",
                 aircraft_registration="", fuel_used_kg=-1.0, distance_nm=-1.0,
                 landing_rate_fpm=9e9, route="\x00", remarks="\x00", flight_time_minutes=0)
    assert set(refused(cmd)) <= contract_fields


# Review -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("decision", "event_type", "status"), [
    ("accept", PirepAccepted, "accepted"), ("reject", PirepRejected, "rejected")])
def test_review_decides_once(decision: Decision, event_type: type, status: str) -> None:
    state = pending()
    events = decide_review(state, ReviewPirep(decision=decision, reviewer_id="admin",
                                              comment="ok"))
    assert events == [event_type(pirep_id="p1", reviewed_by="admin", comment="ok")]
    at = NOW + timedelta(hours=1)
    reviewed = PIREP.fold(state, [(e, at) for e in events])
    assert reviewed == msgspec.structs.replace(state, status=status, reviewed_at=at,
                                               reviewed_by="admin", review_comment="ok")
    again: Decision
    for again in ("accept", "reject"):
        with pytest.raises(InvalidState) as caught:
            decide_review(reviewed, ReviewPirep(decision=again, reviewer_id="other"))
        assert status in caught.value.detail
        assert caught.value.code == "invalid_state"


def test_review_of_a_missing_pirep_is_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        decide_review(None, ReviewPirep(decision="accept", reviewer_id="admin"))
    assert caught.value.code == "not_found"


def test_review_comment_is_optional_and_bounded() -> None:
    (event,) = decide_review(pending(), ReviewPirep(decision="reject", reviewer_id="a"))
    assert isinstance(event, PirepRejected)
    assert event.comment is None
    with pytest.raises(ValidationFailed) as caught:
        decide_review(pending(), ReviewPirep(decision="reject", reviewer_id="a",
                                             comment="x" * 2001))
    assert [e.field for e in caught.value.errors] == ["comment"]


def test_review_leaves_the_flight_details_untouched() -> None:
    state = pending()
    reviewed = PIREP.fold(state, [(e, NOW) for e in decide_review(
        state, ReviewPirep(decision="accept", reviewer_id="a"))])
    assert reviewed is not None
    assert reviewed.details == state.details
    assert reviewed.submitted_at == state.submitted_at


@pytest.mark.parametrize("case", ["source", "decision"])
def test_values_outside_the_enumerations_are_refused(case: str) -> None:
    state = pending()
    if case == "source":
        cmd = submit(source="telepathy")
        with pytest.raises(ValidationFailed):
            decide_submit(None, cmd)
    else:
        review = ReviewPirep(decision="maybe", reviewer_id="a")  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed):
            decide_review(state, review)
