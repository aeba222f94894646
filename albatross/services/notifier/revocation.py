"""Closing sockets whose credential was revoked (4401), on every replica, within a second.

Signals (:class:`~albatross.services.notifier.ports.RevocationSignals`), which every replica
receives:

* a session deleted from the sessions bucket (logout): its sockets close at once;
* any public event on a user's aggregate (``ApiKeyRevoked``, ``PasswordChanged``, ...): that
  user's sockets are re-authenticated, bypassing the authenticator's cache, at once and again
  0.1, 0.3 and 0.7 s later (the signal may precede the event's commit). A password change
  revokes the user's other sessions (not the one that changed it, nor API keys), and asking
  the authenticator is the only way to get exactly that right without reading credentials.

Safety nets: every socket is re-authenticated every ``interval`` seconds (this also ends
expired sessions), and a socket admitted just after a signal about its user gets that
schedule from its admission (its authentication may have read the state just before the
change committed), one admitted just after its session's removal is re-checked at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from albatross.observability import get_logger
from albatross.ports import StoreUnavailable
from albatross.services.notifier.hub import Hub
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.ports import Authenticator, RevocationSignals
from albatross.services.notifier.protocol import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED
from albatross.services.notifier.session import Session

_log = get_logger("albatross.notifier.revocation")

REVOKED = "credential revoked"
MUST_CHANGE = "password change required"


def verdict(principal_ok: bool, must_change_password: bool) -> tuple[int, str] | None:
    """The close code and reason for a re-authentication result, or None to keep the socket."""
    if not principal_ok:
        return CLOSE_UNAUTHORIZED, REVOKED
    if must_change_password:
        return CLOSE_FORBIDDEN, MUST_CHANGE
    return None


class RevocationWatcher:
    def __init__(self, hub: Hub, authenticator: Authenticator, signals: RevocationSignals,
                 metrics: NotifierMetrics, *, interval: float = 30.0, concurrency: int = 8,
                 recent_window: float = 5.0,
                 recheck_delays: tuple[float, ...] = (0.0, 0.1, 0.3, 0.7),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        self._auth = authenticator
        self._signals = signals
        self._metrics = metrics
        self._interval = interval
        self._limit = asyncio.Semaphore(concurrency)
        self._recent_window = recent_window
        self._monotonic = monotonic
        self._recent_users: dict[str, float] = {}
        self._recent_secrets: dict[str, float] = {}
        self._recheck_delays = recheck_delays
        self._user_checks: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._periodic: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._signals.start(self.session_removed, self.user_changed)
        self._periodic = asyncio.create_task(self._every_interval(),
                                             name="notifier.revalidate")

    async def stop(self) -> None:
        await self._signals.stop()
        tasks = [t for t in (self._periodic, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Signals ----------------------------------------------------------------------------------

    async def session_removed(self, secret_hash: str) -> None:
        self._metrics.revocations.labels(signal="session_removed").inc()
        self._remember(self._recent_secrets, secret_hash)
        for session in self._hub.sessions_with_secret(secret_hash):
            self._auth.forget(session.secret)
            session.close(CLOSE_UNAUTHORIZED, REVOKED)

    async def user_changed(self, user_id: str) -> None:
        self._metrics.revocations.labels(signal="user_changed").inc()
        self._remember(self._recent_users, user_id)
        if self._hub.sessions_of_user(user_id):
            self._schedule_user_checks(user_id)

    def _schedule_user_checks(self, user_id: str) -> None:
        previous = self._user_checks.pop(user_id, None)
        if previous is not None:
            previous.cancel()  # the new schedule covers it
        self._user_checks[user_id] = self._spawn(self._recheck_user(user_id))

    async def _recheck_user(self, user_id: str) -> None:
        # The signal may precede the commit of the event that caused it (an atomic batch is
        # visible to subscribers as it is published): check now, then a few times more
        # within the one-second promise. Typical commits take milliseconds.
        try:
            waited = 0.0
            for delay in self._recheck_delays:
                await asyncio.sleep(max(0.0, delay - waited))
                waited = delay
                sessions = self._hub.sessions_of_user(user_id)
                if not sessions:
                    return
                self._auth.forget(user_id=user_id)
                await self.revalidate(sessions)
        finally:
            if self._user_checks.get(user_id) is asyncio.current_task():
                del self._user_checks[user_id]

    def admitted(self, session: Session) -> None:
        """Called for each new socket: re-check it if a signal about it just came in."""
        now = self._monotonic()
        user_id = session.principal.user_id
        if now - self._recent_users.get(user_id, -1e18) <= self._recent_window:
            # Its authentication may have read the user before the signalled change committed,
            # and the commit may still be on its way: the full schedule, from now.
            self._auth.forget(session.secret)
            self._schedule_user_checks(user_id)
        elif now - self._recent_secrets.get(session.secret_hash, -1e18) <= self._recent_window:
            self._auth.forget(session.secret)
            self._spawn(self.revalidate([session]))

    # Re-authentication ------------------------------------------------------------------------

    async def revalidate_all(self) -> None:
        await self.revalidate(self._hub.sessions())

    async def revalidate(self, sessions: Iterable[Session]) -> None:
        by_secret: dict[str, list[Session]] = {}
        for session in sessions:
            if not session.closed:
                by_secret.setdefault(session.secret, []).append(session)
        await asyncio.gather(*(self._check(secret, group)
                               for secret, group in by_secret.items()))

    async def _check(self, secret: str, sessions: list[Session]) -> None:
        async with self._limit:
            try:
                principal = await self._auth.authenticate(secret)
            except StoreUnavailable as exc:
                # Nothing is known: keep the sockets; the next signal or round decides.
                _log.warning("re-authentication unavailable", error=str(exc))
                return
            except Exception:
                _log.exception("re-authentication failed")
                return
        outcome = verdict(principal is not None,
                          principal is not None and principal.must_change_password)
        if outcome is None:
            return
        for session in sessions:
            session.close(*outcome)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._forget_old()
            try:
                await self.revalidate_all()
            except Exception:
                _log.exception("periodic re-authentication failed")

    # Helpers ----------------------------------------------------------------------------------

    def _remember(self, recent: dict[str, float], key: str) -> None:
        recent[key] = self._monotonic()
        if len(recent) > 10_000:
            self._forget_old()

    def _forget_old(self) -> None:
        horizon = self._monotonic() - self._recent_window
        for recent in (self._recent_users, self._recent_secrets):
            for key in [k for k, at in recent.items() if at < horizon]:
                del recent[key]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

