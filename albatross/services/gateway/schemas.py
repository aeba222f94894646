"""Request and response bodies of the REST API, as msgspec types.

The handlers decode requests with exactly these types and the OpenAPI document is generated
from them, so the two cannot disagree. Request types refuse unknown fields (422). Constraints
given here with ``Meta`` are the contract's simple rules; the domain checks the rest (and
reports every failing field at once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from albatross.application.views import ApiKeyView, PirepView, TenantView, UserView
from albatross.domain.pireps import Decision, FlightDetails
from albatross.domain.rules import (
    CONTROL_CHARACTERS,
    NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    TEXT_MAX,
    WHITESPACE,
    PirepSource,
    Role,
)

T = TypeVar("T")

# The domain's text rules, stated in the schema only (``extra_json_schema``): decoding leaves
# them to the domain, which names every failing field at once in words.
_NO_CONTROLS: dict[str, Any] = {"pattern": f"^[^{CONTROL_CHARACTERS}]*$"}
_NOT_BLANK: dict[str, Any] = {"not": {"pattern": f"^[{WHITESPACE}]*$"}}

Name = Annotated[str, Meta(min_length=1, max_length=NAME_MAX,
                           description="Not blank; no control characters but tab and line feed",
                           extra_json_schema={**_NO_CONTROLS, **_NOT_BLANK})]
Password = Annotated[str, Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX,
                               description="12 to 256 characters")]
Email = Annotated[str, Meta(min_length=3, max_length=254,
                            description="A valid address; compared case-insensitively",
                            extra_json_schema={"format": "email"})]
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9_-]+$")]
Instant = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a time zone")]
Text = Annotated[str, Meta(max_length=TEXT_MAX,
                           description="No control characters but tab and line feed",
                           extra_json_schema=_NO_CONTROLS)]


# Requests -----------------------------------------------------------------------------------

class LoginInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, Meta(max_length=254)]
    password: Annotated[str, Meta(max_length=1024)]


class TenantInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    icao: Annotated[str, Meta(pattern="^[A-Z]{3}$", description="3 letters A-Z, unique")]
    iata: Annotated[str, Meta(pattern="^[A-Z0-9]{2}$")] | None = None


class UserInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Email
    display_name: Name
    password: Password
    role: Role
    tenant_id: Id | None = None
    must_change_password: bool = False


class PasswordInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Self service: ``current_password`` and ``new_password``; admin reset: ``new_password``."""

    new_password: Password
    current_password: Annotated[str, Meta(max_length=1024)] | None = None


class ApiKeyInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name


# The domain's FlightDetails with the contract's constraints on each field: a subclass, so
# that a decoded body goes to the command as it is, with no copy into the domain's type. The
# domain checks the same rules again (it owns them); here they are documented, and refused
# by msgspec before anything runs. (A comment, not a docstring: that would be published.)
class PirepInput(FlightDetails, frozen=True, kw_only=True, forbid_unknown_fields=True):
    flight_number: Annotated[str, Meta(pattern="^[A-Z0-9]{1,10}$")]
    departure: Annotated[str, Meta(pattern="^[A-Z]{4}$", description="ICAO airport")]
    arrival: Annotated[str, Meta(pattern="^[A-Z]{4}$", description="ICAO airport")]
    block_off_at: Instant
    block_on_at: Instant
    flight_time_minutes: Annotated[int, Meta(ge=1, le=1440)]
    aircraft_type: Annotated[str, Meta(pattern="^[A-Z0-9]{2,4}$")] | None = None
    aircraft_registration: Annotated[
        str, Meta(pattern="^[A-Z0-9](?:[A-Z0-9-]{0,8}[A-Z0-9])?$")] | None = None
    fuel_used_kg: Annotated[float, Meta(ge=0, le=300_000)] | None = None
    distance_nm: Annotated[float, Meta(ge=0, le=12_500)] | None = None
    landing_rate_fpm: Annotated[float, Meta(ge=-5_000, le=1_000)] | None = None
    route: Text | None = None
    remarks: Text | None = None
    source: PirepSource = "manual"


class ReviewInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    decision: Decision
    comment: Text | None = None


# Responses ----------------------------------------------------------------------------------

class LoginResponse(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    expires_at: datetime
    must_change_password: bool
    user: UserView


class CreatedApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    prefix: str
    key: Annotated[str, Meta(description="The secret: shown in this response only")]
    created_at: datetime


class ApiKeyItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, view: ApiKeyView) -> ApiKeyItem:
        return cls(id=view.id, name=view.name, prefix=view.prefix, created_at=view.created_at,
                   last_used_at=view.last_used_at, revoked_at=view.revoked_at)


class PageOf(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    items: list[T]
    next_cursor: str | None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    sequence: int
    type: str
    occurred_at: datetime
    actor_id: str | None
    data: dict[str, Any]


class History(msgspec.Struct, frozen=True, kw_only=True):
    items: list[HistoryEntry]


class SetupStatus(msgspec.Struct, frozen=True, kw_only=True):
    initialized: bool


class FieldProblem(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details; ``code`` is the stable machine-readable reason."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None


TenantPage = PageOf[TenantView]
UserPage = PageOf[UserView]
ApiKeyPage = PageOf[ApiKeyItem]
PirepPage = PageOf[PirepView]

StatusFilter = Literal["pending", "accepted", "rejected"]
