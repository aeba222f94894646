"""Resources as the API shows them: one shape for GET responses and change messages.

The projector builds these from events; the gateway serves them; the notifier sends them,
redacted for each recipient by :mod:`albatross.application.policy`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

import msgspec

from albatross.domain.rules import PirepSource, PirepStatus, Role

Entity = Literal["tenant", "user", "pirep", "apikey"]


class TenantView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    icao: str
    iata: str | None
    created_at: datetime
    pilot_count: int


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str | None
    display_name: str
    role: Role
    tenant_id: str | None
    created_at: datetime
    must_change_password: bool
    flight_count: int
    flight_minutes: int


class ApiKeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class PirepView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    pilot_id: str
    status: PirepStatus
    flight_number: str
    departure: str
    arrival: str
    aircraft_type: str | None
    aircraft_registration: str | None
    block_off_at: datetime
    block_on_at: datetime
    flight_time_minutes: int
    fuel_used_kg: float | None
    distance_nm: float | None
    landing_rate_fpm: float | None
    route: str | None
    remarks: str | None
    source: PirepSource
    submitted_at: datetime
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_comment: str | None
    version: int


Resource = TenantView | UserView | ApiKeyView | PirepView
R = TypeVar("R", TenantView, UserView, ApiKeyView, PirepView)

RESOURCE_TYPES: dict[Entity, type[Resource]] = {
    "tenant": TenantView, "user": UserView, "apikey": ApiKeyView, "pirep": PirepView,
}


class ChangeMessage(msgspec.Struct, Generic[R], frozen=True, kw_only=True, tag_field="type",
                    tag="change"):
    """What ``albatross.changes.<tenant|platform>.<entity>.<id>`` carries, and the WebSocket.

    ``sequence`` numbers the changes stream (not the event store); on the stream itself it is
    the stream's own message sequence, set by whoever reads it. Decode with the entity's
    type, e.g. ``ChangeMessage[PirepView]``.
    """

    sequence: int
    entity: Entity
    id: str
    tenant_id: str | None
    event: str
    data: R
