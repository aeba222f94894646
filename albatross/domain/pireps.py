"""The Pirep aggregate: a pilot's report of one flight, reviewed once by the airline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from albatross.domain.errors import Conflict, FieldError, InvalidState, NotFound, raise_if_any
from albatross.domain.events import Event
from albatross.domain.rules import (
    AIRCRAFT_TYPE,
    AIRPORT_ICAO,
    FLIGHT_NUMBER,
    PIREP_SOURCES,
    REGISTRATION,
    TEXT_MAX,
    PirepSource,
    PirepStatus,
    pattern_errors,
    range_errors,
    text_errors,
)

Decision = Literal["accept", "reject"]

# Physical bounds: the longest scheduled flights block about 19 h; an A380 burns < 260 t.
MAX_BLOCK = timedelta(hours=24)
MAX_FUEL_KG = 300_000.0
MAX_DISTANCE_NM = 12_500.0
LANDING_RATE_FPM = (-5_000.0, 1_000.0)
# A report may be filed a little ahead of the clock of the server (client clock skew).
CLOCK_SKEW = timedelta(minutes=5)
# No report describes a flight before this; it also keeps every block time convertible to UTC
# (year 1 at +14:00 is not, in Python or PostgreSQL, and stopped the projection).
EARLIEST_BLOCK = datetime(1970, 1, 1, tzinfo=UTC)
_NO_TIME = timedelta(0)
_MINUTE = timedelta(minutes=1)


class FlightDetails(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the pilot reports: the contract's PirepInput."""

    flight_number: str
    departure: str
    arrival: str
    block_off_at: datetime
    block_on_at: datetime
    flight_time_minutes: int
    aircraft_type: str | None = None
    aircraft_registration: str | None = None
    fuel_used_kg: float | None = None
    distance_nm: float | None = None
    landing_rate_fpm: float | None = None
    route: str | None = None
    remarks: str | None = None
    source: PirepSource = "manual"


class SubmitPirep(msgspec.Struct, frozen=True, kw_only=True):
    pirep_id: str
    tenant_id: str
    pilot_id: str
    details: FlightDetails
    now: datetime


class ReviewPirep(msgspec.Struct, frozen=True, kw_only=True):
    decision: Decision
    reviewer_id: str
    comment: str | None = None


class PirepSubmitted(Event, frozen=True, kw_only=True):
    event_type = "PirepSubmitted"
    pirep_id: str
    tenant_id: str
    pilot_id: str
    details: FlightDetails


class PirepAccepted(Event, frozen=True, kw_only=True):
    event_type = "PirepAccepted"
    pirep_id: str
    reviewed_by: str
    comment: str | None


class PirepRejected(Event, frozen=True, kw_only=True):
    event_type = "PirepRejected"
    pirep_id: str
    reviewed_by: str
    comment: str | None


class Pirep(msgspec.Struct, frozen=True, kw_only=True):
    pirep_id: str
    tenant_id: str
    pilot_id: str
    details: FlightDetails
    status: PirepStatus
    submitted_at: datetime
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    review_comment: str | None = None


def details_errors(details: FlightDetails, now: datetime) -> list[FieldError]:
    d = details
    errors = [
        *pattern_errors("flight_number", d.flight_number, FLIGHT_NUMBER,
                        "must be 1 to 10 capital letters or digits"),
        *pattern_errors("departure", d.departure, AIRPORT_ICAO,
                        "must be a 4-letter ICAO airport code"),
        *pattern_errors("arrival", d.arrival, AIRPORT_ICAO, "must be a 4-letter ICAO airport code"),
        *pattern_errors("aircraft_type", d.aircraft_type, AIRCRAFT_TYPE,
                        "must be an ICAO type designator (2 to 4 capital letters or digits)",
                        required=False),
        *pattern_errors("aircraft_registration", d.aircraft_registration, REGISTRATION,
                        "must be 1 to 10 capital letters, digits or dashes", required=False),
        *range_errors("fuel_used_kg", d.fuel_used_kg, 0, MAX_FUEL_KG),
        *range_errors("distance_nm", d.distance_nm, 0, MAX_DISTANCE_NM),
        *range_errors("landing_rate_fpm", d.landing_rate_fpm, *LANDING_RATE_FPM),
        *text_errors("route", d.route, required=False, max_len=TEXT_MAX),
        *text_errors("remarks", d.remarks, required=False, max_len=TEXT_MAX),
    ]
    if d.source not in PIREP_SOURCES:
        errors.append(FieldError("source", f"must be one of {', '.join(PIREP_SOURCES)}"))
    for name, moment in (("block_off_at", d.block_off_at), ("block_on_at", d.block_on_at)):
        if moment.tzinfo is None:
            errors.append(FieldError(name, "must carry a time zone (RFC 3339)"))
        elif moment < EARLIEST_BLOCK:
            errors.append(FieldError(name, "must not be before 1970-01-01T00:00:00Z"))
    if errors and any(e.field in {"block_off_at", "block_on_at"} for e in errors):
        return errors
    block = d.block_on_at - d.block_off_at
    if block <= _NO_TIME:
        errors.append(FieldError("block_on_at", "must be after block_off_at"))
    elif block > MAX_BLOCK:
        errors.append(FieldError("block_on_at", "a flight blocks at most 24 hours"))
    elif not 1 <= d.flight_time_minutes <= block // _MINUTE:
        errors.append(FieldError("flight_time_minutes",
                                 "must be between 1 and the block time in minutes"))
    if d.block_on_at > now + CLOCK_SKEW:
        errors.append(FieldError("block_on_at", "must not be in the future"))
    return errors


def decide_submit(state: Pirep | None, cmd: SubmitPirep) -> list[Event]:
    if state is not None:
        raise Conflict(f"PIREP {cmd.pirep_id} already exists")
    raise_if_any(details_errors(cmd.details, cmd.now))
    return [PirepSubmitted(pirep_id=cmd.pirep_id, tenant_id=cmd.tenant_id,
                           pilot_id=cmd.pilot_id, details=_in_utc(cmd.details))]


def _in_utc(details: FlightDetails) -> FlightDetails:
    """Stored, and so shown everywhere, in UTC (the contract's form), whatever offset the
    pilot wrote: one instant, one spelling."""
    off, on = details.block_off_at, details.block_on_at
    if off.tzinfo is UTC and on.tzinfo is UTC:
        return details
    return msgspec.structs.replace(details, block_off_at=off.astimezone(UTC),
                                   block_on_at=on.astimezone(UTC))


def decide_review(state: Pirep | None, cmd: ReviewPirep) -> list[Event]:
    if state is None:
        raise NotFound("no such PIREP")
    if state.status != "pending":
        raise InvalidState(f"the PIREP is already {state.status}")
    errors = text_errors("comment", cmd.comment, required=False, max_len=TEXT_MAX)
    if cmd.decision not in ("accept", "reject"):
        errors.append(FieldError("decision", "must be accept or reject"))
    raise_if_any(errors)
    event_type = PirepAccepted if cmd.decision == "accept" else PirepRejected
    return [event_type(pirep_id=state.pirep_id, reviewed_by=cmd.reviewer_id,
                       comment=cmd.comment)]


def evolve(state: Pirep | None, event: Event, occurred_at: datetime) -> Pirep | None:
    if isinstance(event, PirepSubmitted):
        return Pirep(pirep_id=event.pirep_id, tenant_id=event.tenant_id,
                     pilot_id=event.pilot_id, details=event.details, status="pending",
                     submitted_at=occurred_at)
    if state is None:
        return None
    if isinstance(event, PirepAccepted | PirepRejected):
        status: PirepStatus = "accepted" if isinstance(event, PirepAccepted) else "rejected"
        return msgspec.structs.replace(state, status=status, reviewed_at=occurred_at,
                                       reviewed_by=event.reviewed_by,
                                       review_comment=event.comment)
    return state


PIREP_EVENTS: tuple[type[Event], ...] = (PirepSubmitted, PirepAccepted, PirepRejected)
