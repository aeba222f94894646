"""What the notifier needs from the outside world, as Protocols (adapters: ``jetstream.py``).

Keeping them narrow lets the tests drive the hub and the sessions with real NATS or fakes, and
keeps the notifier independent of how the gateway stores sessions and API keys.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from albatross.application.principal import Principal
from albatross.application.views import ChangeMessage


class Authenticator(Protocol):
    """Turns a session token or API key into a Principal, as the gateway does.

    Implemented by :class:`albatross.application.auth.Authenticator`. ``authenticate`` raises
    :class:`albatross.ports.StoreUnavailable` when the credential store does not answer.
    """

    async def authenticate(self, secret: str) -> Principal | None: ...

    def forget(self, secret: str | None = None, *, user_id: str | None = None) -> None:
        """Drop cached answers, so that the next ``authenticate`` asks the store."""
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """One message of the changes stream: its stream sequence and its decoded content.

    ``message`` is None when the payload could not be decoded (an unknown entity, a newer
    format): the sequence still counts, nothing is sent for it.
    """

    sequence: int
    message: ChangeMessage[Any] | None


class LiveChanges(Protocol):
    """A subscription to changes as they are appended, in stream order."""

    def __aiter__(self) -> AsyncIterator[Change]: ...

    async def close(self) -> None: ...


class ChangeFeed(Protocol):
    async def head(self) -> int:
        """The sequence of the last message on the changes stream (0 when empty)."""
        ...

    async def subscribe(self, after: int) -> LiveChanges:
        """Every change with a sequence above ``after``, then live ones, without end."""
        ...

    def replay(self, after: int, until: int) -> AsyncGenerator[Change, None]:
        """The stored changes with ``after < sequence <= until``, in order (then it ends)."""
        ...


SessionRemoved = Callable[[str], Awaitable[None]]
"""Called with the key (the token's hash) of a session deleted from the sessions bucket."""

UserChanged = Callable[[str], Awaitable[None]]
"""Called with the id of a user whose aggregate got a new public event.

It may come before the event is committed to the store (a core NATS subscriber sees the
messages of an atomic batch as they are published), or for an append that is then refused.
"""


class RevocationSignals(Protocol):
    """What tells a notifier replica that a credential may have been revoked."""

    async def start(self, on_session_removed: SessionRemoved,
                    on_user_changed: UserChanged) -> None: ...

    async def stop(self) -> None: ...
