"""asyncpg connections and pools with the codecs and settings every Albatross query expects.

``json``/``jsonb`` values are encoded and decoded with msgspec (plain Python values in and out);
prepared statements are cached per connection, so the hot read queries are parsed once.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import msgspec

Pool = Any
"""An ``asyncpg.Pool`` (asyncpg ships no type information)."""
Connection = Any
"""An ``asyncpg.Connection``."""

STATEMENT_CACHE_SIZE = 512
SERVER_SETTINGS = {
    "application_name": "albatross",
    # Every session in UTC, whatever the server's, database's or role's default: ``to_jsonb``
    # of a row (the projector's change payloads) writes timestamps in the session's time
    # zone, and the contract's timestamps are UTC ("Z") everywhere.
    "TimeZone": "UTC",
    # Dead peers (a killed projector, a partitioned host) must release their advisory locks
    # quickly: the server probes idle client connections with TCP keepalives.
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


PlanMode = Literal["auto", "custom", "generic"]
"""How a session plans prepared statements: PostgreSQL's own choice (custom plans for a
statement's first five executions, then a generic one if it looks no worse), a plan for every
execution, or one plan per statement."""

_PLAN_CACHE_MODE: dict[PlanMode, str | None] = {
    "auto": None, "custom": "force_custom_plan", "generic": "force_generic_plan"}

_JSONB_VERSION = b"\x01"


def _encode_json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _decode_json(data: bytes) -> Any:
    return msgspec.json.decode(data)


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + msgspec.json.encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


async def init_connection(connection: Connection) -> None:
    """Register the JSON codecs on a new connection (the pool calls this for each one).

    Binary format: it is what ``COPY`` needs, and skips a text round trip. A binary ``jsonb``
    value is a version byte (1) followed by the JSON text.
    """
    await connection.set_type_codec("json", schema="pg_catalog", encoder=_encode_json,
                                    decoder=_decode_json, format="binary")
    await connection.set_type_codec("jsonb", schema="pg_catalog", encoder=_encode_jsonb,
                                    decoder=_decode_jsonb, format="binary")


def _session_settings(application_name: str, role: str | None,
                      plans: PlanMode) -> dict[str, str]:
    """What every session of a pool or a dedicated connection starts with."""
    settings = {**SERVER_SETTINGS, "application_name": application_name}
    if role is not None:
        # In the startup packet: the session starts as ``role``, and ``RESET ROLE`` or
        # ``RESET ALL`` come back to it, not to the login user.
        settings["role"] = role
    plan_cache_mode = _PLAN_CACHE_MODE[plans]
    if plan_cache_mode is not None:
        settings["plan_cache_mode"] = plan_cache_mode
    return settings


async def _keep_session(connection: Connection) -> None:
    """A release that costs no round trip (asyncpg still rolls back an open transaction)."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10,
                      command_timeout: float | None = 30.0,
                      application_name: str = "albatross", role: str | None = None,
                      keep_session: bool = False, generic_plans: bool = False) -> Pool:
    """A pool; ``role``: every connection switches to it when it starts (no round trip).

    ``keep_session``: skip asyncpg's reset on release (``RESET ALL``, ``UNLISTEN *``, ...,
    one round trip per query). Only for pools whose users leave nothing behind in the
    session: the read models declare their scope per statement, transaction-locally.

    ``generic_plans``: plan each prepared statement once, for any parameters
    (``plan_cache_mode = force_generic_plan``). For the read models' keyset queries: the
    custom plans PostgreSQL makes for a statement's first five executions take the
    row-level-security filter for a very selective one, and pick a scan of all of a tenant's
    rows plus a sort (a second per list page on cold pages at 1,000,000 events) where the
    generic plan walks the keyset index and stops at the page's end.
    """
    settings = _session_settings(application_name, role, "generic" if generic_plans else "auto")
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=command_timeout,
        statement_cache_size=STATEMENT_CACHE_SIZE, init=init_connection,
        reset=_keep_session if keep_session else None, server_settings=settings)


async def connect(dsn: str, *, timeout: float = 10.0, application_name: str = "albatross",
                  role: str | None = None, plans: PlanMode = "auto") -> Connection:
    """One dedicated connection (leader lock, LISTEN, migrations) with the same codecs.

    ``plans``: see :data:`PlanMode`. The projector's applier plans ``generic``: planning
    its two batch statements at every execution cost about 0.9 ms of PostgreSQL CPU per
    batch, more than a small batch's own work; it renews its plans as the tables grow
    (:class:`albatross.adapters.postgres.applier.BatchApplier`). A rebuild plans ``custom``:
    its 500-event batches pay for their plans many times over.
    """
    settings = _session_settings(application_name, role, plans)
    connection = await asyncpg.connect(
        dsn, timeout=timeout, statement_cache_size=STATEMENT_CACHE_SIZE,
        server_settings=settings)
    try:
        await init_connection(connection)
    except BaseException:
        await connection.close()
        raise
    return connection
