"""Change payloads and reads say UTC even where PostgreSQL's default time zone is another."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import msgspec
import pytest

from albatross.adapters.postgres.applier import BatchApplier
from albatross.adapters.postgres.migrations import migrate
from albatross.adapters.postgres.pool import connect
from albatross.adapters.postgres.read_models import PostgresReadModels
from albatross.application.principal import Principal
from tests.contract.test_read_models import Log, review, submit, tenant, user

pytestmark = pytest.mark.real


async def _database_in_kolkata(database_url: str) -> str:
    """A fresh database whose sessions default to UTC+05:30 (as a host's zone would make it)."""
    name = f"tz_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.execute(f"ALTER DATABASE {name} SET timezone = 'Asia/Kolkata'")
    finally:
        await admin.close()
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


async def test_a_change_of_an_updated_row_says_what_get_says(database_url: str) -> None:
    url = await _database_in_kolkata(database_url)
    plain = await asyncpg.connect(url)
    assert await plain.fetchval("SHOW timezone") == "Asia/Kolkata"  # the premise holds
    await plain.close()
    conn = await connect(url)
    try:
        await migrate(conn, "rm")
        applier, log = BatchApplier("rm"), Log()
        await applier.apply(conn, [tenant(log, "ta", "AAA"), user(log, "p1", "Pilot", "ta"),
                                   submit(log, "r-1", "ta", "p1", 60)])
        # A review updates the row: its change is built from the stored row, not the event.
        reviewed = await applier.apply(conn, [review(log, "r-1", "ta", accept=True)])
    finally:
        await conn.close()
    change = msgspec.json.decode(reviewed.outbox[0].payload)["data"]
    models = await PostgresReadModels.open(url, schema="rm")
    try:
        pirep = await models.get_pirep(Principal("pa", "PlatformAdmin", None, session_id="s"),
                                       "r-1")
    finally:
        await models.close()
    assert change == msgspec.json.decode(msgspec.json.encode(pirep))
    assert change["submitted_at"].endswith("Z")
    assert change["block_off_at"].endswith("Z")
