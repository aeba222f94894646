"""What each public event does to the read models, as pure decisions over an in-memory state.

:func:`project` takes one recorded event and a :class:`ProjectionState` (the rows it touches,
looked up by id), updates the state and returns what else the event causes: PIREP history
entries and change messages. It performs no I/O, so the in-memory read models use it directly
and the PostgreSQL applier preloads the rows an event batch references (see
:func:`references`), runs the same function, and writes back the rows it marked dirty.

An event that cannot apply (an unknown PIREP, a user registered twice) is *skipped*: it
changes nothing and :attr:`Projected.skipped` says why, so the caller can record it as a
poison event instead of crashing or blocking the stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from albatross.application.views import (
    ApiKeyView,
    ChangeMessage,
    Entity,
    PirepView,
    Resource,
    TenantView,
    UserView,
)
from albatross.domain.aggregates import ALL_KINDS
from albatross.domain.events import Event
from albatross.domain.pireps import PirepAccepted, PirepRejected, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyCreated,
    ApiKeyRevoked,
    ApiKeyUsed,
    PasswordChanged,
    UserRegistered,
)
from albatross.ports import PLATFORM_SCOPE, HistoryItem, RecordedEvent, is_valid_token

CHANGES_ROOT = "albatross.changes"

# Change messages carry ``sequence = 0`` when written: the change sequence the contract
# promises is the changes stream's own message sequence, known only once stored there, and the
# notifier sets it from the stream message's metadata.
UNSEQUENCED = 0

# What a read model can store, whatever the domain allowed when the event was written: the
# domain refuses such values today, but an event written around it (or under older rules)
# would otherwise fail every batch it is in, live and in every rebuild. PostgreSQL's text
# cannot hold NUL (U+0000); ``pireps.flight_time_minutes`` is a 32-bit integer.
_NUL_IN_JSON = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # a NUL escape, not an escaped backslash
_INT32 = range(-(2**31), 2**31)


@dataclass(frozen=True)
class Change:
    """One change message and where it is published."""

    subject: str
    message: ChangeMessage[Any]


@dataclass(frozen=True)
class HistoryEntry:
    pirep_id: str
    item: HistoryItem


@dataclass(frozen=True)
class Projected:
    changes: list[Change] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Refs:
    """Ids of the rows an event needs to see before it can be projected."""

    tenants: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    api_keys: set[str] = field(default_factory=set)
    pireps: set[str] = field(default_factory=set)

    def update(self, other: Refs) -> None:
        self.tenants |= other.tenants
        self.users |= other.users
        self.api_keys |= other.api_keys
        self.pireps |= other.pireps


class ProjectionState:
    """Rows by id plus the set of ids changed since :meth:`clear_dirty`.

    The in-memory read models keep one for ever; the PostgreSQL applier fills one per batch
    with the referenced rows and writes back the dirty ones.
    """

    def __init__(self) -> None:
        self.tenants: dict[str, TenantView] = {}
        self.users: dict[str, UserView] = {}
        self.api_keys: dict[str, ApiKeyView] = {}
        self.pireps: dict[str, PirepView] = {}
        self.dirty: dict[Entity, set[str]] = {"tenant": set(), "user": set(),
                                              "apikey": set(), "pirep": set()}

    def put(self, resource: Resource) -> None:
        if isinstance(resource, TenantView):
            self.tenants[resource.id] = resource
            self.dirty["tenant"].add(resource.id)
        elif isinstance(resource, UserView):
            self.users[resource.id] = resource
            self.dirty["user"].add(resource.id)
        elif isinstance(resource, ApiKeyView):
            self.api_keys[resource.id] = resource
            self.dirty["apikey"].add(resource.id)
        else:
            self.pireps[resource.id] = resource
            self.dirty["pirep"].add(resource.id)

    def clear_dirty(self) -> None:
        for ids in self.dirty.values():
            ids.clear()


def references(event: Event) -> Refs:
    """The rows ``event`` reads directly (a review also needs the PIREP's pilot: see
    :func:`pilot_of`)."""
    refs = Refs()
    if isinstance(event, TenantCreated):
        refs.tenants.add(event.tenant_id)
    elif isinstance(event, UserRegistered):
        refs.users.add(event.user_id)
        if event.tenant_id is not None:
            refs.tenants.add(event.tenant_id)
    elif isinstance(event, PasswordChanged):
        refs.users.add(event.user_id)
    elif isinstance(event, ApiKeyCreated | ApiKeyRevoked | ApiKeyUsed):
        refs.users.add(event.user_id)
        refs.api_keys.add(event.key_id)
    elif isinstance(event, PirepSubmitted):
        refs.pireps.add(event.pirep_id)
        refs.users.add(event.pilot_id)
    elif isinstance(event, PirepAccepted | PirepRejected):
        refs.pireps.add(event.pirep_id)
    return refs


def change_subject(tenant_id: str | None, entity: Entity, resource_id: str) -> str | None:
    """``albatross.changes.<tenant_id|platform>.<entity>.<id>``; None if an id is not a token."""
    scope = tenant_id if tenant_id is not None else PLATFORM_SCOPE
    if not (is_valid_token(scope) and is_valid_token(resource_id)):
        return None
    return f"{CHANGES_ROOT}.{scope}.{entity}.{resource_id}"


def _change(entity: Entity, resource: Resource, tenant_id: str | None,
            event: Event) -> Change | None:
    subject = change_subject(tenant_id, entity, resource.id)
    if subject is None:
        return None
    message: ChangeMessage[Any] = ChangeMessage(
        sequence=UNSEQUENCED, entity=entity, id=resource.id, tenant_id=tenant_id,
        event=event.event_type, data=resource)
    return Change(subject, message)


def _history(record: RecordedEvent, pirep_id: str) -> HistoryEntry:
    # The event's own fields, as the event store's envelope holds them under ``data``.
    data: dict[str, Any] = msgspec.to_builtins(record.event)
    return HistoryEntry(pirep_id, HistoryItem(sequence=record.sequence,
                                              type=record.event.event_type,
                                              occurred_at=record.occurred_at,
                                              actor_id=record.actor_id, data=data))


def _skip(reason: str) -> Projected:
    return Projected(skipped=reason)


def _done(record: RecordedEvent, wanted: bool, *changes: tuple[Entity, Resource, str | None],
          history: list[HistoryEntry] | None = None) -> Projected:
    out = []
    for entity, resource, tenant_id in changes if wanted else ():
        change = _change(entity, resource, tenant_id, record.event)
        if change is not None:
            out.append(change)
    return Projected(changes=out, history=history or [])


def project(record: RecordedEvent, state: ProjectionState, *,
            changes: bool = True) -> Projected:
    """Apply one public event to ``state``; what it caused, or why it was skipped.

    ``changes=False`` skips building change messages (a rebuild publishes none).
    Credential events never reach the projector (they are not under ``albatross.events.>``);
    if one does, it is skipped without touching anything.
    """
    event = record.event
    if event.secret:
        return _skip(f"credential event {event.event_type} is not projected")
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return _skip(f"no projection for event type {event.event_type}")
    misfiled = _misfiled(record, state)
    if misfiled is not None:
        return _skip(misfiled)
    if _holds_nul(event):
        return _skip(f"{event.event_type} holds a NUL character, which no read model stores")
    return handler(record, state, changes)


def _holds_nul(event: Event) -> bool:
    # One C-speed encode and substring search (~1.5 us) instead of walking every field.
    encoded = msgspec.json.encode(event)
    return b"u0000" in encoded and _NUL_IN_JSON.search(encoded) is not None


_AGGREGATE_OF = {event_type: kind.name for kind in ALL_KINDS for event_type in kind.events}


def _misfiled(record: RecordedEvent, state: ProjectionState) -> str | None:
    """Why ``record``'s subject disagrees with its payload (None: it agrees).

    Only the gateway writes events, but a stream that anyone with publish rights can reach
    must not let an event filed under one tenant (or aggregate) change another's rows.
    """
    event, stream = record.event, record.stream
    aggregate = _AGGREGATE_OF.get(type(event))
    if aggregate != stream.aggregate:
        return f"{event.event_type} filed under a {stream.aggregate} stream"
    if getattr(event, f"{aggregate}_id", None) != stream.aggregate_id:
        return f"{event.event_type} filed under another {aggregate} ({stream.aggregate_id})"
    owner = _owner_scope(event, state)
    if isinstance(event, TenantCreated):
        # A tenant's stream is scoped by its own id; "platform" is accepted as well.
        allowed = {PLATFORM_SCOPE, event.tenant_id}
    else:
        allowed = {owner} if owner is not None else {stream.scope}
    if stream.scope not in allowed:
        return f"{event.event_type} filed under scope {stream.scope}, belongs to {owner}"
    return None


def _owner_scope(event: Event, state: ProjectionState) -> str | None:
    """The scope the event's resource belongs to, from the event or the rows it changes
    (None: not known here; the handler then skips an unknown resource anyway)."""
    if isinstance(event, TenantCreated):
        return event.tenant_id
    tenant_id: str | None
    if isinstance(event, UserRegistered | PirepSubmitted):
        tenant_id = event.tenant_id
    elif isinstance(event, PirepAccepted | PirepRejected):
        pirep = state.pireps.get(event.pirep_id)
        if pirep is None:
            return None
        tenant_id = pirep.tenant_id
    else:
        user = state.users.get(getattr(event, "user_id", ""))
        if user is None:
            return None
        tenant_id = user.tenant_id
    return tenant_id if tenant_id is not None else PLATFORM_SCOPE


def _tenant_created(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, TenantCreated)
    if event.tenant_id in state.tenants:
        return _skip(f"tenant {event.tenant_id} exists already")
    tenant = TenantView(id=event.tenant_id, name=event.name, icao=event.icao, iata=event.iata,
                        created_at=record.occurred_at, pilot_count=0)
    state.put(tenant)
    return _done(record, wanted, ("tenant", tenant, tenant.id))


def _user_registered(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, UserRegistered)
    if event.user_id in state.users:
        return _skip(f"user {event.user_id} exists already")
    user = UserView(id=event.user_id, email=event.email, display_name=event.display_name,
                    role=event.role, tenant_id=event.tenant_id, created_at=record.occurred_at,
                    must_change_password=event.must_change_password, flight_count=0,
                    flight_minutes=0)
    state.put(user)
    changes: list[tuple[Entity, Resource, str | None]] = [("user", user, user.tenant_id)]
    tenant = state.tenants.get(event.tenant_id) if event.tenant_id is not None else None
    if event.role == "Pilot" and tenant is not None:
        tenant = msgspec.structs.replace(tenant, pilot_count=tenant.pilot_count + 1)
        state.put(tenant)
        changes.append(("tenant", tenant, tenant.id))
    return _done(record, wanted, *changes)


def _password_changed(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, PasswordChanged)
    user = state.users.get(event.user_id)
    if user is None:
        return _skip(f"unknown user {event.user_id}")
    user = msgspec.structs.replace(user, must_change_password=event.must_change_password)
    state.put(user)
    return _done(record, wanted, ("user", user, user.tenant_id))


def _owner_tenant(record: RecordedEvent, state: ProjectionState, user_id: str) -> str | None:
    user = state.users.get(user_id)
    if user is not None:
        return user.tenant_id
    scope = record.stream.scope
    return None if scope == PLATFORM_SCOPE else scope


def _api_key_created(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, ApiKeyCreated)
    if event.key_id in state.api_keys:
        return _skip(f"API key {event.key_id} exists already")
    key = ApiKeyView(id=event.key_id, user_id=event.user_id, name=event.name,
                     prefix=event.prefix, created_at=record.occurred_at, last_used_at=None,
                     revoked_at=None)
    state.put(key)
    return _done(record, wanted, ("apikey", key, _owner_tenant(record, state, event.user_id)))


def _api_key_revoked(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, ApiKeyRevoked)
    key = state.api_keys.get(event.key_id)
    if key is None or key.user_id != event.user_id:
        return _skip(f"unknown API key {event.key_id}")
    if key.revoked_at is not None:
        return _skip(f"API key {event.key_id} is revoked already")
    key = msgspec.structs.replace(key, revoked_at=record.occurred_at)
    state.put(key)
    return _done(record, wanted, ("apikey", key, _owner_tenant(record, state, event.user_id)))


def _api_key_used(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, ApiKeyUsed)
    key = state.api_keys.get(event.key_id)
    if key is None or key.user_id != event.user_id:
        return _skip(f"unknown API key {event.key_id}")
    if key.last_used_at is not None and key.last_used_at >= event.used_at:
        return _skip(f"API key {event.key_id} was seen used later already")
    key = msgspec.structs.replace(key, last_used_at=event.used_at)
    state.put(key)
    return _done(record, wanted, ("apikey", key, _owner_tenant(record, state, event.user_id)))


def _pirep_submitted(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, PirepSubmitted)
    if event.pirep_id in state.pireps:
        return _skip(f"PIREP {event.pirep_id} exists already")
    d = event.details
    for name, moment in (("block_off_at", d.block_off_at), ("block_on_at", d.block_on_at)):
        if not _has_utc_instant(moment):
            # The domain refuses such times now (before 1970); an older event may hold one,
            # and no read model can store it (PostgreSQL's driver converts to UTC).
            return _skip(f"{name} {moment.isoformat()} has no UTC instant")
    if d.flight_time_minutes not in _INT32:
        return _skip(f"flight_time_minutes {d.flight_time_minutes} does not fit the read model")
    pirep = PirepView(
        id=event.pirep_id, tenant_id=event.tenant_id, pilot_id=event.pilot_id, status="pending",
        flight_number=d.flight_number, departure=d.departure, arrival=d.arrival,
        aircraft_type=d.aircraft_type, aircraft_registration=d.aircraft_registration,
        block_off_at=d.block_off_at, block_on_at=d.block_on_at,
        flight_time_minutes=d.flight_time_minutes, fuel_used_kg=d.fuel_used_kg,
        distance_nm=d.distance_nm, landing_rate_fpm=d.landing_rate_fpm, route=d.route,
        remarks=d.remarks, source=d.source, submitted_at=record.occurred_at, reviewed_at=None,
        reviewed_by=None, review_comment=None, version=record.sequence)
    state.put(pirep)
    return _done(record, wanted, ("pirep", pirep, pirep.tenant_id),
                 history=[_history(record, pirep.id)])


def _has_utc_instant(moment: datetime) -> bool:
    try:
        moment.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +14:00 is before datetime.min in UTC
        return False
    return True


def _pirep_reviewed(record: RecordedEvent, state: ProjectionState, wanted: bool) -> Projected:
    event = record.event
    assert isinstance(event, PirepAccepted | PirepRejected)
    pirep = state.pireps.get(event.pirep_id)
    if pirep is None:
        return _skip(f"unknown PIREP {event.pirep_id}")
    if pirep.status != "pending":
        return _skip(f"PIREP {event.pirep_id} is {pirep.status} already")
    accepted = isinstance(event, PirepAccepted)
    pirep = msgspec.structs.replace(
        pirep, status="accepted" if accepted else "rejected", reviewed_at=record.occurred_at,
        reviewed_by=event.reviewed_by, review_comment=event.comment, version=record.sequence)
    state.put(pirep)
    changes: list[tuple[Entity, Resource, str | None]] = [("pirep", pirep, pirep.tenant_id)]
    pilot = state.users.get(pirep.pilot_id)
    if accepted and pilot is not None:
        pilot = msgspec.structs.replace(
            pilot, flight_count=pilot.flight_count + 1,
            flight_minutes=pilot.flight_minutes + pirep.flight_time_minutes)
        state.put(pilot)
        changes.append(("user", pilot, pilot.tenant_id))
    return _done(record, wanted, *changes, history=[_history(record, pirep.id)])


def pilot_of(event: Event, state: ProjectionState) -> str | None:
    """The pilot whose flight figures a review may change, once the PIREP is loaded."""
    if isinstance(event, PirepAccepted):
        pirep = state.pireps.get(event.pirep_id)
        return pirep.pilot_id if pirep is not None else None
    return None


_HANDLERS = {
    TenantCreated: _tenant_created,
    UserRegistered: _user_registered,
    PasswordChanged: _password_changed,
    ApiKeyCreated: _api_key_created,
    ApiKeyRevoked: _api_key_revoked,
    ApiKeyUsed: _api_key_used,
    PirepSubmitted: _pirep_submitted,
    PirepAccepted: _pirep_reviewed,
    PirepRejected: _pirep_reviewed,
}
