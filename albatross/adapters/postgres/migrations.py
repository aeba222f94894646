"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, applied in order, exactly once.

Applied versions are recorded in ``public.schema_migrations``. The whole run holds a session
advisory lock, so two processes (two bootstraps, a bootstrap and a projector) may run it at
once: the second waits, then finds nothing left to do. Each file runs in its own transaction
with ``search_path`` set to the target schema, which is how :func:`build_schema` creates the
same tables in a rebuild's shadow schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from albatross.adapters.postgres.pool import Connection, connect

READ_MODEL_SCHEMA = "read_model"
READER_ROLE = "albatross_reader"
"""The role the gateway reads as (created by ``0002_row_level_security.sql``)."""
MIGRATION_LOCK = (0x416C6261, 1)  # ("Alba", 1): pg_advisory_lock(int, int) namespace
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def schema_identifier(schema: str) -> str:
    """``schema`` if it is a plain lower-case identifier (safe to splice into SQL)."""
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def load_migrations() -> list[Migration]:
    found = []
    folder = resources.files("albatross.adapters.postgres").joinpath("migrations")
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2),
                                   entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


async def _run_file(connection: Connection, schema: str, migration: Migration) -> None:
    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    # SET LOCAL: the search path reverts when the transaction ends.
    await connection.execute(f"SET LOCAL search_path TO {schema}, public")
    await connection.execute(migration.sql)


async def apply_migrations(dsn: str) -> list[str]:
    """Bring the live read-model schema up to date; the labels of the files applied now."""
    connection = await connect(dsn, application_name="albatross-migrations")
    try:
        return await migrate(connection, READ_MODEL_SCHEMA)
    finally:
        await connection.close()


async def migrate(connection: Connection, schema: str, *, fresh: bool = False) -> list[str]:
    """Apply the missing migrations to ``schema``; ``fresh`` drops the schema first."""
    schema = schema_identifier(schema)
    applied: list[str] = []
    # Everything, even creating the bookkeeping table, happens under the lock: two concurrent
    # ``CREATE TABLE IF NOT EXISTS`` can still collide in the catalog.
    await connection.execute("SELECT pg_advisory_lock($1, $2)", *MIGRATION_LOCK)
    try:
        await connection.execute("""
            CREATE TABLE IF NOT EXISTS public.schema_migrations (
                schema_name text NOT NULL,
                version     integer NOT NULL,
                name        text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (schema_name, version))""")
        if fresh:
            async with connection.transaction():
                await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                await connection.execute(
                    "DELETE FROM public.schema_migrations WHERE schema_name = $1", schema)
        done = {row["version"] for row in await connection.fetch(
            "SELECT version FROM public.schema_migrations WHERE schema_name = $1", schema)}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with connection.transaction():
                await _run_file(connection, schema, migration)
                await connection.execute(
                    "INSERT INTO public.schema_migrations (schema_name, version, name) "
                    "VALUES ($1, $2, $3)", schema, migration.version, migration.name)
            applied.append(migration.label)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1, $2)", *MIGRATION_LOCK)
    return applied
