"""The hub fills a hole in its live feed from the stream (seen after a nats-server restart),
and replaces a live feed that ended, failed, or went silent while the stream moved on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from prometheus_client import CollectorRegistry

from albatross.services.notifier.hub import Hub
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.ports import Change


class Silent:
    """A live feed that delivers ``sequences``, then nothing ever (its consumer is gone)."""

    def __init__(self, sequences: list[int], *, fail: bool = False, end: bool = False) -> None:
        self._sequences = sequences
        self._fail = fail
        self._end = end
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        for sequence in self._sequences:
            yield Change(sequence, None)
        if self._fail:
            raise ConnectionError("consumer deleted")
        if not self._end:
            await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True


class Stream:
    """A stream whose head the test moves; each subscription is the next scripted live feed."""

    def __init__(self, head: int, lives: list[Silent]) -> None:
        self.head_at = head
        self.lives = lives
        self.subscribed_after: list[int] = []
        self.replays: list[tuple[int, int]] = []
        self.head_failures = 0

    async def head(self) -> int:
        if self.head_failures:
            self.head_failures -= 1
            raise TimeoutError("no stream leader")
        return self.head_at

    async def subscribe(self, after: int) -> Silent:
        self.subscribed_after.append(after)
        return self.lives.pop(0) if self.lives else Silent([])

    async def replay(self, after: int, until: int) -> AsyncGenerator[Change, None]:
        self.replays.append((after, until))
        for sequence in range(after + 1, min(until, self.head_at) + 1):
            yield Change(sequence, None)


def recorded(hub: Hub) -> list[int]:
    """The sequences ``hub`` is asked to dispatch, in order (redeliveries included)."""
    seen: list[int] = []
    dispatch = hub.dispatch

    def recording(change: Change) -> None:
        seen.append(change.sequence)
        dispatch(change)

    hub.dispatch = recording  # type: ignore[method-assign]
    return seen


async def _until(hub: Hub, sequence: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while hub.last_sequence < sequence:
            await asyncio.sleep(0.01)


async def test_a_silent_feed_behind_the_stream_is_caught_up_and_replaced() -> None:
    registry = CollectorRegistry()
    dead = Silent([1, 2])
    replacement = Silent([6, 7])
    stream = Stream(head=0, lives=[dead, replacement])
    hub = Hub(stream, NotifierMetrics(registry), idle_check=0.05)
    await hub.start()
    try:
        await _until(hub, 2)
        stream.head_at = 5  # three more changes stored; the dead feed never delivers them
        await _until(hub, 5)
        stream.head_at = 7
        await _until(hub, 7)
    finally:
        await hub.stop()
    assert stream.replays == [(2, 5)]
    assert stream.subscribed_after == [0, 5]
    assert dead.closed
    assert registry.get_sample_value("albatross_notifier_feed_resubscriptions_total") == 1


async def test_an_idle_feed_level_with_the_stream_is_kept() -> None:
    registry = CollectorRegistry()
    stream = Stream(head=3, lives=[Silent([])])
    hub = Hub(stream, NotifierMetrics(registry), idle_check=0.02)
    await hub.start()
    stream.head_failures = 2  # an election: the head cannot be read for a while
    await asyncio.sleep(0.3)
    assert hub.running
    await hub.stop()
    assert stream.subscribed_after == [3]
    assert stream.replays == []
    assert registry.get_sample_value("albatross_notifier_feed_resubscriptions_total") == 0


async def test_a_feed_that_fails_or_ends_is_replaced_from_the_last_change() -> None:
    failing = Silent([1, 2], fail=True)
    ending = Silent([3], end=True)
    stream = Stream(head=0, lives=[failing, ending, Silent([4])])
    hub = Hub(stream, NotifierMetrics(CollectorRegistry()), idle_check=10.0)
    await hub.start()
    try:
        await _until(hub, 4)
        assert hub.running
    finally:
        await hub.stop()
    assert stream.subscribed_after == [0, 2, 3]
    assert failing.closed
    assert ending.closed


async def test_a_failed_replay_resubscribes_where_it_stopped() -> None:
    stream = Stream(head=0, lives=[Silent([1, 5]), Silent([3, 4, 5, 6])])

    async def unavailable(after: int, until: int) -> AsyncGenerator[Change, None]:
        stream.replays.append((after, until))
        yield Change(after + 1, None)
        raise TimeoutError("no stream leader")

    stream.replay = unavailable  # type: ignore[method-assign]
    hub = Hub(stream, NotifierMetrics(CollectorRegistry()), idle_check=10.0)
    seen = recorded(hub)
    await hub.start()
    try:
        await _until(hub, 6)
    finally:
        await hub.stop()
    assert stream.replays == [(1, 4)]
    assert stream.subscribed_after == [0, 2]
    assert seen == [1, 2, 3, 4, 5, 6]


async def test_a_skipped_change_is_replayed_before_the_next_one() -> None:
    registry = CollectorRegistry()
    # The live feed skips some of the changes 1..9 stored after the hub started.
    feed = Stream(head=0, lives=[Silent([1, 2, 5, 6, 9])])
    hub = Hub(feed, NotifierMetrics(registry))
    seen = recorded(hub)
    await hub.start()
    feed.head_at = 9  # before the hub's task first runs: start() only schedules it
    try:
        async with asyncio.timeout(5):
            while hub.last_sequence < 9:
                await asyncio.sleep(0.01)
    finally:
        await hub.stop()
    assert seen == list(range(1, 10))
    assert feed.replays == [(2, 4), (6, 8)]
    assert registry.get_sample_value("albatross_notifier_feed_gaps_total") == 2
