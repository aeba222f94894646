"""The per-process hub: one live subscription to the changes stream, fanned out to sockets.

Every notifier replica runs its own hub with its own (ordered, ephemeral) consumer, so each
replica receives every change; there are no competing consumers. The hub also indexes the
sockets by user and by credential so that a revocation finds them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from albatross.observability import get_logger
from albatross.services.notifier.fanout import Outgoing
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.ports import Change, ChangeFeed, LiveChanges
from albatross.services.notifier.session import Session

_log = get_logger("albatross.notifier.hub")


class Hub:
    def __init__(self, feed: ChangeFeed, metrics: NotifierMetrics, *,
                 idle_check: float = 1.0) -> None:
        self._feed = feed
        # How long the live feed may be silent before the stream's head is checked.
        self._idle_check = idle_check
        self._metrics = metrics
        self._sessions: set[Session] = set()
        self._by_user: dict[str, set[Session]] = {}
        self._by_secret: dict[str, set[Session]] = {}
        self._last_sequence = 0
        self._live: LiveChanges | None = None
        self._task: asyncio.Task[None] | None = None
        self._sent = metrics.messages_sent.labels(type="change")

    @property
    def last_sequence(self) -> int:
        """The last change sequence this hub has dispatched: the ``ready`` sequence."""
        return self._last_sequence

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Subscribe from the stream's current head; returns once subscribed."""
        head = await self._feed.head()
        self._last_sequence = head
        self._metrics.change_sequence.set(head)
        self._live = await self._feed.subscribe(after=head)
        self._task = asyncio.create_task(self._run(), name="notifier.hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            await self._live.close()

    async def _run(self) -> None:
        try:
            while True:
                await self._follow()
                await self._resubscribe()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Without its feed the process cannot keep its promise: /readyz says so.
            _log.exception("changes feed failed")
            raise

    async def _follow(self) -> None:
        """Dispatch live changes until the live feed ends or is found behind the stream.

        The live feed is read by a pump task into a queue so that waiting for the next change
        can time out without cancelling (and so ending) the feed's iterator.
        """
        assert self._live is not None
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        pump = asyncio.create_task(_pump(self._live, queue), name="notifier.hub.pump")
        try:
            while True:
                try:
                    async with asyncio.timeout(self._idle_check):
                        change = await queue.get()
                except TimeoutError:
                    if await self._caught_up_while_idle():
                        return
                    continue
                if change is None:
                    return
                if change.sequence > self._last_sequence + 1 and not await self._fill_gap(
                        change.sequence - 1):
                    return  # the new live feed delivers ``change`` again
                self.dispatch(change)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _caught_up_while_idle(self) -> bool:
        """The live feed has said nothing for a while: did the stream move on without it?

        A feed that lost its consumer (the node holding it died, and recreating it failed
        while the cluster elected a leader) can stay silent for good; a skipped change at
        the end of a burst has no later change to reveal it. Either way the stream's head
        tells. True when the changes were replayed and the live feed should be replaced.
        """
        try:
            head = await self._feed.head()
        except Exception as error:  # unavailable during an election: try again later
            _log.warning("changes stream head unavailable", error=repr(error))
            return False
        if head <= self._last_sequence:
            return False
        await self._fill_gap(head)
        return True  # replaced even when the replay failed: the new feed starts after it

    async def _resubscribe(self) -> None:
        """Replace the live feed with one that starts after the last dispatched change."""
        if self._live is not None:
            await self._live.close()
            self._live = None
        self._metrics.feed_resubscriptions.inc()
        while True:
            try:
                self._live = await self._feed.subscribe(after=self._last_sequence)
            except Exception as error:
                _log.warning("changes feed resubscription failed; retrying",
                             error=repr(error), after=self._last_sequence)
                await asyncio.sleep(self._idle_check)
                continue
            _log.info("changes feed resubscribed", after=self._last_sequence)
            return

    async def _fill_gap(self, through: int) -> bool:
        """Replay the changes the live feed skipped, so that no socket misses one.

        The changes stream numbers its messages without holes, so a jump is a loss: seen
        after a nats-server restart, when the ordered consumer was recreated past a change.
        False when the replay failed part way (the stream unavailable).
        """
        missing_from = self._last_sequence + 1
        _log.warning("live changes feed skipped changes; replaying them",
                     first=missing_from, last=through)
        self._metrics.feed_gaps.inc()
        try:
            async for missed in self._feed.replay(self._last_sequence, through):
                self.dispatch(missed)
        except Exception as error:
            _log.warning("replay of skipped changes failed", error=repr(error),
                         reached=self._last_sequence)
            return False
        return True

    def dispatch(self, change: Change) -> None:
        """Hand one change to every socket (synchronously: sockets never make it wait)."""
        if change.sequence <= self._last_sequence:
            return  # a redelivery after a consumer reset
        self._last_sequence = change.sequence
        self._metrics.changes_received.inc()
        self._metrics.change_sequence.set(change.sequence)
        if change.message is None:
            self._metrics.changes_undecodable.inc()
            _log.warning("undecodable change skipped", sequence=change.sequence)
            return
        outgoing = Outgoing(change.message)
        sent = 0
        for session in list(self._sessions):
            sent += session.offer(outgoing)
        if sent:
            self._sent.inc(sent)  # once per change, not once per socket (it adds up)

    # Sockets ----------------------------------------------------------------------------------

    def register(self, session: Session) -> None:
        """Start sending live changes to ``session`` from the current sequence on.

        Binding the ready sequence and joining the fan-out happen in one synchronous step, so
        no change falls between the two.
        """
        session.bind(self._last_sequence)
        self._sessions.add(session)
        self._by_user.setdefault(session.principal.user_id, set()).add(session)
        self._by_secret.setdefault(session.secret_hash, set()).add(session)
        self._metrics.sockets_authenticated.set(len(self._sessions))

    def unregister(self, session: Session) -> None:
        self._sessions.discard(session)
        _discard(self._by_user, session.principal.user_id, session)
        _discard(self._by_secret, session.secret_hash, session)
        self._metrics.sockets_authenticated.set(len(self._sessions))

    def sessions(self) -> list[Session]:
        return list(self._sessions)

    def sessions_of_user(self, user_id: str) -> list[Session]:
        return list(self._by_user.get(user_id, ()))

    def sessions_with_secret(self, secret_hash: str) -> list[Session]:
        return list(self._by_secret.get(secret_hash, ()))

    async def close_all(self, code: int, reason: str) -> None:
        sessions = self.sessions()
        for session in sessions:
            session.close(code, reason)
        await wait_closed(sessions)


async def _pump(live: LiveChanges, queue: asyncio.Queue[Change | None]) -> None:
    """Move the live feed into ``queue``; None when it ends or fails (it is then replaced)."""
    try:
        async for change in live:
            queue.put_nowait(change)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        _log.warning("live changes feed failed; resubscribing", error=repr(error))
    queue.put_nowait(None)


async def wait_closed(sessions: Iterable[Session]) -> None:
    await asyncio.gather(*(s.wait_closed() for s in sessions), return_exceptions=True)


def _discard(index: dict[str, set[Session]], key: str, session: Session) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(session)
        if not members:
            del index[key]
