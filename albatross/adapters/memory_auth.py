"""In-memory doubles of the auth ports, for unit tests (same promises, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from albatross.application.auth_ports import Entry
from albatross.ports import (
    AppendRequest,
    AppendResult,
    Claim,
    Clock,
    EventStore,
    RecordedEvent,
    StreamId,
    UnreadableEvent,
)


@dataclass
class _Stored:
    value: bytes
    revision: int
    written_at: float


class InMemoryKeyValue:
    """A KV bucket whose entries expire ``ttl`` after their last write (by ``clock``)."""

    def __init__(self, clock: Clock, ttl: timedelta) -> None:
        self._clock = clock
        self._ttl = ttl.total_seconds()
        self._entries: dict[str, _Stored] = {}
        self._revision = 0

    async def get(self, key: str) -> Entry | None:
        stored = self._live(key)
        return Entry(stored.value, stored.revision) if stored else None

    async def create(self, key: str, value: bytes) -> int | None:
        if self._live(key) is not None:
            return None
        return self._write(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int | None:
        stored = self._live(key)
        if stored is None or stored.revision != revision:
            return None
        return self._write(key, value)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def _live(self, key: str) -> _Stored | None:
        stored = self._entries.get(key)
        if stored is not None and self._clock.now().timestamp() - stored.written_at >= self._ttl:
            del self._entries[key]
            return None
        return stored

    def _write(self, key: str, value: bytes) -> int:
        self._revision += 1
        self._entries[key] = _Stored(value, self._revision, self._clock.now().timestamp())
        return self._revision


class TrackingEventStore:
    """Wraps an in-memory EventStore and answers the ClaimLookup port from what it wrote."""

    def __init__(self, inner: EventStore) -> None:
        self._inner = inner
        self._claims: dict[Claim, StreamId] = {}
        self._streams: dict[tuple[str, str], StreamId] = {}

    async def append(self, request: AppendRequest) -> AppendResult:
        result = await self._inner.append(request)
        for claim in request.claims:
            self._claims.setdefault(claim, request.stream)
        stream = request.stream
        if any(not event.secret for event in request.events):
            self._streams[(stream.aggregate, stream.aggregate_id)] = stream
        return result

    async def version(self, stream: StreamId) -> int:
        return await self._inner.version(stream)

    async def load(self, stream: StreamId, after: int = 0) -> list[RecordedEvent]:
        return await self._inner.load(stream, after)

    async def read_after(self, sequence: int, limit: int) -> list[RecordedEvent | UnreadableEvent]:
        return await self._inner.read_after(sequence, limit)

    async def last_sequence(self) -> int:
        return await self._inner.last_sequence()

    async def holder(self, claim: Claim) -> StreamId | None:
        return self._claims.get(claim)

    async def locate(self, aggregate: str, aggregate_id: str) -> StreamId | None:
        return self._streams.get((aggregate, aggregate_id))
