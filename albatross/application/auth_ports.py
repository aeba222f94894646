"""Ports of authentication and of the command side beyond the event store.

They live here rather than in :mod:`albatross.ports` because only the application's auth and
command services use them; adapters: :mod:`albatross.adapters.passwords`,
:mod:`albatross.adapters.jetstream.credentials`, :mod:`albatross.adapters.jetstream.sessions`
and, for tests, :mod:`albatross.adapters.memory_auth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from albatross.ports import Claim, StreamId


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def verify_dummy(self, password: str) -> None:
        """Take as long as :meth:`verify` without a real hash (unknown email)."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True)
class Entry:
    value: bytes
    revision: int


class KeyValue(Protocol):
    """One bucket of short-lived, shared state (sessions, throttles, idempotency keys).

    Entries expire with the bucket's TTL. ``create`` and ``update`` are compare-and-set:
    they return None when another writer got there first. Keys are ``[A-Za-z0-9_=-]``.
    Failures to reach the store raise :class:`albatross.ports.StoreUnavailable`.
    """

    async def get(self, key: str) -> Entry | None: ...

    async def create(self, key: str, value: bytes) -> int | None: ...

    async def update(self, key: str, value: bytes, revision: int) -> int | None: ...

    async def delete(self, key: str) -> None: ...


class ClaimLookup(Protocol):
    """Strongly consistent reads of the event store's uniqueness claims and stream heads."""

    async def holder(self, claim: Claim) -> StreamId | None:
        """The stream that holds ``claim``, or None when nobody does."""
        ...

    async def locate(self, aggregate: str, aggregate_id: str) -> StreamId | None:
        """The stream of an aggregate known only by its id (its scope found by the store)."""
        ...
