"""The ports: what the application needs from the outside world, as typing Protocols.

Adapters (in-memory for unit tests, JetStream/PostgreSQL for real) implement them; one contract
test suite per port runs against every adapter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from albatross.application.principal import Principal
from albatross.application.views import ApiKeyView, PirepView, TenantView, UserView
from albatross.domain.events import Event
from albatross.domain.rules import PirepStatus, Role

# Ids and scopes become NATS subject tokens: anything else could inject wildcards.
_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_TOKEN = re.compile(rf"^{_ID_PATTERN}$")
_STREAM_KEY = re.compile(rf"{_ID_PATTERN}\.{_ID_PATTERN}\.{_ID_PATTERN}")
PLATFORM_SCOPE = "platform"
T = TypeVar("T")


def is_valid_token(value: str) -> bool:
    return bool(_TOKEN.fullmatch(value))


# An append's idempotency key goes into a NATS header (``Nats-Msg-Id``).
_APPEND_KEY = re.compile(r"[A-Za-z0-9_=-]{1,100}")


def check_append_key(key: str | None) -> None:
    """ValueError unless ``key`` is None or 1-100 characters of ``[A-Za-z0-9_=-]``."""
    if key is not None and not _APPEND_KEY.fullmatch(key):
        raise ValueError("idempotency keys are 1-100 characters of [A-Za-z0-9_=-]")


class StreamId(msgspec.Struct, frozen=True):
    """One aggregate's event stream: ``<scope>.<aggregate>.<aggregate_id>``.

    ``scope`` is the owning tenant's id, or ``platform`` for what belongs to no tenant.
    """

    aggregate: str
    aggregate_id: str
    scope: str = PLATFORM_SCOPE

    def __post_init__(self) -> None:
        # One match for the three tokens (every command builds a StreamId); which one is
        # wrong is worked out only for the error. join, unlike an f-string, refuses a
        # non-string part as the per-token check did.
        if _STREAM_KEY.fullmatch(".".join((self.aggregate, self.aggregate_id, self.scope))):
            return
        for name, value in (("aggregate", self.aggregate), ("aggregate_id", self.aggregate_id),
                            ("scope", self.scope)):
            if not is_valid_token(value):
                raise InvalidStreamId(f"{name} {value!r} is not a valid id")

    @property
    def key(self) -> str:
        return f"{self.scope}.{self.aggregate}.{self.aggregate_id}"


class Claim(msgspec.Struct, frozen=True):
    """A platform-wide unique value (a normalised email, a tenant ICAO) held by one stream."""

    kind: str
    value: str


class AppendRequest(msgspec.Struct, frozen=True):
    """Events for one aggregate that land together, or not at all.

    ``expected_version``: ``None`` skips the check, ``0`` means the stream must be new,
    any other value must equal the stream's current version.
    """

    stream: StreamId
    events: Sequence[Event]
    expected_version: int | None
    occurred_at: datetime
    actor_id: str | None = None
    idempotency_key: str | None = None
    claims: Sequence[Claim] = ()


class AppendResult(msgspec.Struct, frozen=True):
    """Store-wide sequences of what an append wrote.

    ``sequence`` is the last event's: the stream's new version. ``public_sequence`` is the last
    public (non-credential) event's, the position read models must reach to reflect the
    append; ``None`` when the append held credentials only.
    """

    sequence: int
    public_sequence: int | None
    duplicate: bool = False


class RecordedEvent(msgspec.Struct, frozen=True):
    sequence: int
    stream: StreamId
    event: Event
    occurred_at: datetime
    actor_id: str | None


class UnreadableEvent(msgspec.Struct, frozen=True):
    """A stored message that does not decode (unknown type, bad JSON, bad subject)."""

    sequence: int
    subject: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """An aggregate's encoded state as of ``version``; a cache, never the source of truth."""

    version: int
    state: bytes = field(repr=False)


class EventStoreError(Exception):
    """Base of the event store's refusals."""


class InvalidStreamId(EventStoreError, ValueError):
    pass


class WrongExpectedVersion(EventStoreError):
    def __init__(self, stream: StreamId, expected: int | None, actual: int | None = None) -> None:
        super().__init__(f"{stream.key}: expected version {expected}, store has {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class ClaimTaken(EventStoreError):
    def __init__(self, claim: Claim) -> None:
        super().__init__(f"{claim.kind} is already taken")
        self.claim = claim


class StoreUnavailable(EventStoreError):
    """The store could not be reached: nothing was written."""


class OutcomeUnknown(EventStoreError):
    """A write (an append, a key-value write) reached the store, whose answer never came: it
    may or may not have landed.

    For an append, raised only once the store stayed silent past the resolution deadline; a
    write that never left the client is :class:`StoreUnavailable` instead.
    """


class EventStore(Protocol):
    async def append(self, request: AppendRequest) -> AppendResult:
        """Append atomically; idempotent per ``idempotency_key`` on the same stream.

        Raises WrongExpectedVersion, ClaimTaken, StoreUnavailable or OutcomeUnknown.
        """
        ...

    async def version(self, stream: StreamId) -> int:
        """The sequence of the stream's last event, 0 when it has none."""
        ...

    async def load(self, stream: StreamId, after: int = 0) -> list[RecordedEvent]:
        """The stream's events with a sequence above ``after``, oldest first."""
        ...

    async def read_after(self, sequence: int, limit: int) -> list[RecordedEvent | UnreadableEvent]:
        """Up to ``limit`` events of every stream after ``sequence``, in store order."""
        ...

    async def last_sequence(self) -> int:
        ...


class SnapshotStore(Protocol):
    async def get(self, key: str) -> Snapshot | None:
        ...

    async def put(self, key: str, snapshot: Snapshot) -> None:
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str:
        ...


# Read side ------------------------------------------------------------------------------------

class InvalidCursor(ValueError):
    """A pagination cursor that this server did not issue (or for another list)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryItem:
    sequence: int
    type: str
    occurred_at: datetime
    actor_id: str | None
    data: dict[str, Any]


class ReadModels(Protocol):
    """The query side. Every method is scoped by the principal inside the query itself.

    ``get_*`` return None for what does not exist *or* may not be seen (the API answers 404
    for both). Lists are keyset-paginated, newest first.
    """

    async def get_tenant(self, principal: Principal, tenant_id: str) -> TenantView | None: ...

    async def list_tenants(self, principal: Principal, *, limit: int,
                           cursor: str | None) -> Page[TenantView]: ...

    async def get_user(self, principal: Principal, user_id: str) -> UserView | None: ...

    async def list_users(self, principal: Principal, *, tenant_id: str | None, role: Role | None,
                         limit: int, cursor: str | None) -> Page[UserView]: ...

    async def list_api_keys(self, principal: Principal, user_id: str, *, limit: int,
                            cursor: str | None) -> Page[ApiKeyView]: ...

    async def get_pirep(self, principal: Principal, pirep_id: str, *,
                        fresh: bool = False) -> PirepView | None:
        """``fresh``: not from an in-memory copy, if the adapter keeps one (the client sent
        ``Cache-Control: no-cache``)."""

    async def list_pireps(self, principal: Principal, *, status: PirepStatus | None,
                          pilot_id: str | None, tenant_id: str | None, limit: int,
                          cursor: str | None) -> Page[PirepView]: ...

    async def pirep_history(self, principal: Principal,
                            pirep_id: str) -> list[HistoryItem] | None: ...

    async def checkpoint(self) -> int:
        """The last event-store sequence the read models reflect."""
        ...

    async def wait_for(self, sequence: int, timeout: float) -> bool:
        """Wait (without polling) until ``checkpoint() >= sequence``; False on timeout."""
        ...
