"""Login throttling shared by every replica: a compare-and-set counter in a KV bucket.

Each attempt is recorded *before* the password is checked (and forgotten again when it
succeeds), so that parallel guesses cannot all slip in before the first failure is counted.
Once ``limit`` attempts failed within ``window``, every attempt is refused, even one with the
right password, until the oldest of them leaves the window.
"""

from __future__ import annotations

import math
from datetime import timedelta

import msgspec

from albatross.application.auth_ports import KeyValue
from albatross.application.credentials import scoped_hash
from albatross.application.errors import RateLimited
from albatross.ports import Clock, StoreUnavailable

_ATTEMPTS = 8  # CAS retries under contention before giving up (then: 503, nothing decided)


class _Failures(msgspec.Struct, array_like=True):
    at: list[float]


class LoginThrottle:
    def __init__(self, kv: KeyValue, clock: Clock, *, limit: int = 5,
                 window: timedelta = timedelta(minutes=15), namespace: str = "email") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._kv = kv
        self._clock = clock
        self._limit = limit
        self._window = window.total_seconds()
        self._namespace = namespace
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(_Failures).decode

    def key_for(self, subject: str) -> str:
        return scoped_hash("login-throttle", self._namespace, subject)

    async def begin(self, subject: str) -> float:
        """Count one attempt for ``subject`` (its time is returned, for :meth:`withdraw`);
        RateLimited when it has no attempt left."""
        key = self.key_for(subject)
        for _ in range(_ATTEMPTS):
            now = self._clock.now().timestamp()
            entry = await self._kv.get(key)
            recent = self._recent(entry.value if entry else None, now)
            if len(recent) >= self._limit:
                retry_after = math.ceil(recent[-self._limit] + self._window - now)
                raise RateLimited("Too many failed logins; try again later.",
                                  retry_after=max(1, retry_after))
            value = self._encode(_Failures([*recent, now][-self._limit:]))
            if entry is None:
                written = await self._kv.create(key, value)
            else:
                written = await self._kv.update(key, value, entry.revision)
            if written is not None:
                return now
        raise StoreUnavailable("login throttle: too much contention")

    async def succeeded(self, subject: str) -> None:
        """The attempt was right: forget the recorded failures of ``subject``."""
        await self._kv.delete(self.key_for(subject))

    async def withdraw(self, subject: str, attempt: float) -> None:
        """The attempt begun at ``attempt`` was right: forget it, and only it.

        For a subject that several people's attempts share (a client address), where one
        success must not wipe the failures of the others."""
        key = self.key_for(subject)
        for _ in range(_ATTEMPTS):
            entry = await self._kv.get(key)
            times = self._recorded(entry.value if entry else None)
            if entry is None or attempt not in times:
                return
            times.remove(attempt)
            if await self._kv.update(key, self._encode(_Failures(times)),
                                     entry.revision) is not None:
                return
        raise StoreUnavailable("login throttle: too much contention")

    def _recorded(self, value: bytes | None) -> list[float]:
        if not value:
            return []
        try:
            return self._decode(value).at
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []

    def _recent(self, value: bytes | None, now: float) -> list[float]:
        return sorted(t for t in self._recorded(value) if now - self._window < t <= now + 60)
