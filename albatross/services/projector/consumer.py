"""The projector's durable pull consumer on ``albatross.events.>``, positioned by the checkpoint.

The PostgreSQL checkpoint, not the consumer's ack state, is the truth about what was applied.
So whenever this replica starts leading, after any error, and whenever a delivery looks out of
order, the consumer is *reset* to ``checkpoint + 1`` (``$JS.API.CONSUMER.RESET``; delete and
re-create on servers without it). Between resets, first deliveries carry consecutive consumer
sequences: a gap means deliveries were lost (a dropped connection mid-fetch) and a later event
would otherwise be applied before them, after which the checkpoint would hide them for ever.
A redelivery above the checkpoint is the same symptom. Redeliveries at or below the checkpoint
are harmless duplicates: the applier skips them and the ack covers them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from albatross.adapters.codec import EVENTS, DecodeError, EventCodec, stream_of
from albatross.adapters.postgres.applier import Incoming, Poison
from albatross.ports import RecordedEvent

DURABLE = "albatross-projector"
ACK_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Delivery:
    """One fetched batch: what to apply, and whether the deliveries were in order."""

    messages: list[Msg]
    records: list[Incoming]
    in_order: bool


def decode_message(codec: EventCodec, sequence: int, msg: Msg) -> Incoming:
    """The recorded event a message holds, or a poison record saying why it holds none."""
    try:
        stream = stream_of(msg.subject)
        event, occurred_at, actor_id = codec.decode(msg.data)
    except (DecodeError, ValueError) as exc:
        return Poison(sequence, msg.subject, str(exc), bytes(msg.data))
    return RecordedEvent(sequence, stream, event, occurred_at, actor_id)


class EventConsumer:
    def __init__(self, nc: NATS, codec: EventCodec, stream: str, *, durable: str = DURABLE,
                 batch: int = 500, fetch_timeout: float = 1.0,
                 request_timeout: float = 5.0) -> None:
        self._js: JetStreamContext = nc.jetstream(timeout=request_timeout)
        self._codec = codec
        self._stream = stream
        self._durable = durable
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._next_consumer_seq = 1

    def _config(self, start: int | None = None) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self._durable,
            deliver_policy=(DeliverPolicy.ALL if start is None
                            else DeliverPolicy.BY_START_SEQUENCE),
            opt_start_seq=start,
            ack_policy=AckPolicy.ALL,
            ack_wait=ACK_WAIT_SECONDS,
            max_deliver=-1,
            filter_subject=f"{EVENTS}.>",
            max_ack_pending=max(4 * self._batch, 1000),
        )

    async def position_at(self, checkpoint: int) -> None:
        """Make the next delivery the first event after ``checkpoint``."""
        await self._close_subscription()
        try:
            await self._js.consumer_info(self._stream, self._durable)
        except NotFoundError:
            await self._js.add_consumer(self._stream, self._config())
        try:
            await self._js.reset_consumer(self._stream, self._durable, seq=checkpoint + 1)
        except APIError:
            # A server without consumer reset (before 2.14), or a config it refuses: start over.
            await self._js.delete_consumer(self._stream, self._durable)
            await self._js.add_consumer(self._stream, self._config(start=checkpoint + 1))
        self._subscription = await self._js.pull_subscribe_bind(
            self._durable, stream=self._stream)
        self._next_consumer_seq = 1

    async def fetch(self) -> list[Msg]:
        """Up to one batch; [] when nothing arrived within the fetch timeout."""
        if self._subscription is None:
            raise RuntimeError("position_at() first")
        try:
            return await self._subscription.fetch(self._batch, timeout=self._fetch_timeout)
        except (NatsTimeoutError, TimeoutError):
            return []

    def decode(self, messages: list[Msg], checkpoint: int) -> Delivery:
        records: list[Incoming] = []
        in_order = True
        for msg in messages:
            meta = msg.metadata
            sequence = meta.sequence.stream
            if meta.num_delivered > 1:
                in_order = in_order and sequence <= checkpoint
            else:
                in_order = in_order and meta.sequence.consumer == self._next_consumer_seq
                self._next_consumer_seq = meta.sequence.consumer + 1
            records.append(decode_message(self._codec, sequence, msg))
        return Delivery(messages, records, in_order)

    async def _close_subscription(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            # A dead subscription (connection gone) needs no clean-up.
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def close(self) -> None:
        await self._close_subscription()
