"""``ensure_stream`` on a cluster that just formed: placement refusals are waited out."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from albatross.adapters.jetstream.topology import NO_SUITABLE_PEERS, ensure_stream


class FormingCluster:
    """The JetStream API of a cluster whose meta leader refuses placement ``refusals`` times."""

    def __init__(self, refusals: int, err_code: int = NO_SUITABLE_PEERS) -> None:
        self.refusals = refusals
        self.err_code = err_code
        self.created: list[StreamConfig] = []
        self.attempts = 0

    async def stream_info(self, name: str) -> Any:
        raise NotFoundError

    async def add_stream(self, config: StreamConfig) -> None:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise BadRequestError(code=400, err_code=self.err_code,
                                  description="no suitable peers for placement, peer offline")
        self.created.append(config)

    async def update_stream(self, config: StreamConfig) -> None:
        raise AssertionError("nothing to update: the stream does not exist")


CONFIG = StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3)


async def test_placement_refusals_of_a_forming_cluster_are_retried() -> None:
    cluster = FormingCluster(refusals=3)
    await ensure_stream(cluster, CONFIG, placement_wait=5.0)  # type: ignore[arg-type]
    assert cluster.attempts == 4
    assert cluster.created == [CONFIG]


async def test_a_cluster_that_never_places_fails_after_the_wait() -> None:
    cluster = FormingCluster(refusals=1000)
    with pytest.raises(BadRequestError) as refused:
        await ensure_stream(cluster, CONFIG, placement_wait=0.5)  # type: ignore[arg-type]
    assert refused.value.err_code == NO_SUITABLE_PEERS
    assert 2 <= cluster.attempts <= 5
    assert cluster.created == []


async def test_other_refusals_are_not_retried() -> None:
    cluster = FormingCluster(refusals=1, err_code=10052)  # invalid stream config
    with pytest.raises(BadRequestError):
        await ensure_stream(cluster, CONFIG, placement_wait=5.0)  # type: ignore[arg-type]
    assert cluster.attempts == 1
