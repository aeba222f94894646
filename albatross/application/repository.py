"""Load an aggregate's state and append its new events: the command side's one door.

Loads read a snapshot and the stream's version concurrently; when they agree (the usual
case) the state is ready after one round trip, whatever the size of the store; otherwise only
the events after the snapshot are read and folded. Snapshots are only a cache (the version
check on append keeps every decision honest), written by an append once a load would otherwise
walk :data:`SNAPSHOT_AFTER_EVENTS` events: a one-event history (a new PIREP) reads as cheaply
from the stream as from a snapshot, and skipping its snapshot saves the store a second write
(and fsync) per command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from albatross.domain.aggregates import AggregateKind
from albatross.domain.events import Event
from albatross.observability import get_logger
from albatross.ports import (
    AppendRequest,
    AppendResult,
    Claim,
    EventStore,
    Snapshot,
    SnapshotStore,
    StreamId,
    WrongExpectedVersion,
)

S = TypeVar("S")
_log = get_logger("albatross.repository")

# Bump when a state type changes shape: old snapshots are then simply not found.
# 2: User.sessions_revocations (a format-1 snapshot would decode it as 0 whatever the history).
SNAPSHOT_FORMAT = 2
# Events beyond the last snapshot at which an append writes a new one (a load walks at most
# one fewer, one Direct Get each).
SNAPSHOT_AFTER_EVENTS = 2


class Loaded(msgspec.Struct, Generic[S], frozen=True):
    stream: StreamId
    state: S | None
    version: int
    # Events the load read beyond its snapshot (all of them when there was none).
    unsnapshotted: int = 0


class AggregateRepository(Generic[S]):
    def __init__(self, kind: AggregateKind[S], store: EventStore,
                 snapshots: SnapshotStore) -> None:
        self._kind = kind
        self._store = store
        self._snapshots = snapshots
        self._encode = msgspec.msgpack.Encoder().encode
        self._decoder = msgspec.msgpack.Decoder(kind.state_type)

    def stream(self, aggregate_id: str, scope: str) -> StreamId:
        return StreamId(self._kind.name, aggregate_id, scope)

    async def load(self, stream: StreamId) -> Loaded[S]:
        snapshot, version = await asyncio.gather(self._snapshots.get(self._key(stream)),
                                                 self._store.version(stream))
        state: S | None = None
        after = 0
        unsnapshotted = 0
        if snapshot is not None and 0 < snapshot.version <= version:
            try:
                state = self._decoder.decode(snapshot.state)
                after = snapshot.version
            except (msgspec.DecodeError, msgspec.ValidationError):
                state, after = None, 0
        if after < version:
            events = await self._store.load(stream, after=after)
            state = self._kind.fold(state, ((r.event, r.occurred_at) for r in events))
            version = events[-1].sequence if events else after
            unsnapshotted = len(events)
        return Loaded(stream, state, version, unsnapshotted)

    async def append(self, loaded: Loaded[S], events: Sequence[Event], *, occurred_at: datetime,
                     actor_id: str | None, expected_version: int | None = None,
                     idempotency_key: str | None = None,
                     claims: Sequence[Claim] = ()) -> AppendResult:
        """Append ``events`` decided on ``loaded``; the version check defaults to its version."""
        expected = loaded.version if expected_version is None else expected_version
        result = await self._store.append(AppendRequest(
            stream=loaded.stream, events=events, expected_version=expected,
            occurred_at=occurred_at, actor_id=actor_id, idempotency_key=idempotency_key,
            claims=claims))
        if not result.duplicate and loaded.unsnapshotted + len(events) >= SNAPSHOT_AFTER_EVENTS:
            state = self._kind.fold(loaded.state, ((e, occurred_at) for e in events))
            if state is not None:
                await self._keep_snapshot(loaded.stream, result.sequence, state)
        return result

    async def _keep_snapshot(self, stream: StreamId, version: int, state: S) -> None:
        """Store a snapshot; a failure costs only speed, never the command that was written.

        The events are stored when this runs: failing the command now (say, 503 because
        NATS went away a moment after the append's ack) would tell the client that nothing
        was written, and its retry would be refused as a conflict.
        """
        try:
            await self._snapshots.put(self._key(stream), Snapshot(version, self._encode(state)))
        except Exception as error:
            _log.warning("snapshot not stored; the next load reads the events",
                         stream=stream.key, version=version, error=repr(error))

    async def execute(self, stream: StreamId, decide: Callable[[S | None], Sequence[Event]], *,
                      occurred_at: datetime, actor_id: str | None,
                      claims: Sequence[Claim] = (), attempts: int = 5) -> AppendResult:
        """Load, decide, append; on a concurrent write, decide again on the fresh state.

        For commands whose outcome may depend on the latest state but that carry no version
        of their own (a client's ``If-Match`` goes through :meth:`append` instead).
        """
        for attempt in range(attempts):
            loaded = await self.load(stream)
            events = decide(loaded.state)
            try:
                return await self.append(loaded, events, occurred_at=occurred_at,
                                         actor_id=actor_id, claims=claims)
            except WrongExpectedVersion:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _key(self, stream: StreamId) -> str:
        return f"v{SNAPSHOT_FORMAT}.{stream.key}"
