"""The ReadModels port on PostgreSQL: scoped keyset queries and a LISTEN-based ``wait_for``.

Scoping happens in the SQL itself: a PlatformAdmin's queries have no tenant predicate, every
other principal's carry ``tenant_id = <own tenant>``, and a Pilot's user queries blank other
users' ``email`` (the rules of :mod:`albatross.application.policy`, which a contract test
checks against the in-memory adapter). Each query is built from the predicates it actually
needs, never ``$n IS NULL OR ...``, so every variant is a plain index range scan on one of the
keyset indexes, and prepared once per connection.

Behind those predicates stands a second wall, row-level security (migration 0002): the pool's
connections run as ``albatross_reader``, which sees only the rows of the tenant the statement
declares. Every statement declares the principal's scope itself, in one round trip::

    SELECT q.* FROM declare_scope($1, $2) AS scope(declared)
    CROSS JOIN LATERAL (SELECT ... WHERE scope.declared AND ... OFFSET 0) q

The subquery depends on the declaration's result, so it is evaluated for that row, after the
declaration (``OFFSET 0`` keeps it from being flattened, which would drop the dependency). The
declaration is transaction-local and the statement is its own transaction, so nothing is left
on the connection: the pool skips asyncpg's reset, which would cost a second round trip.

Build it with ``await PostgresReadModels.open(dsn)`` and ``await read_models.close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from albatross.adapters.postgres.applier import checkpoint_channel
from albatross.adapters.postgres.cursors import decode_cursor, encode_cursor, fingerprint
from albatross.adapters.postgres.listener import CheckpointListener
from albatross.adapters.postgres.migrations import (
    READ_MODEL_SCHEMA,
    READER_ROLE,
    schema_identifier,
)
from albatross.adapters.postgres.pool import Pool, create_pool
from albatross.adapters.postgres.read_cache import ReadCache
from albatross.adapters.postgres.tables import API_KEYS, PIREPS, TENANTS, USERS, Table
from albatross.application.principal import Principal
from albatross.application.views import ApiKeyView, PirepView, TenantView, UserView
from albatross.domain.rules import PirepStatus, Role
from albatross.ports import HistoryItem, Page

V = TypeVar("V", TenantView, UserView, ApiKeyView, PirepView)


class _Query:
    """A WHERE clause assembled from the predicates in use, with numbered parameters.

    ``$1`` and ``$2`` are the principal's scope for :func:`_scoped` (from the authenticated
    principal, never from input); the clause starts with the dependency on that declaration.
    """

    def __init__(self, principal: Principal) -> None:
        admin = principal.is_platform_admin
        self.where: list[str] = ["scope.declared"]
        self.args: list[Any] = [None if admin else principal.tenant_id, admin]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def eq(self, column: str, value: Any) -> None:
        if _never_stored(value):
            self.where.append("FALSE")
            return
        self.where.append(f"{column} = {self.arg(value)}")

    def clause(self) -> str:
        return " AND ".join(self.where)


def _never_stored(value: object) -> bool:
    """A text with NUL: PostgreSQL cannot hold one, so nothing stored equals it, and sent as
    a parameter it would make the server refuse the whole statement."""
    return isinstance(value, str) and "\x00" in value


def _scoped(schema: str, inner: str) -> str:
    """``inner`` (a SELECT whose WHERE starts with :class:`_Query`'s clause), run after the
    statement has declared its scope for the row-level security policies."""
    return (f"SELECT q.* FROM {schema}.declare_scope($1, $2) AS scope(declared) "  # noqa: S608
            f"CROSS JOIN LATERAL ({inner} OFFSET 0) q")


def _scope_tenant(query: _Query, principal: Principal, column: str) -> None:
    """Restrict to the principal's tenant unless it is a PlatformAdmin."""
    if not principal.is_platform_admin:
        # A non-admin without a tenant sees nothing: ``= NULL`` is never true.
        query.eq(column, principal.tenant_id)


async def create_read_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """The gateway's pool: connections as :data:`READER_ROLE`, released without a reset,
    statements planned once (generic plans: see :func:`create_pool`)."""
    return await create_pool(dsn, min_size=min_size, max_size=max_size,
                             application_name="albatross-read-models", role=READER_ROLE,
                             keep_session=True, generic_plans=True)


class PostgresReadModels:
    """Implements :class:`~albatross.ports.ReadModels` over the live read-model schema."""

    def __init__(self, pool: Pool, listener: CheckpointListener, *,
                 schema: str = READ_MODEL_SCHEMA, owns_pool: bool = False,
                 pirep_cache_seconds: float = 0.0) -> None:
        self._pool = pool
        self._listener = listener
        self._s = schema_identifier(schema)
        self._owns_pool = owns_pool
        self._pireps: ReadCache[PirepView | None] = ReadCache(max_age=pirep_cache_seconds)

    @classmethod
    async def open(cls, dsn: str, *, schema: str = READ_MODEL_SCHEMA, min_size: int = 1,
                   max_size: int = 10, pirep_cache_seconds: float = 0.0) -> PostgresReadModels:
        """A pool and a checkpoint listener of its own; :meth:`close` releases both.

        Both run as :data:`READER_ROLE` (the login user switches to it at connection start).
        ``pirep_cache_seconds`` > 0 answers :meth:`get_pirep` from memory while no projected
        commit has been notified since (:mod:`~albatross.adapters.postgres.read_cache`).
        """
        pool = await create_read_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            listener = CheckpointListener(dsn, schema, checkpoint_channel(schema),
                                          role=READER_ROLE)
            await listener.start()
        except BaseException:
            await pool.close()
            raise
        return cls(pool, listener, schema=schema, owns_pool=True,
                   pirep_cache_seconds=pirep_cache_seconds)

    async def close(self) -> None:
        await self._listener.stop()
        if self._owns_pool:
            await self._pool.close()

    @property
    def pool(self) -> Pool:
        return self._pool

    # Tenants ------------------------------------------------------------------------------

    async def get_tenant(self, principal: Principal, tenant_id: str) -> TenantView | None:
        query = _Query(principal)
        query.eq("id", tenant_id)
        _scope_tenant(query, principal, "id")
        row = await self._pool.fetchrow(_scoped(
            self._s, f"SELECT {TENANTS.select_list()} FROM {self._s}.tenants "  # noqa: S608
                     f"WHERE {query.clause()}"), *query.args)
        return None if row is None else TenantView(**dict(row))

    async def list_tenants(self, principal: Principal, *, limit: int,
                           cursor: str | None) -> Page[TenantView]:
        query = _Query(principal)
        _scope_tenant(query, principal, "id")
        return await self._page(TENANTS, TenantView, query, TENANTS.select_list(), "created_at",
                                "tenants", fingerprint(), limit, cursor)

    # Users --------------------------------------------------------------------------------

    def _user_columns(self, principal: Principal, query: _Query) -> str:
        if principal.is_platform_admin or principal.role == "TenantAdmin":
            # Every user these principals may see is in their scope for email too.
            email = "email"
        else:
            email = f"CASE WHEN id = {query.arg(principal.user_id)} THEN email END AS email"
        return ", ".join(email if name == "email" else name for name in USERS.names)

    async def get_user(self, principal: Principal, user_id: str) -> UserView | None:
        query = _Query(principal)
        columns = self._user_columns(principal, query)
        query.eq("id", user_id)
        _scope_tenant(query, principal, "tenant_id")
        row = await self._pool.fetchrow(_scoped(
            self._s, f"SELECT {columns} FROM {self._s}.users WHERE {query.clause()}"),  # noqa: S608
            *query.args)
        return None if row is None else UserView(**dict(row))

    async def list_users(self, principal: Principal, *, tenant_id: str | None, role: Role | None,
                         limit: int, cursor: str | None) -> Page[UserView]:
        query = _Query(principal)
        columns = self._user_columns(principal, query)
        _scope_tenant(query, principal, "tenant_id")
        if tenant_id is not None:
            query.eq("tenant_id", tenant_id)
        if role is not None:
            query.eq("role", role)
        return await self._page(USERS, UserView, query, columns, "created_at", "users",
                                fingerprint(tenant_id, role), limit, cursor)

    async def list_api_keys(self, principal: Principal, user_id: str, *, limit: int,
                            cursor: str | None) -> Page[ApiKeyView]:
        query = _Query(principal)
        query.eq("k.user_id", user_id)
        if not principal.is_platform_admin:
            # policy.manage_api_keys: own tenant, and a Pilot only their own keys.
            exists = ["u.id = k.user_id", f"u.tenant_id = {query.arg(principal.tenant_id)}"]
            if principal.role != "TenantAdmin":
                exists.append(f"u.id = {query.arg(principal.user_id)}")
            query.where.append(
                f"EXISTS (SELECT 1 FROM {self._s}.users u WHERE {' AND '.join(exists)})")  # noqa: S608
        else:
            query.where.append(f"EXISTS (SELECT 1 FROM {self._s}.users u WHERE u.id = k.user_id)")  # noqa: S608
        return await self._page(API_KEYS, ApiKeyView, query, API_KEYS.select_list("k"),
                                "k.created_at", "api_keys", fingerprint(user_id), limit, cursor,
                                alias="k")

    # PIREPs -------------------------------------------------------------------------------

    async def get_pirep(self, principal: Principal, pirep_id: str, *,
                        fresh: bool = False) -> PirepView | None:
        query = _Query(principal)
        query.eq("id", pirep_id)
        _scope_tenant(query, principal, "tenant_id")
        # The statement's arguments (the declared scope and the id) decide its answer.
        key = tuple(query.args)
        generation = self._listener.generation if self._pireps.enabled else None
        if generation is not None and not fresh:
            hit, cached = self._pireps.get(generation, key)
            if hit:
                return cached
        row = await self._pool.fetchrow(_scoped(
            self._s, f"SELECT {PIREPS.select_list()} FROM {self._s}.pireps "  # noqa: S608
                     f"WHERE {query.clause()}"), *query.args)
        pirep = None if row is None else PirepView(**dict(row))
        if generation is not None:
            self._pireps.put(generation, key, pirep)
        return pirep

    async def list_pireps(self, principal: Principal, *, status: PirepStatus | None,
                          pilot_id: str | None, tenant_id: str | None, limit: int,
                          cursor: str | None) -> Page[PirepView]:
        query = _Query(principal)
        _scope_tenant(query, principal, "tenant_id")
        if tenant_id is not None:
            query.eq("tenant_id", tenant_id)
        if pilot_id is not None:
            query.eq("pilot_id", pilot_id)
        if status is not None:
            query.eq("status", status)
        return await self._page(PIREPS, PirepView, query, PIREPS.select_list(), "submitted_at",
                                "pireps", fingerprint(status, pilot_id, tenant_id), limit,
                                cursor)

    async def pirep_history(self, principal: Principal,
                            pirep_id: str) -> list[HistoryItem] | None:
        if _never_stored(pirep_id):
            return None  # no such PIREP; the statement below binds it a second time
        query = _Query(principal)
        query.eq("p.id", pirep_id)
        _scope_tenant(query, principal, "p.tenant_id")
        # One statement: whether the PIREP is visible, and its entries if it is.
        rows = await self._pool.fetch(
            "SELECT v.visible, h.sequence, h.type, h.occurred_at, h.actor_id, h.data "  # noqa: S608
            f"FROM {self._s}.declare_scope($1, $2) AS scope(declared) "
            "CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM "
            f"{self._s}.pireps p WHERE {query.clause()}) AS visible OFFSET 0) v "
            "LEFT JOIN LATERAL (SELECT sequence, type, occurred_at, actor_id, data "
            f"FROM {self._s}.pirep_history WHERE v.visible "
            f"AND pirep_id = {query.arg(pirep_id)} OFFSET 0) h ON true ORDER BY h.sequence",
            *query.args)
        if not rows or not rows[0]["visible"]:
            return None
        return [HistoryItem(**{k: v for k, v in row.items() if k != "visible"})
                for row in rows if row["sequence"] is not None]

    # Read-your-writes ---------------------------------------------------------------------

    async def checkpoint(self) -> int:
        value: int = await self._pool.fetchval(
            f"SELECT last_sequence FROM {self._s}.projection_checkpoint")  # noqa: S608
        return value

    async def wait_for(self, sequence: int, timeout: float) -> bool:
        if self._listener.known >= sequence:
            return True
        if await self._listener.wait(sequence, timeout):
            return True
        # A notification can be lost with a dropped listener connection: one last look.
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            return await self.checkpoint() >= sequence
        return False

    # Keyset pages -------------------------------------------------------------------------

    async def _page(self, table: Table, view: type[V], query: _Query, columns: str,
                    order: str, list_name: str, filters: str, limit: int, cursor: str | None,
                    *, alias: str = "") -> Page[V]:
        id_column = f"{alias}.id" if alias else "id"
        if cursor is not None:
            moment, last_id = decode_cursor(cursor, list_name, filters)
            query.where.append(
                f"({order}, {id_column}) < ({query.arg(moment)}, {query.arg(last_id)})")
        source = f"{self._s}.{table.name}" + (f" {alias}" if alias else "")
        sql = _scoped(self._s, f"SELECT {columns} FROM {source} WHERE {query.clause()} "  # noqa: S608
                      f"ORDER BY {order} DESC, {id_column} DESC LIMIT {query.arg(limit + 1)}")
        rows = await self._pool.fetch(sql, *query.args)
        items = [view(**dict(row)) for row in rows[:limit]]
        return Page(items=items, next_cursor=self._next_cursor(
            rows, limit, order.split(".")[-1], list_name, filters))

    @staticmethod
    def _next_cursor(rows: Sequence[Any], limit: int, order: str, list_name: str,
                     filters: str) -> str | None:
        if len(rows) <= limit or limit == 0:
            return None
        last = rows[limit - 1]
        moment: datetime = last[order]
        return encode_cursor(list_name, filters, moment, last["id"])
