"""Single active applier: a PostgreSQL session advisory lock on a dedicated connection.

Every projector replica tries ``pg_try_advisory_lock`` every ``retry`` seconds; the one that
gets it applies events *on that same connection*. That is the fencing: if the leader's
process dies or its connection drops, PostgreSQL releases the lock and aborts any open
transaction at once, so a deposed leader can never commit another batch. TCP keepalives
(see :mod:`albatross.adapters.postgres.pool`) bound how long a silently vanished peer keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from albatross.adapters.postgres.pool import Connection, connect

APPLIER_LOCK = (0x416C6261, 2)  # ("Alba", 2); 1 is the migration lock


class Leadership:
    """The lock connection while held; ``lost`` is set when the connection goes away."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.lost = asyncio.Event()
        connection.add_termination_listener(self._terminated)

    def _terminated(self, _connection: Any) -> None:
        self.lost.set()

    def held(self) -> bool:
        return not self.lost.is_set() and not self.connection.is_closed()

    async def release(self) -> None:
        if not self.connection.is_closed():
            with contextlib.suppress(Exception):
                await self.connection.execute("SELECT pg_advisory_unlock($1, $2)", *APPLIER_LOCK)
            with contextlib.suppress(Exception):
                await self.connection.close(timeout=2)
        self.lost.set()


async def acquire(dsn: str, stop: asyncio.Event, retry: float = 0.5) -> Leadership | None:
    """Wait until this replica leads (or ``stop`` is set: None).

    A standby keeps one connection and asks for the lock every ``retry`` seconds, so it takes
    over within about ``retry`` seconds of the leader's connection closing.
    """
    connection: Connection | None = None
    try:
        while not stop.is_set():
            try:
                if connection is None or connection.is_closed():
                    connection = await connect(dsn, application_name="albatross-projector",
                                               plans="generic")
                if await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)",
                                             *APPLIER_LOCK):
                    leadership, connection = Leadership(connection), None
                    return leadership
            except (OSError, TimeoutError, Exception):
                # PostgreSQL is away: keep trying; readiness reports it meanwhile.
                if connection is not None:
                    connection.terminate()
                connection = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry)
        return None
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
