"""Wakes ``wait_for`` callers when the projector's checkpoint advances: LISTEN, no polling.

One dedicated connection listens on the schema's checkpoint channel; the projector sends
``pg_notify(channel, '<sequence>')`` in the transaction that moves the checkpoint, so the
notification arrives only after the rows are visible. Waiters sit in a list keyed by the
sequence they need. If the connection drops, the listener reconnects (every second), listens
again and re-reads the checkpoint, so nothing committed meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from albatross.adapters.postgres.migrations import schema_identifier
from albatross.adapters.postgres.pool import Connection, connect
from albatross.observability import get_logger

_RETRY_SECONDS = 1.0
_log = get_logger(__name__)


class CheckpointListener:
    def __init__(self, dsn: str, schema: str, channel: str, *, role: str | None = None) -> None:
        self._dsn = dsn
        self._role = role
        self._s = schema_identifier(schema)
        self._channel = channel
        self._known = 0
        self._generation = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._connection: Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def known(self) -> int:
        """The highest checkpoint seen; never ahead of what is committed."""
        return self._known

    @property
    def generation(self) -> int | None:
        """Counts every notification and (re)connection, whatever sequence they carry (a
        rebuild's schema swap notifies the same sequence); ``None`` while disconnected, when
        changes could go unseen."""
        return self._generation if self.connected else None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        await self._connect()

    async def stop(self) -> None:
        self._stopped = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters.clear()

    async def wait(self, sequence: int, timeout: float) -> bool:
        if self._known >= sequence:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((sequence, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            return self._known >= sequence
        finally:
            self._waiters = [(s, f) for s, f in self._waiters if f is not future]
        return True

    async def _connect(self) -> None:
        connection = await connect(self._dsn, application_name="albatross-checkpoint-listener",
                                   role=self._role)
        try:
            # LISTEN before reading: an advance between the two is then seen either way.
            await connection.add_listener(self._channel, self._on_notify)
            current = await connection.fetchval(
                f"SELECT last_sequence FROM {self._s}.projection_checkpoint")  # noqa: S608
        except BaseException:
            await connection.close()
            raise
        connection.add_termination_listener(self._on_terminated)
        self._connection = connection
        self._generation += 1
        self._advance(int(current))

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._generation += 1
        with contextlib.suppress(ValueError):
            self._advance(int(payload))

    def _on_terminated(self, _connection: Any) -> None:
        if self._stopped or (self._reconnect is not None and not self._reconnect.done()):
            return
        self._connection = None
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._stopped:
            try:
                await self._connect()
                _log.info("checkpoint listener reconnected", checkpoint=self._known)
                return
            except (TimeoutError, OSError, Exception) as exc:
                _log.warning("checkpoint listener cannot reconnect", error=repr(exc))
                await asyncio.sleep(_RETRY_SECONDS)

    def _advance(self, sequence: int) -> None:
        if sequence <= self._known:
            return
        self._known = sequence
        still = []
        for wanted, future in self._waiters:
            if wanted <= sequence:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((wanted, future))
        self._waiters = still
