"""Row-level security, the second tenant wall (migration 0002), on a real PostgreSQL.

The gateway's SQL already carries a tenant predicate (the first wall, tested in
``tests/contract/test_read_models.py`` and ``test_tenant_isolation.py``). These tests leave it
out on purpose: every query below reads a whole table as the gateway's role, so anything it
returns was let through by the policies alone.

World: tenants ``ta`` and ``tb``; a PlatformAdmin ``pa`` (no tenant) and one pilot per tenant,
each with an API key; one PIREP per tenant with one history entry.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from albatross.adapters.postgres.migrations import READER_ROLE, migrate
from albatross.adapters.postgres.pool import Connection, connect, create_pool
from albatross.adapters.postgres.read_models import (
    PostgresReadModels,
    _scoped,
    create_read_pool,
)
from albatross.adapters.postgres.roles import scram_verifier
from albatross.application.principal import Principal
from albatross.services.bootstrap.main import enable_reader_login
from tests.infra_fixtures import login_as
from tests.reliability_figures import record

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

# table -> the column that names a row in the expectations below
KEYS = {"tenants": "id", "users": "id", "api_keys": "id", "pireps": "id",
        "pirep_history": "pirep_id"}
VISIBLE: dict[str, dict[str, set[str]]] = {
    "ta": {"tenants": {"ta"}, "users": {"u-a"}, "api_keys": {"k-a"}, "pireps": {"p-a"},
           "pirep_history": {"p-a"}},
    "tb": {"tenants": {"tb"}, "users": {"u-b"}, "api_keys": {"k-b"}, "pireps": {"p-b"},
           "pirep_history": {"p-b"}},
    "all": {"tenants": {"ta", "tb"}, "users": {"pa", "u-a", "u-b"},
            "api_keys": {"k-pa", "k-a", "k-b"}, "pireps": {"p-a", "p-b"},
            "pirep_history": {"p-a", "p-b"}},
}
NOT_TENANT_SCOPED_BUT_READABLE = {"projection_checkpoint"}


@dataclass
class World:
    dsn: str
    schema: str
    owner: Connection

    def scoped(self, table: str) -> str:
        """The gateway's statement shape, with no tenant predicate at all."""
        return _scoped(self.schema, f"SELECT {KEYS[table]} AS key "
                                    f"FROM {self.schema}.{table} WHERE scope.declared")

    async def reader(self) -> Connection:
        return await connect(self.dsn, role=READER_ROLE)


async def _populate(owner: Connection, s: str) -> None:
    await owner.executemany(
        f"INSERT INTO {s}.tenants (id, name, icao, iata, created_at) "
        "VALUES ($1, $2, $3, NULL, $4)",
        [("ta", "Alpha", "AAA", T0), ("tb", "Bravo", "BBB", T0)])
    await owner.executemany(
        f"INSERT INTO {s}.users (id, email, display_name, role, tenant_id, created_at, "
        "must_change_password) VALUES ($1, $2, $1, $3, $4, $5, false)",
        [("pa", "pa@x.test", "PlatformAdmin", None, T0),
         ("u-a", "a@x.test", "Pilot", "ta", T0), ("u-b", "b@x.test", "Pilot", "tb", T0)])
    await owner.executemany(
        f"INSERT INTO {s}.api_keys (id, user_id, name, prefix, created_at) "
        "VALUES ($1, $2, 'key', 'alb_x', $3)",
        [("k-pa", "pa", T0), ("k-a", "u-a", T0), ("k-b", "u-b", T0)])
    await owner.executemany(
        f"INSERT INTO {s}.pireps (id, tenant_id, pilot_id, status, flight_number, "
        "departure, arrival, block_off_at, block_on_at, flight_time_minutes, source, "
        "submitted_at, version) VALUES ($1, $2, $3, 'pending', 'BAW1', 'EGLL', 'LFPG', $4, "
        "$4, 60, 'manual', $4, 1)",
        [("p-a", "ta", "u-a", T0), ("p-b", "tb", "u-b", T0)])
    await owner.executemany(
        f"INSERT INTO {s}.pirep_history (pirep_id, sequence, type, occurred_at, actor_id, "
        "data) VALUES ($1, $2, 'PirepSubmitted', $3, NULL, '{}'::jsonb)",
        [("p-a", 1, T0), ("p-b", 2, T0)])


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    schema = f"rls_{uuid.uuid4().hex[:12]}"
    owner = await connect(database_url)
    try:
        await migrate(owner, schema)
        await _populate(owner, schema)
        yield World(database_url, schema, owner)
    finally:
        await owner.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await owner.execute("DELETE FROM public.schema_migrations WHERE schema_name = $1",
                            schema)
        await owner.close()


async def _keys(connection: Connection, sql: str, *args: Any) -> set[str]:
    return {row["key"] for row in await connection.fetch(sql, *args)}


# The role -------------------------------------------------------------------------------------

async def test_the_gateway_pool_reads_as_a_role_that_owns_nothing_and_cannot_bypass(
        world: World) -> None:
    pool = await create_read_pool(world.dsn, max_size=1)
    try:
        assert await pool.fetchval("SELECT current_user") == READER_ROLE
    finally:
        await pool.close()
    role = await world.owner.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb "
        "FROM pg_roles WHERE rolname = $1", READER_ROLE)
    assert role is not None
    assert not any(role.values()), dict(role)
    owned = await world.owner.fetchval(
        "SELECT count(*) FROM pg_class WHERE relnamespace = $1::regnamespace "
        "AND pg_get_userbyid(relowner) = $2", world.schema, READER_ROLE)
    assert owned == 0


async def test_every_table_the_reader_can_read_is_tenant_walled(world: World) -> None:
    """A table added later and granted to the reader without a policy fails here."""
    rows = await world.owner.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
        "has_table_privilege($2, c.oid, 'SELECT') AS readable, "
        "has_table_privilege($2, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') AS writable, "
        "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies "
        "FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'",
        world.schema, READER_ROLE)
    walled = {r["relname"] for r in rows
              if r["relrowsecurity"] and r["relforcerowsecurity"] and r["policies"] > 0}
    assert walled == set(KEYS)
    readable = {r["relname"] for r in rows if r["readable"]}
    assert readable - walled == NOT_TENANT_SCOPED_BUT_READABLE
    assert not [r["relname"] for r in rows if r["writable"]]


# What a declared scope shows ------------------------------------------------------------------

@pytest.mark.parametrize("tenant", ["ta", "tb"])
async def test_a_declared_tenant_sees_only_its_rows_in_every_table(world: World,
                                                                   tenant: str) -> None:
    reader = await world.reader()
    try:
        for table in KEYS:
            seen = await _keys(reader, world.scoped(table), tenant, False)
            assert seen == VISIBLE[tenant][table], table
    finally:
        await reader.close()


async def test_a_platform_admin_sees_every_row(world: World) -> None:
    reader = await world.reader()
    try:
        for table in KEYS:
            assert await _keys(reader, world.scoped(table), None, True) == VISIBLE["all"][table]
    finally:
        await reader.close()


async def test_nothing_declared_shows_nothing(world: World) -> None:
    reader = await world.reader()
    try:
        for table in KEYS:
            plain = f"SELECT {KEYS[table]} AS key FROM {world.schema}.{table}"
            assert await _keys(reader, plain) == set(), table
            # A non-admin principal without a tenant declares nothing either.
            assert await _keys(reader, world.scoped(table), None, False) == set(), table
            assert await _keys(reader, world.scoped(table), "", False) == set(), table
        # The declaration did not outlive its statement.
        assert await reader.fetchval(
            "SELECT coalesce(current_setting('albatross.tenant_id', true), '')") == ""
    finally:
        await reader.close()


async def test_the_declaration_is_in_force_before_the_scan(world: World) -> None:
    """The ordering proof. The session already holds tenant B (as if an earlier statement
    had leaked it); the gateway's statement declares A. Were the scan evaluated before the
    declaration, it would show B's rows. A naive statement that declares in its WHERE
    clause, row by row (so after each row's policy check), shows that this test tells the
    two orders apart."""
    reader = await world.reader()
    try:
        await reader.execute("SELECT set_config('albatross.tenant_id', 'tb', false)")
        for table in KEYS:
            assert await _keys(reader, world.scoped(table), "ta", False) == VISIBLE["ta"][table]
            naive = (f"SELECT {KEYS[table]} AS key FROM {world.schema}.{table} "
                     f"WHERE {world.schema}.declare_scope('ta' || left({KEYS[table]}, 0), "
                     "false)")
            await reader.execute("SELECT set_config('albatross.tenant_id', 'tb', false)")
            assert await _keys(reader, naive) != VISIBLE["ta"][table], table
            await reader.execute("SELECT set_config('albatross.tenant_id', 'tb', false)")
    finally:
        await reader.close()


# What the reader cannot do --------------------------------------------------------------------

async def test_writes_and_policy_changes_are_refused(world: World) -> None:
    reader = await world.reader()
    s = world.schema
    try:
        for table in [*KEYS, "projection_checkpoint", "change_outbox", "poison_events"]:
            column = KEYS.get(table, "last_sequence" if table == "projection_checkpoint"
                              else "subject")
            for sql in (f"INSERT INTO {s}.{table} DEFAULT VALUES",
                        f"UPDATE {s}.{table} SET {column} = {column}",
                        f"DELETE FROM {s}.{table}",
                        f"TRUNCATE {s}.{table}",
                        f"ALTER TABLE {s}.{table} DISABLE ROW LEVEL SECURITY",
                        f"ALTER TABLE {s}.{table} NO FORCE ROW LEVEL SECURITY",
                        f"CREATE POLICY open ON {s}.{table} USING (true)"):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await reader.execute(sql)
        for table in KEYS:
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await reader.execute(f"DROP POLICY tenant_wall ON {s}.{table}")
        for table in ("change_outbox", "poison_events"):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await reader.fetch(f"SELECT * FROM {s}.{table}")
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await reader.execute(f"ALTER FUNCTION {s}.declare_scope(text, boolean) "
                                 "RENAME TO anything")
    finally:
        await reader.close()
    # Nothing changed: the owner still sees the whole world.
    for table in KEYS:
        rows = await world.owner.fetch(f"SELECT {KEYS[table]} AS key FROM {s}.{table}")
        assert {r["key"] for r in rows} == VISIBLE["all"][table]


async def test_row_security_off_is_an_error_not_a_bypass(world: World) -> None:
    reader = await world.reader()
    try:
        await reader.execute("SET row_security = off")
        for table in KEYS:
            for args in (("ta", False), ("tb", False), (None, True)):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError,
                                   match="row-level security"):
                    await reader.fetch(world.scoped(table), *args)
    finally:
        await reader.close()


# Pooled connections ---------------------------------------------------------------------------

async def test_a_pooled_connection_never_carries_a_scope_to_the_next_query(
        world: World) -> None:
    """Many concurrent statements for A, B, a PlatformAdmin and nobody on a pool of two
    connections that are released without any reset: each sees exactly its own scope."""
    pool = await create_read_pool(world.dsn, max_size=2)
    rng = random.Random(8)
    undeclared = f"SELECT id AS key, pg_backend_pid() AS pid FROM {world.schema}.pireps"
    scopes = {"ta": ("ta", False), "tb": ("tb", False), "all": (None, True)}
    served: dict[int, set[str]] = {}

    async def one(scope: str, table: str) -> None:
        await asyncio.sleep(rng.random() / 1000)
        if scope == "none":
            rows = await pool.fetch(undeclared)
            assert rows == []
            return
        rows = await pool.fetch(world.scoped(table).replace(
            " AS key ", " AS key, pg_backend_pid() AS pid "), *scopes[scope])
        assert {r["key"] for r in rows} == VISIBLE[scope][table], (scope, table)
        for row in rows:
            served.setdefault(row["pid"], set()).add(scope)

    try:
        jobs = [one(rng.choice(["ta", "tb", "all", "none"]), rng.choice(list(KEYS)))
                for _ in range(600)]
        await asyncio.gather(*jobs)
        # And after a statement that fails halfway, the connection is still clean.
        with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
            await pool.fetch(world.scoped("pireps").replace(
                "WHERE scope.declared", "WHERE scope.declared AND 1 / 0 = 1"), "ta", False)
        for _ in range(4):
            assert await pool.fetch(undeclared) == []
    finally:
        await pool.close()
    # Both connections served several scopes in turn.
    assert len(served) == 2, served
    assert all(len(scopes_) >= 2 for scopes_ in served.values()), served
    record("security", rls_pooled_statements=len(jobs), rls_pool_connections=len(served))


# Round trips ----------------------------------------------------------------------------------

def _operations(pool: Any) -> int:
    """Protocol operations (each one round trip) sent so far on the pool's connections."""
    # asyncpg keeps no public counter; its protocol counts every operation it sends.
    return sum(holder._con._protocol.queries_count
               for holder in pool._holders if holder._con is not None)


async def test_a_read_costs_one_round_trip(world: World) -> None:
    """Every read-model query is one protocol operation once prepared; asyncpg's default
    release (the before) adds a reset to each."""
    pilot = Principal(user_id="u-a", role="Pilot", tenant_id="ta")
    reads: dict[str, Callable[[PostgresReadModels], Awaitable[object]]] = {
        "get_pirep": lambda m: m.get_pirep(pilot, "p-a"),
        "get_user": lambda m: m.get_user(pilot, "u-a"),
        "get_tenant": lambda m: m.get_tenant(pilot, "ta"),
        "list_pireps": lambda m: m.list_pireps(pilot, status=None, pilot_id=None,
                                               tenant_id=None, limit=10, cursor=None),
        "pirep_history": lambda m: m.pirep_history(pilot, "p-a"),
    }
    figures: dict[str, dict[str, float]] = {}
    for label, pool in (("before", await create_pool(world.dsn, max_size=1,
                                                     role=READER_ROLE)),
                        ("after", await create_read_pool(world.dsn, max_size=1))):
        models = PostgresReadModels(pool, listener=None, schema=world.schema)  # type: ignore[arg-type]
        try:
            for name, read in reads.items():
                assert await read(models), name  # prepares the statement, and finds A's row
                start = _operations(pool)
                for _ in range(10):
                    await read(models)
                figures.setdefault(label, {})[name] = (_operations(pool) - start) / 10
        finally:
            await pool.close()
    assert figures["after"] == dict.fromkeys(reads, 1.0), figures
    assert figures["before"] == dict.fromkeys(reads, 2.0), figures
    record("security", rls_round_trips_per_read=max(figures["after"].values()))


# The reader as a login role (ALBATROSS_DATABASE_READER_PASSWORD) ------------------------------

def test_the_scram_verifier_is_postgresql_s_layout() -> None:
    # RFC 7677's test vector: user "user", password "pencil", this salt, 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    assert scram_verifier("pencil", salt=salt) == (
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
    with pytest.raises(ValueError, match="printable ASCII"):
        scram_verifier("pâssword")


async def test_a_gateway_logged_in_as_the_reader_cannot_become_the_owner(world: World) -> None:
    password = f"reader-{uuid.uuid4().hex}"
    await enable_reader_login(world.dsn, password)
    owner_name = await world.owner.fetchval("SELECT session_user")
    try:
        reader = await asyncpg.connect(world.dsn, user=READER_ROLE, password=password)
        try:
            assert await reader.fetchval("SELECT session_user") == READER_ROLE
            for escape in (f"SET ROLE {owner_name}", f"SET SESSION AUTHORIZATION {owner_name}",
                           f"SELECT set_config('role', '{owner_name}', false)"):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await reader.execute(escape)
            await reader.execute("RESET ROLE")
            assert await reader.fetchval("SELECT current_user") == READER_ROLE
        finally:
            await reader.close()
        # The gateway's read models work unchanged over that login (the switch to the role is
        # a no-op), checkpoint listener included: deploy/compose gives the gateway this DSN.
        models = await PostgresReadModels.open(login_as(world.dsn, READER_ROLE, password),
                                               schema=world.schema, max_size=1)
        try:
            assert await models.pool.fetchval("SELECT session_user") == READER_ROLE
            assert await _keys(models.pool, world.scoped("pireps"), "ta", False) == {"p-a"}
            pilot = Principal(user_id="u-a", role="Pilot", tenant_id="ta")
            assert await models.get_pirep(pilot, "p-a") is not None
            assert await models.get_pirep(pilot, "p-b") is None
            assert await models.checkpoint() == 0
            assert await models.wait_for(0, timeout=1)
        finally:
            await models.close()
    finally:
        await world.owner.execute(f"ALTER ROLE {READER_ROLE} NOLOGIN PASSWORD NULL")
