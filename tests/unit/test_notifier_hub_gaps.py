"""The hub fills a hole in its live feed from the stream (seen after a nats-server restart)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from prometheus_client import CollectorRegistry

from albatross.services.notifier.hub import Hub
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.ports import Change


class Live:
    def __init__(self, sequences: list[int]) -> None:
        self._sequences = sequences

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        for sequence in self._sequences:
            yield Change(sequence, None)
        await asyncio.Event().wait()  # live feeds never end

    async def close(self) -> None:
        return None


class Feed:
    """A stream holding changes 1..10; the live feed skips some of them."""

    def __init__(self, live: list[int]) -> None:
        self.live = live
        self.replays: list[tuple[int, int]] = []

    async def head(self) -> int:
        return 0

    async def subscribe(self, after: int) -> Live:
        return Live(self.live)

    async def replay(self, after: int, until: int) -> AsyncGenerator[Change, None]:
        self.replays.append((after, until))
        for sequence in range(after + 1, until + 1):
            yield Change(sequence, None)


async def test_a_skipped_change_is_replayed_before_the_next_one() -> None:
    registry = CollectorRegistry()
    feed = Feed([1, 2, 5, 6, 9])
    hub = Hub(feed, NotifierMetrics(registry))
    seen: list[int] = []
    dispatch = hub.dispatch

    def recording(change: Change) -> None:
        seen.append(change.sequence)
        dispatch(change)

    hub.dispatch = recording  # type: ignore[method-assign]
    await hub.start()
    try:
        async with asyncio.timeout(5):
            while hub.last_sequence < 9:
                await asyncio.sleep(0.01)
    finally:
        await hub.stop()
    assert seen == list(range(1, 10))
    assert feed.replays == [(2, 4), (6, 8)]
    assert registry.get_sample_value("albatross_notifier_feed_gaps_total") == 2
