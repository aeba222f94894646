"""Answers of one read kept in memory while the read models have not changed since.

The projector notifies every commit (``pg_notify`` in the committing transaction, see
:mod:`albatross.adapters.postgres.listener`); the listener counts those notifications and its
reconnections as a *generation*. An answer is stored with the generation that was current
before its query started, and served only while that generation still is: any later
notification means some row may have changed, and empties the cache. The read side stays as
consistent as without the cache: an answer is never older than the last notification the
gateway has processed, which is exactly what ``Albatross-Min-Sequence`` waits for; ``max_age``
bounds what a listener that misses notifications without noticing (a half-open connection)
could serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ReadCache(Generic[V]):
    def __init__(self, *, max_age: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._generation: int | None = None
        self._entries: dict[Hashable, tuple[float, V]] = {}

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, generation: int, key: Hashable) -> tuple[bool, V | None]:
        """``(True, answer)`` for an answer stored in ``generation`` and young enough."""
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation
            return False, None
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[0] > self._max_age:
            return False, None
        return True, entry[1]

    def put(self, generation: int, key: Hashable, answer: V) -> None:
        """Keep ``answer``, read by a query that started in ``generation``; an answer whose
        query overlapped a change (the generation moved on meanwhile) is not kept."""
        if generation != self._generation or not self.enabled:
            return
        if key not in self._entries and len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest stored
        self._entries[key] = (self._clock(), answer)
