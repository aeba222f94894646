"""A replay whose consumer delivers nothing: an error while the stream still holds the
changes (a stalled replica), a normal end when they aged out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from albatross.services.notifier.jetstream import JetStreamChangeFeed, ReplayStalled


@dataclass
class State:
    messages: int
    first_seq: int


@dataclass
class Info:
    state: State


class SilentSubscription:
    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        raise NatsTimeoutError

    async def unsubscribe(self) -> None:
        return None


class Js:
    def __init__(self, state: State) -> None:
        self.state = state
        self.consumers = 0

    async def pull_subscribe(self, subject: str, **_: Any) -> SilentSubscription:
        self.consumers += 1
        return SilentSubscription()

    async def stream_info(self, stream: str) -> Info:
        return Info(self.state)

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        return True


async def replayed(state: State, after: int, until: int) -> list[int]:
    js = Js(state)
    feed = JetStreamChangeFeed(js, "ALBATROSS_CHANGES", replay_timeout=0.01)  # type: ignore[arg-type]
    return [change.sequence async for change in feed.replay(after, until)]


async def test_a_silent_consumer_over_stored_changes_is_an_error() -> None:
    with pytest.raises(ReplayStalled, match=r"11\.\.20"):
        await replayed(State(messages=20, first_seq=1), after=10, until=20)


@pytest.mark.parametrize("state", [State(messages=0, first_seq=21),
                                   State(messages=3, first_seq=25)])
async def test_changes_that_aged_out_end_the_replay(state: State) -> None:
    assert await replayed(state, after=10, until=20) == []
