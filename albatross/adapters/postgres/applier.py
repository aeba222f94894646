"""Writes a batch of events into the read-model tables, atomically, in two round trips.

:meth:`BatchApplier.apply` reads the checkpoint together with every row the batch references
(one query), drops every record at or below the checkpoint (a redelivery), runs the pure
projection (:mod:`albatross.application.projections`) over the rest, and writes back the dirty
rows, the PIREP history, the change outbox, the poison records and the new checkpoint in ONE
statement of data-modifying CTEs over ``unnest`` arrays. That statement is its own transaction
and is guarded: it moves the checkpoint only from the value the batch was projected against,
in the very table it was read from, and every other part of it is conditional on that move,
so rows and checkpoint can never disagree, a concurrent writer (a second applier; a rebuild's
swap, whose new tables stand at the same checkpoint) makes the whole batch a no-op
(:class:`CheckpointMoved`), and replaying any prefix of the stream changes nothing.

Round trips, not rows, are what a small batch pays for (and each one waits for two processes
to be scheduled on a busy machine): a batch costs two whatever its size, where a transaction
with a row lock cost five (BEGIN, lock, preload, write, COMMIT).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
)
from albatross.application.projections import (
    ProjectionState,
    Refs,
    project,
    references,
)
from albatross.application.views import ApiKeyView, PirepView, TenantView, UserView
from albatross.ports import RecordedEvent


@dataclass(frozen=True)
class Poison:
    """A message that cannot be projected: undecodable, unknown type, or inapplicable."""

    sequence: int
    subject: str
    reason: str
    payload: bytes | None = None


Incoming = RecordedEvent | Poison


class OutboxRow(NamedTuple):
    """A change message as written to ``change_outbox``, keyed ``(event_sequence, ordinal)``."""

    event_sequence: int
    ordinal: int
    subject: str
    payload: bytes

    @property
    def key(self) -> tuple[int, int]:
        return self.event_sequence, self.ordinal


# Events applied before the applier first renews its plans (see BatchApplier._renew_plans).
REPLAN_FROM = 1000


class CheckpointMoved(Exception):
    """The checkpoint changed between a batch's read and its write: nothing was written."""


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    poison: list[Poison] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)  # committed with the batch
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

    def __init__(self, schema: str, *, outbox: bool = True, notify: bool = True,
                 replan_from: int = REPLAN_FROM) -> None:
        self._s = schema_identifier(schema)
        self._outbox = outbox
        self._notify = notify
        self._channel = checkpoint_channel(schema)
        self._encode = msgspec.json.Encoder().encode
        self._preload_text = self._build_preload()
        self._write_text = self._build_write()
        self._applied = 0
        self._replan_at = replan_from
        self._plan = 0
        self._preload_sql = self._write_sql = ""
        self._renew_plans()

    def _renew_plans(self) -> None:
        """New statement texts: new prepared statements, planned for the tables as they are.

        On a connection that plans each statement once (the projector's, ``generic``),
        PostgreSQL keeps a plan until an ANALYZE of its tables, and one made while they were
        small scans them whole once they are large (seen: 80 ms instead of 3 ms per preload
        at 9,000 PIREPs). So the applier starts new plans whenever the events it applied
        since it started have doubled (from ``replan_from`` on): the tables can have grown
        only by those events' rows, so no plan outlives a doubling of what was applied
        before it was made, and a session renews its plans some twenty times in a million
        events.
        """
        tag = f"/* plan {self._plan} */ "
        self._preload_sql = tag + self._preload_text
        self._write_sql = tag + self._write_text
        self._plan += 1

    async def checkpoint(self, connection: Connection) -> int:
        value: int = await connection.fetchval(
            f"SELECT last_sequence FROM {self._s}.projection_checkpoint")  # noqa: S608
        return value

    async def apply(self, connection: Connection, batch: Sequence[Incoming]) -> BatchResult:
        """Apply ``batch`` (any order, duplicates allowed), atomically; in a transaction or not.

        Raises :class:`CheckpointMoved` (having written nothing) when another writer moved
        the checkpoint meanwhile.
        """
        current, table_oid, state = await self._preload(connection, batch)
        fresh: dict[int, Incoming] = {}
        for record in batch:
            if record.sequence > current:
                fresh.setdefault(record.sequence, record)
        result = BatchResult(duplicates=len(batch) - len(fresh), checkpoint=current)
        if not fresh:
            return result
        ordered = [fresh[seq] for seq in sorted(fresh)]
        history: list[tuple[Any, ...]] = []
        outbox: list[OutboxRow] = []
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
                outbox.append(OutboxRow(record.sequence, ordinal, change.subject,
                                        self._encode(change.message)))
        poison = [(p.sequence, p.subject, p.reason, p.payload) for p in result.poison]
        checkpoint = ordered[-1].sequence
        # The NOTIFY in it is delivered on commit only, so a woken reader sees the rows.
        written = await connection.fetchrow(
            self._write_sql, *self._row_arrays(state), *_columns(history, 6),
            *_columns(outbox, 4), *_columns(poison, 4), current, checkpoint, table_oid,
            *([self._channel] if self._notify else []))
        if written is None:
            raise CheckpointMoved(f"the checkpoint is no longer {current}")
        result.checkpoint = checkpoint
        result.outbox = outbox
        self._note_applied(len(ordered))
        return result

    def _note_applied(self, events: int) -> None:
        self._applied += events
        if self._applied >= self._replan_at:
            self._replan_at = 2 * self._applied
            self._renew_plans()

    async def _preload(self, connection: Connection,
                       records: Iterable[Incoming]) -> tuple[int, int, ProjectionState]:
        """The checkpoint, its table's identity, and every row the batch references, in one
        query (a review's pilot included)."""
        refs = Refs()
        for record in records:
            if isinstance(record, RecordedEvent):
                refs.update(references(record.event))
        state = ProjectionState()
        rows = await connection.fetch(self._preload_sql, list(refs.pireps),
                                      list(refs.api_keys), list(refs.users), list(refs.tenants))
        checkpoint = table_oid = 0
        for row in rows:
            kind, data = row["kind"], row["row"]
            if kind == "checkpoint":
                checkpoint, table_oid = int(data[0]), int(data[1])
            elif kind == "pirep":
                pirep = msgspec.convert(data, PirepView, strict=False)
                state.pireps[pirep.id] = pirep
            elif kind == "apikey":
                key = msgspec.convert(data, ApiKeyView, strict=False)
                state.api_keys[key.id] = key
            elif kind == "user":
                user = msgspec.convert(data, UserView, strict=False)
                state.users[user.id] = user
            else:
                tenant = msgspec.convert(data, TenantView, strict=False)
                state.tenants[tenant.id] = tenant
        return checkpoint, table_oid, state

    def _build_preload(self) -> str:
        s = self._s
        return (
            "SELECT 'checkpoint' AS kind, "  # noqa: S608
            "jsonb_build_array(last_sequence, tableoid::bigint) AS row "
            f"FROM {s}.projection_checkpoint "
            f"UNION ALL SELECT 'pirep', to_jsonb(p.*) FROM {s}.pireps p "
            "WHERE p.id = ANY($1::text[]) "
            f"UNION ALL SELECT 'apikey', to_jsonb(k.*) FROM {s}.api_keys k "
            "WHERE k.id = ANY($2::text[]) "
            # A review changes the flight figures of the PIREP's pilot: load the pilot too.
            # One array, not an OR of two conditions: an OR would scan every user.
            f"UNION ALL SELECT 'user', to_jsonb(u.*) FROM {s}.users u "
            "WHERE u.id = ANY($3::text[] || "
            f"ARRAY(SELECT pilot_id FROM {s}.pireps WHERE id = ANY($1::text[]))) "
            f"UNION ALL SELECT 'tenant', to_jsonb(t.*) FROM {s}.tenants t "
            "WHERE t.id = ANY($4::text[])")

    def _build_write(self) -> str:
        s = self._s
        parts = []
        number = 0

        def arrays(types: list[str]) -> str:
            nonlocal number
            out = []
            for pgtype in types:
                number += 1
                out.append(f"${number}::{pgtype}[]")
            return ", ".join(out)

        # Every part reads `c` (the guarded checkpoint move), so it runs only if that moved.
        guarded = "WHERE EXISTS (SELECT 1 FROM c)"
        for index, table in enumerate(RESOURCE_TABLES):
            names = table.names
            # Rows are preloaded before projection, so a written row is the whole truth.
            updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names[1:])
            unnest = arrays([pgtype for _, pgtype in table.columns])
            parts.append(f"r{index} AS (INSERT INTO {s}.{table.name} ({', '.join(names)}) "  # noqa: S608
                         f"SELECT * FROM unnest({unnest}) {guarded} "
                         f"ON CONFLICT (id) DO UPDATE SET {updates})")
        history = arrays(["text", "bigint", "text", "timestamptz", "text", "jsonb"])
        parts.append(f"h AS (INSERT INTO {s}.pirep_history "  # noqa: S608
                     "(pirep_id, sequence, type, occurred_at, actor_id, data) "
                     f"SELECT * FROM unnest({history}) {guarded} ON CONFLICT DO NOTHING)")
        outbox = arrays(["bigint", "smallint", "text", "bytea"])
        parts.append(f"o AS (INSERT INTO {s}.change_outbox "  # noqa: S608
                     "(event_sequence, ordinal, subject, payload) "
                     f"SELECT * FROM unnest({outbox}) {guarded})")
        poison = arrays(["bigint", "text", "text", "bytea"])
        parts.append(f"p AS (INSERT INTO {s}.poison_events "  # noqa: S608
                     "(sequence, subject, reason, payload) "
                     f"SELECT * FROM unnest({poison}) {guarded} ON CONFLICT DO NOTHING)")
        expected, new, table_oid = number + 1, number + 2, number + 3
        # The table too: a rebuild's swap replaces it with one at the same checkpoint, and a
        # batch preloaded from the old tables must not write into the rebuilt ones.
        guard = (f"c AS (UPDATE {s}.projection_checkpoint SET last_sequence = ${new}, "  # noqa: S608
                 f"updated_at = now() WHERE last_sequence = ${expected} "
                 f"AND tableoid::bigint = ${table_oid} RETURNING last_sequence)")
        final = (f"SELECT last_sequence, pg_notify(${table_oid + 1}, last_sequence::text) FROM c"  # noqa: S608
                 if self._notify else "SELECT last_sequence FROM c")
        return "WITH " + ", ".join([guard, *parts]) + " " + final

    def _row_arrays(self, state: ProjectionState) -> list[list[Any]]:
        """The dirty rows of every resource table, as ``unnest`` column arrays."""
        sources: dict[str, dict[str, Any]] = {
            TENANTS.name: state.tenants, USERS.name: state.users,
            API_KEYS.name: state.api_keys, PIREPS.name: state.pireps,
        }
        out: list[list[Any]] = []
        for table in RESOURCE_TABLES:
            rows = [sources[table.name][row_id] for row_id in sorted(state.dirty[table.entity])]
            out.extend([getattr(row, name) for row in rows] for name in table.names)
        return out


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Row tuples as ``width`` column lists (what ``unnest`` takes)."""
    return [[row[i] for row in rows] for i in range(width)]
