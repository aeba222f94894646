"""Writes a batch of events into the read-model tables, in the caller's transaction.

:meth:`BatchApplier.apply` locks the checkpoint row, drops every record at or below it (a
redelivery), preloads the rows the rest reference, runs the pure projection
(:mod:`albatross.application.projections`) over them, and writes back the dirty rows, the PIREP
history, the change outbox, the poison records and the new checkpoint, all in the one
transaction the caller opened. Committed together, rows and checkpoint can never disagree:
replaying any prefix of the stream again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from albatross.adapters.codec import EVENTS
from albatross.adapters.postgres.migrations import schema_identifier
from albatross.adapters.postgres.pool import Connection
from albatross.adapters.postgres.tables import (
    API_KEYS,
    PIREPS,
    RESOURCE_TABLES,
    TENANTS,
    USERS,
    Table,
)
from albatross.application.projections import (
    ProjectionState,
    Refs,
    project,
    references,
)
from albatross.application.views import ApiKeyView, PirepView, TenantView, UserView
from albatross.ports import RecordedEvent

# Columns the projection never sets, so an upsert must not overwrite them.
_NOT_PROJECTED = {"last_used_at"}


@dataclass(frozen=True)
class Poison:
    """A message that cannot be projected: undecodable, unknown type, or inapplicable."""

    sequence: int
    subject: str
    reason: str
    payload: bytes | None = None


Incoming = RecordedEvent | Poison


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    poison: list[Poison] = field(default_factory=list)
    changes: int = 0
    checkpoint: int = 0


def checkpoint_channel(schema: str) -> str:
    """The NOTIFY channel on which a schema's checkpoint advances are announced."""
    return f"{schema_identifier(schema)}_checkpoint"


class BatchApplier:
    """Projects batches into the tables of ``schema``.

    ``outbox``: write change messages (off for a rebuild, whose changes were published once
    already). ``notify``: announce the new checkpoint to ``wait_for`` listeners (off for a
    shadow schema, whose checkpoint means nothing to readers until it is swapped in).
    """

    def __init__(self, schema: str, *, outbox: bool = True, notify: bool = True) -> None:
        self._s = schema_identifier(schema)
        self._outbox = outbox
        self._notify = notify
        self._channel = checkpoint_channel(schema)
        self._encode = msgspec.json.Encoder().encode
        self._upserts = {t.name: self._upsert_sql(t) for t in RESOURCE_TABLES}

    async def checkpoint(self, connection: Connection, *, lock: bool = False) -> int:
        suffix = " FOR UPDATE" if lock else ""
        value: int = await connection.fetchval(
            f"SELECT last_sequence FROM {self._s}.projection_checkpoint{suffix}")  # noqa: S608
        return value

    async def apply(self, connection: Connection, batch: Sequence[Incoming]) -> BatchResult:
        """Apply ``batch`` (any order, duplicates allowed); call inside a transaction."""
        # Locking the checkpoint row first serialises appliers (a rebuild's final swap
        # takes the same lock) and makes the "already applied" test exact.
        current = await self.checkpoint(connection, lock=True)
        fresh: dict[int, Incoming] = {}
        for record in batch:
            if record.sequence > current:
                fresh.setdefault(record.sequence, record)
        result = BatchResult(duplicates=len(batch) - len(fresh), checkpoint=current)
        if not fresh:
            return result
        ordered = [fresh[seq] for seq in sorted(fresh)]
        state = await self._preload(connection, ordered)
        history: list[tuple[Any, ...]] = []
        outbox: list[tuple[Any, ...]] = []
        for record in ordered:
            if isinstance(record, Poison):
                result.poison.append(record)
                continue
            outcome = project(record, state, changes=self._outbox)
            if outcome.skipped is not None:
                result.poison.append(Poison(record.sequence, f"{EVENTS}.{record.stream.key}",
                                            outcome.skipped))
                continue
            result.applied += 1
            for entry in outcome.history:
                item = entry.item
                history.append((entry.pirep_id, item.sequence, item.type, item.occurred_at,
                                item.actor_id, item.data))
            for ordinal, change in enumerate(outcome.changes):
                outbox.append((record.sequence, ordinal, change.subject,
                               self._encode(change.message)))
        await self._write_rows(connection, state)
        if history:
            await connection.executemany(
                f"INSERT INTO {self._s}.pirep_history "  # noqa: S608
                "(pirep_id, sequence, type, occurred_at, actor_id, data) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING", history)
        if outbox and self._outbox:
            await connection.executemany(
                f"INSERT INTO {self._s}.change_outbox "  # noqa: S608
                "(event_sequence, ordinal, subject, payload) VALUES ($1, $2, $3, $4)", outbox)
            result.changes = len(outbox)
        if result.poison:
            await connection.executemany(
                f"INSERT INTO {self._s}.poison_events (sequence, subject, reason, payload) "  # noqa: S608
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                [(p.sequence, p.subject, p.reason, p.payload) for p in result.poison])
        result.checkpoint = ordered[-1].sequence
        await connection.execute(
            f"UPDATE {self._s}.projection_checkpoint SET last_sequence = $1, updated_at = now()",  # noqa: S608
            result.checkpoint)
        if self._notify:
            # Delivered on commit only, so a woken reader always sees the rows.
            await connection.execute("SELECT pg_notify($1, $2)", self._channel,
                                     str(result.checkpoint))
        return result

    async def _preload(self, connection: Connection,
                       records: Iterable[Incoming]) -> ProjectionState:
        refs = Refs()
        for record in records:
            if isinstance(record, RecordedEvent):
                refs.update(references(record.event))
        state = ProjectionState()
        for pirep in await self._load(connection, PIREPS, refs.pireps):
            assert isinstance(pirep, PirepView)
            state.pireps[pirep.id] = pirep
            # A review changes the flight figures of the PIREP's pilot.
            refs.users.add(pirep.pilot_id)
        for key in await self._load(connection, API_KEYS, refs.api_keys):
            assert isinstance(key, ApiKeyView)
            state.api_keys[key.id] = key
        for user in await self._load(connection, USERS, refs.users):
            assert isinstance(user, UserView)
            state.users[user.id] = user
        for tenant in await self._load(connection, TENANTS, refs.tenants):
            assert isinstance(tenant, TenantView)
            state.tenants[tenant.id] = tenant
        return state

    async def _load(self, connection: Connection, table: Table, ids: set[str]) -> list[Any]:
        if not ids:
            return []
        rows = await connection.fetch(
            f"SELECT {table.select_list()} FROM {self._s}.{table.name} WHERE id = ANY($1::text[])",  # noqa: S608
            list(ids))
        return [table.view(**dict(row)) for row in rows]

    def _upsert_sql(self, table: Table) -> str:
        names = table.names
        unnest = ", ".join(f"${i}::{pgtype}[]" for i, (_, pgtype) in
                           enumerate(table.columns, start=1))
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names[1:]
                            if name not in _NOT_PROJECTED)
        return (f"INSERT INTO {self._s}.{table.name} ({', '.join(names)}) "  # noqa: S608
                f"SELECT * FROM unnest({unnest}) "
                f"ON CONFLICT (id) DO UPDATE SET {updates}")

    async def _write_rows(self, connection: Connection, state: ProjectionState) -> None:
        sources: dict[str, dict[str, Any]] = {
            TENANTS.name: state.tenants, USERS.name: state.users,
            API_KEYS.name: state.api_keys, PIREPS.name: state.pireps,
        }
        for table in RESOURCE_TABLES:
            dirty = state.dirty[table.entity]
            if not dirty:
                continue
            rows = [sources[table.name][row_id] for row_id in sorted(dirty)]
            columns = [[getattr(row, name) for row in rows] for name in table.names]
            await connection.execute(self._upserts[table.name], *columns)
