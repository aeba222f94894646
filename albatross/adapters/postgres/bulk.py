"""Bulk replay for rebuilds: project everything in memory, then COPY the rows in once.

A rebuild fills empty tables from the whole stream. Upserting batch by batch would read back
rows that this very process wrote; instead the read models (rows, not events: far smaller)
are kept in one :class:`~albatross.application.projections.ProjectionState` and written with
``COPY`` at the end, together with the checkpoint, in one transaction. Memory grows with the
number of rows (about 1 KB each), not with the number of events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from albatross.adapters.codec import EVENTS
from albatross.adapters.postgres.applier import Incoming, Poison
from albatross.adapters.postgres.migrations import schema_identifier
from albatross.adapters.postgres.pool import Connection
from albatross.adapters.postgres.tables import API_KEYS, PIREPS, TENANTS, USERS
from albatross.application.projections import ProjectionState, project


class BulkLoader:
    def __init__(self, schema: str) -> None:
        self._s = schema_identifier(schema)
        self._state = ProjectionState()
        self._history: list[tuple[Any, ...]] = []
        self._poison: list[Poison] = []
        self.checkpoint = 0
        self.events = 0

    def add(self, records: Iterable[Incoming]) -> None:
        """Project records in stream order; anything at or below the checkpoint is ignored."""
        for record in records:
            if record.sequence <= self.checkpoint:
                continue
            self.checkpoint = record.sequence
            self.events += 1
            if isinstance(record, Poison):
                self._poison.append(record)
                continue
            outcome = project(record, self._state, changes=False)
            if outcome.skipped is not None:
                self._poison.append(Poison(record.sequence, f"{EVENTS}.{record.stream.key}",
                                           outcome.skipped))
            for entry in outcome.history:
                item = entry.item
                self._history.append((entry.pirep_id, item.sequence, item.type,
                                      item.occurred_at, item.actor_id, item.data))

    async def flush(self, connection: Connection) -> None:
        """COPY everything into the (empty) tables and set the checkpoint, in one transaction."""
        state = self._state
        async with connection.transaction():
            for table, rows in ((TENANTS, state.tenants), (USERS, state.users),
                                (API_KEYS, state.api_keys), (PIREPS, state.pireps)):
                if rows:
                    names = table.names
                    await connection.copy_records_to_table(
                        table.name, schema_name=self._s, columns=names,
                        records=[tuple(getattr(row, n) for n in names) for row in rows.values()])
            if self._history:
                await connection.copy_records_to_table(
                    "pirep_history", schema_name=self._s,
                    columns=["pirep_id", "sequence", "type", "occurred_at", "actor_id", "data"],
                    records=self._history)
            if self._poison:
                await connection.copy_records_to_table(
                    "poison_events", schema_name=self._s,
                    columns=["sequence", "subject", "reason", "payload"],
                    records=[(p.sequence, p.subject, p.reason, p.payload)
                             for p in self._poison])
            await connection.execute(
                f"UPDATE {self._s}.projection_checkpoint "  # noqa: S608 - validated name
                "SET last_sequence = $1, updated_at = now()", self.checkpoint)
