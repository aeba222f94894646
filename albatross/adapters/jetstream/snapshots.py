"""Aggregate snapshots in a JetStream key-value bucket (one message per key).

Puts are fire-and-forget core publishes: a snapshot is a cache that the event store's version
check keeps honest, so losing one costs a longer load, never a wrong one, and a command does
not wait for a second acknowledgement (and fsync) to answer.
"""

from __future__ import annotations

import msgspec
from nats.aio.client import Client as NATS

from albatross.adapters.jetstream.direct import DirectGet
from albatross.adapters.jetstream.requests import Requests
from albatross.ports import Snapshot


class _Wire(msgspec.Struct, array_like=True):
    version: int
    state: bytes


class JetStreamSnapshotStore:
    def __init__(self, nc: NATS, bucket: str, *, request_timeout: float = 2.0) -> None:
        self._nc = nc
        self._prefix = f"$KV.{bucket}."
        self._direct = DirectGet(Requests(nc), f"KV_{bucket}", timeout=request_timeout)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(_Wire).decode

    async def get(self, key: str) -> Snapshot | None:
        message = await self._direct.last_on(self._prefix + key)
        if message is None or not message.data:
            return None
        try:
            wire = self._decode(message.data)
        except msgspec.DecodeError:
            return None
        return Snapshot(version=wire.version, state=wire.state)

    async def put(self, key: str, snapshot: Snapshot) -> None:
        await self._nc.publish(self._prefix + key,
                               self._encode(_Wire(snapshot.version, snapshot.state)))
