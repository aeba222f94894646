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

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NotFoundError

from albatross.adapters.codec import EVENTS, DecodeError, EventCodec, stream_of
from albatross.adapters.jetstream.requests import send_now
from albatross.adapters.postgres.applier import Incoming, Poison
from albatross.ports import RecordedEvent

DURABLE = "albatross-projector"
# Replies come to this prefix only: the projector's NATS user may not read other inboxes.
INBOX_PREFIX = "_INBOX_projector"
ACK_WAIT_SECONDS = 30.0


def _is_status(msg: Msg) -> bool:
    return not msg.data and bool(msg.headers) and "Status" in (msg.headers or {})


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


class Puller:
    """Pull requests sent by hand to one consumer, answered into a private inbox.

    nats-py's ``fetch(n)`` keeps collecting until ``n`` messages or its timeout (holding a
    trickle of events for up to the timeout) and costs a task per message; here a request
    with ``no_wait`` is answered at once with what is pending, and a lingering request for
    one message is answered the moment an event is stored. Messages land in a buffer from a
    subscription callback; deliveries of an abandoned request stay buffered, in order.
    """

    def __init__(self, nc: NATS, stream: str, consumer: str, *,
                 request_timeout: float = 5.0) -> None:
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._timeout = request_timeout
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._inbox = ""
        self._subscription: Subscription | None = None

    async def open(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._subscription = await self._nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        self._buffer.clear()
        if subscription is not None:
            # A dead subscription (connection gone) needs no clean-up.
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        self._buffer.append(msg)
        self._arrived.set()

    async def pull(self, count: int, wait: float | None) -> list[Msg]:
        """Up to ``count`` messages: pending ones (``wait`` None), or the first to come
        within ``wait`` seconds."""
        if self._subscription is None:
            raise RuntimeError("open() first")
        if count <= 0:
            return []
        request: dict[str, object] = {"batch": count}
        if wait is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(wait * 1_000_000_000)
        await self._nc.publish(self._next_subject, json.dumps(request).encode(),
                               reply=self._inbox)
        send_now(self._nc)
        loop = asyncio.get_running_loop()
        # The server answers a no_wait request at once; a lingering one by its expiry.
        deadline = loop.time() + (wait or 0.0) + self._timeout
        out: list[Msg] = []
        while len(out) < count:
            while self._buffer and len(out) < count:
                msg = self._buffer.popleft()
                if _is_status(msg):
                    # 404 no messages / 408 expired / 409: this request is over. A status
                    # left over from an earlier request only ends this one early.
                    return out
                out.append(msg)
            if len(out) >= count:
                break
            self._arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return out


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
        self._request_timeout = request_timeout
        self._puller = Puller(nc, stream, durable, request_timeout=request_timeout)
        self._next_consumer_seq = 1

    def _config(self, start: int | None = None) -> ConsumerConfig:
        return ConsumerConfig(
            # Created by name (CONSUMER.CREATE.<stream>.<name>.<filter>): NATS permissions can
            # then pin the filter, which the legacy durable-create request hides in its body.
            name=self._durable,
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
        await self._puller.close()
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
        # A fresh inbox: nothing delivered before the reset can reach this one.
        await self._puller.open()
        self._next_consumer_seq = 1

    async def fetch(self) -> list[Msg]:
        """What is pending now, up to one batch; else wait (at most the fetch timeout) for
        the next event and return it with whatever followed it. [] when nothing came."""
        batch = await self._puller.pull(self._batch, wait=None)
        if batch:
            return batch
        first = await self._puller.pull(1, wait=self._fetch_timeout)
        if not first:
            return []
        return first + await self._puller.pull(self._batch - 1, wait=None)

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

    async def close(self) -> None:
        await self._puller.close()
