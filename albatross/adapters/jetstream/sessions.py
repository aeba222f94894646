"""A JetStream KV bucket behind the :class:`albatross.application.auth_ports.KeyValue` port.

Used for sessions (keyed by the SHA-256 of the token; the bucket's TTL is the session TTL),
login throttles and PIREP idempotency keys. Every replica reads the same bucket with a Direct
Get, so a logout is seen everywhere at once. NATS failures become ``StoreUnavailable``, but
for a write that was sent and never answered (a timeout, a connection lost meanwhile), which
may have landed: ``OutcomeUnknown``.

No write is handed to the client while it is between connections: nats-py would buffer it
and send it on reconnection, so a write answered 503 (nothing written) would take effect
after all (a late logout, a session nobody holds the token of).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue as NatsKeyValue

from albatross.adapters.jetstream.requests import NotConnected, ensure_connected
from albatross.application.auth_ports import Entry
from albatross.ports import OutcomeUnknown, StoreUnavailable

_UNAVAILABLE = (NoRespondersError, NatsTimeoutError, asyncio.TimeoutError, ConnectionClosedError)
_UNANSWERED = (NatsTimeoutError, asyncio.TimeoutError, ConnectionClosedError)


class JetStreamKeyValue:
    def __init__(self, kv: NatsKeyValue, nc: NATS) -> None:
        self._kv = kv
        self._nc = nc

    @classmethod
    async def open(cls, nc: NATS, bucket: str) -> JetStreamKeyValue:
        js: JetStreamContext = nc.jetstream()
        return cls(await js.key_value(bucket), nc)

    def _sendable(self, operation: str) -> None:
        try:
            ensure_connected(self._nc)
        except NotConnected as exc:
            raise StoreUnavailable(f"key-value {operation}: {exc}") from exc

    async def get(self, key: str) -> Entry | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"key-value get failed: {exc!r}") from exc
        return Entry(value=entry.value or b"", revision=int(entry.revision or 0))

    async def create(self, key: str, value: bytes) -> int | None:
        self._sendable("create")
        with _write_failures("create"):
            try:
                return int(await self._kv.create(key, value))
            except KeyWrongLastSequenceError:
                return None

    async def update(self, key: str, value: bytes, revision: int) -> int | None:
        self._sendable("update")
        with _write_failures("update"):
            try:
                return int(await self._kv.update(key, value, last=revision))
            except KeyWrongLastSequenceError:
                return None

    async def delete(self, key: str) -> None:
        self._sendable("delete")
        with _write_failures("delete"):
            await self._kv.delete(key)


@contextlib.contextmanager
def _write_failures(operation: str) -> Iterator[None]:
    """A write's NATS failures as the port's: sent and not answered, it may have landed."""
    try:
        yield
    except _UNANSWERED as exc:
        raise OutcomeUnknown(f"key-value {operation} sent and not answered, it may have "
                             f"landed: {exc!r}") from exc
    except NoRespondersError as exc:
        raise StoreUnavailable(f"key-value {operation} failed: {exc!r}") from exc
    except APIError as exc:
        raise _unavailable_or(exc) from exc


def _unavailable_or(exc: APIError) -> Exception:
    if exc.code is not None and exc.code >= 500:
        return StoreUnavailable(f"key-value store refused: {exc}")
    return exc
