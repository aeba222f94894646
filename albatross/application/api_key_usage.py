"""``last_used_at`` of API keys without a write per request.

Each gateway notes the latest use of every key in memory and appends one ``ApiKeyUsed`` per
key and flush (every ``interval`` seconds, and once more on shutdown). A key used 10,000
times in a minute costs one event; a use noted but not flushed when a process dies is lost,
which only makes ``last_used_at`` older than the truth by at most one interval.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from albatross.application.principal import Principal
from albatross.application.repository import AggregateRepository
from albatross.domain import users
from albatross.domain.errors import DomainError
from albatross.observability import get_logger
from albatross.ports import PLATFORM_SCOPE, StreamId, WrongExpectedVersion


class _KeyOf(msgspec.Struct, frozen=True):
    """Whose key, in which scope, was used: built on every authenticated request, so a
    Struct (built, hashed and compared in C; a dataclass did all three in Python)."""

    user_id: str
    scope: str
    key_id: str


class ApiKeyUsage:
    def __init__(self, users_repo: AggregateRepository[users.User]) -> None:
        self._users = users_repo
        self._latest: dict[_KeyOf, datetime] = {}
        self._log = get_logger("api_key_usage")

    def note(self, principal: Principal, when: datetime) -> None:
        if principal.api_key_id is None:
            return
        key = _KeyOf(principal.user_id, principal.tenant_id or PLATFORM_SCOPE,
                     principal.api_key_id)
        previous = self._latest.get(key)
        if previous is None or when > previous:
            self._latest[key] = when

    @property
    def pending(self) -> int:
        return len(self._latest)

    async def flush(self) -> int:
        """Append what was noted; keep what could not be written for the next flush."""
        batch, self._latest = self._latest, {}
        written = 0
        for key, used_at in batch.items():
            cmd = users.RecordApiKeyUse(key_id=key.key_id, used_at=used_at)
            stream = StreamId("user", key.user_id, key.scope)
            try:
                written += await self._record(stream, cmd, key.user_id)
            except DomainError:
                continue  # the user is gone: nothing to record
            except Exception as exc:
                # A background flush must not die: keep the use for the next one.
                self.note_again(key, used_at)
                self._log.warning("API key use not recorded yet", key_id=key.key_id,
                                  error=type(exc).__name__)
        return written

    async def _record(self, stream: StreamId, cmd: users.RecordApiKeyUse, user_id: str) -> int:
        for _ in range(5):
            loaded = await self._users.load(stream)
            events = users.decide_record_api_key_use(loaded.state, cmd)
            if not events:
                return 0
            try:
                await self._users.append(loaded, events, occurred_at=cmd.used_at,
                                         actor_id=user_id)
                return 1
            except WrongExpectedVersion:
                continue  # a command on the same user won the race: decide again
        return 0

    def note_again(self, key: _KeyOf, used_at: datetime) -> None:
        previous = self._latest.get(key)
        if previous is None or used_at > previous:
            self._latest[key] = used_at
