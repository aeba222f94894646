"""Column lists of the read-model tables, in one place for the writer and the readers.

Each resource table's columns are exactly its view's fields (``UserView`` minus nothing:
``email`` is stored and blanked per caller by the query), so rows convert to views by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from albatross.application.views import (
    ApiKeyView,
    Entity,
    PirepView,
    Resource,
    TenantView,
    UserView,
)


@dataclass(frozen=True)
class Table:
    name: str
    entity: Entity
    view: type[Resource]
    # (column, PostgreSQL type) in the view's field order; the first is the primary key.
    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def select_list(self, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + name for name in self.names)


TENANTS = Table("tenants", "tenant", TenantView, (
    ("id", "text"), ("name", "text"), ("icao", "text"), ("iata", "text"),
    ("created_at", "timestamptz"), ("pilot_count", "integer")))

USERS = Table("users", "user", UserView, (
    ("id", "text"), ("email", "text"), ("display_name", "text"), ("role", "text"),
    ("tenant_id", "text"), ("created_at", "timestamptz"), ("must_change_password", "boolean"),
    ("flight_count", "integer"), ("flight_minutes", "bigint")))

API_KEYS = Table("api_keys", "apikey", ApiKeyView, (
    ("id", "text"), ("user_id", "text"), ("name", "text"), ("prefix", "text"),
    ("created_at", "timestamptz"), ("last_used_at", "timestamptz"),
    ("revoked_at", "timestamptz")))

PIREPS = Table("pireps", "pirep", PirepView, (
    ("id", "text"), ("tenant_id", "text"), ("pilot_id", "text"), ("status", "text"),
    ("flight_number", "text"), ("departure", "text"), ("arrival", "text"),
    ("aircraft_type", "text"), ("aircraft_registration", "text"),
    ("block_off_at", "timestamptz"), ("block_on_at", "timestamptz"),
    ("flight_time_minutes", "integer"), ("fuel_used_kg", "double precision"),
    ("distance_nm", "double precision"), ("landing_rate_fpm", "double precision"),
    ("route", "text"), ("remarks", "text"), ("source", "text"),
    ("submitted_at", "timestamptz"), ("reviewed_at", "timestamptz"), ("reviewed_by", "text"),
    ("review_comment", "text"), ("version", "bigint")))

RESOURCE_TABLES: tuple[Table, ...] = (TENANTS, USERS, API_KEYS, PIREPS)
