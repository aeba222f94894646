"""The Tenant aggregate: an airline on the platform."""

from __future__ import annotations

from datetime import datetime

import msgspec

from albatross.domain.errors import Conflict, FieldError, raise_if_any
from albatross.domain.events import Event
from albatross.domain.rules import (
    NAME_MAX,
    TENANT_IATA,
    TENANT_ICAO,
    pattern_errors,
    text_errors,
)


class CreateTenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    icao: str
    iata: str | None = None


class TenantCreated(Event, frozen=True, kw_only=True):
    event_type = "TenantCreated"
    tenant_id: str
    name: str
    icao: str
    iata: str | None


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    icao: str
    iata: str | None
    created_at: datetime


TenantEvent = TenantCreated


def create_tenant_errors(cmd: CreateTenant) -> list[FieldError]:
    return [
        *text_errors("name", cmd.name, required=True, max_len=NAME_MAX),
        *pattern_errors("icao", cmd.icao, TENANT_ICAO, "must be 3 letters A-Z"),
        *pattern_errors("iata", cmd.iata, TENANT_IATA, "must be 2 letters or digits",
                        required=False),
    ]


def decide_create(state: Tenant | None, cmd: CreateTenant) -> list[Event]:
    if state is not None:
        raise Conflict(f"tenant {cmd.tenant_id} already exists")
    raise_if_any(create_tenant_errors(cmd))
    return [TenantCreated(tenant_id=cmd.tenant_id, name=cmd.name.strip(), icao=cmd.icao,
                          iata=cmd.iata)]


def evolve(state: Tenant | None, event: Event, occurred_at: datetime) -> Tenant | None:
    if isinstance(event, TenantCreated):
        return Tenant(tenant_id=event.tenant_id, name=event.name, icao=event.icao,
                      iata=event.iata, created_at=occurred_at)
    return state


TENANT_EVENTS: tuple[type[Event], ...] = (TenantCreated,)
