"""In-memory adapters for fast unit tests: same promises as the real ones, no I/O.

Events go through the same codec as on JetStream, so a type that cannot round-trip fails here
too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from albatross.adapters.codec import DecodeError, EventCodec, claim_subject, event_subject
from albatross.ports import (
    AppendRequest,
    AppendResult,
    ClaimTaken,
    RecordedEvent,
    Snapshot,
    StreamId,
    UnreadableEvent,
    WrongExpectedVersion,
    check_append_key,
)


@dataclass(frozen=True)
class _Stored:
    sequence: int
    subject: str
    stream: StreamId | None
    payload: bytes


class InMemoryEventStore:
    """A single ordered log; appends are atomic because they never await mid-write."""

    def __init__(self, codec: EventCodec) -> None:
        self._codec = codec
        self._log: list[_Stored] = []
        self._heads: dict[StreamId, int] = {}
        self._positions: dict[StreamId, list[int]] = {}
        self._claims: dict[str, str] = {}
        self._appends: dict[tuple[StreamId, str | None], AppendResult] = {}

    async def append(self, request: AppendRequest) -> AppendResult:
        stream = request.stream
        check_append_key(request.idempotency_key)
        # Per stream, like JetStream's: past its de-duplication window it finds a retry only
        # among the aggregate's own appends.
        key = (stream, request.idempotency_key)
        if key in self._appends:
            return _as_duplicate(self._appends[key])
        head = self._heads.get(stream, 0)
        if request.expected_version is not None and request.expected_version != head:
            raise WrongExpectedVersion(stream, request.expected_version, head)
        claim_keys = [claim_subject(claim) for claim in request.claims]
        for claim, subject in zip(request.claims, claim_keys, strict=True):
            if subject in self._claims:
                raise ClaimTaken(claim)
        payloads = [(event_subject(stream, event),
                     self._codec.encode(event, request.occurred_at, request.actor_id),
                     event.secret) for event in request.events]
        public: int | None = None
        for subject, payload, secret in payloads:
            sequence = len(self._log) + 1
            self._log.append(_Stored(sequence, subject, stream, payload))
            self._positions.setdefault(stream, []).append(sequence)
            if not secret:
                public = sequence
        last = len(self._log)
        self._heads[stream] = last
        for subject in claim_keys:
            self._claims[subject] = stream.key
            self._log.append(_Stored(len(self._log) + 1, subject, None, b""))
        result = AppendResult(sequence=last, public_sequence=public)
        if request.idempotency_key is not None:
            self._appends[key] = result
        return result

    async def version(self, stream: StreamId) -> int:
        return self._heads.get(stream, 0)

    async def load(self, stream: StreamId, after: int = 0) -> list[RecordedEvent]:
        events = []
        for sequence in self._positions.get(stream, []):
            if sequence > after:
                record = self._record(self._log[sequence - 1])
                assert isinstance(record, RecordedEvent)
                events.append(record)
        return events

    async def read_after(self, sequence: int, limit: int) -> list[RecordedEvent | UnreadableEvent]:
        out: list[RecordedEvent | UnreadableEvent] = []
        for stored in self._log[max(sequence, 0):]:
            if stored.stream is None:
                continue
            out.append(self._record(stored))
            if len(out) >= limit:
                break
        return out

    async def last_sequence(self) -> int:
        return len(self._log)

    def inject_raw(self, subject: str, stream: StreamId, payload: bytes) -> int:
        """Store a message as another writer might have: for poison-event tests."""
        sequence = len(self._log) + 1
        self._log.append(_Stored(sequence, subject, stream, payload))
        return sequence

    def _record(self, stored: _Stored) -> RecordedEvent | UnreadableEvent:
        assert stored.stream is not None
        try:
            event, occurred_at, actor_id = self._codec.decode(stored.payload)
        except DecodeError as exc:
            return UnreadableEvent(stored.sequence, stored.subject, str(exc))
        return RecordedEvent(stored.sequence, stored.stream, event, occurred_at, actor_id)


def _as_duplicate(result: AppendResult) -> AppendResult:
    return AppendResult(result.sequence, result.public_sequence, duplicate=True)


class InMemorySnapshotStore:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}

    async def get(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    async def put(self, key: str, snapshot: Snapshot) -> None:
        current = self._snapshots.get(key)
        if current is None or current.version < snapshot.version:
            self._snapshots[key] = snapshot


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now


class CountingIds:
    def __init__(self, prefix: str = "id") -> None:
        self._prefix = prefix
        self._count = 0

    def new_id(self) -> str:
        self._count += 1
        return f"{self._prefix}-{self._count:08d}"
