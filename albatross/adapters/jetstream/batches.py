"""ADR-50 atomic batches: every message of a batch is stored, or none is.

Used by the event store (an append of several messages) and the projector's outbox (a
backlog of change messages). The first message is acknowledged on its own (an empty reply
when accepted), so that a refusal comes back before the rest is sent; the messages between
go without a reply; the last one commits the batch and carries its acknowledgement.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from nats.aio.client import Client as NATS

from albatross.adapters.jetstream.acks import PubAck, decode_ack
from albatross.adapters.jetstream.requests import Requests, ensure_connected

Message = tuple[str, bytes, dict[str, str]]  # subject, payload, headers


async def publish_atomic_batch(requests: Requests, nc: NATS, messages: Sequence[Message], *,
                               timeout: float) -> PubAck:
    """The acknowledgement that decides: the first message's refusal or the commit's ack.

    Check ``error`` on it; NATS errors (no answer in time, no responders, not connected)
    are raised.
    """
    batch_id = os.urandom(16).hex()
    last = len(messages)
    for number, (subject, payload, own_headers) in enumerate(messages, start=1):
        headers = {**own_headers, "Nats-Batch-Id": batch_id,
                   "Nats-Batch-Sequence": str(number)}
        if number == last:
            headers["Nats-Batch-Commit"] = "1"
            reply = await requests.request(subject, payload, timeout=timeout, headers=headers)
            return decode_ack(reply.data)
        if number == 1:
            reply = await requests.request(subject, payload, timeout=timeout, headers=headers)
            if reply.data:
                refusal = decode_ack(reply.data)
                if refusal.error is not None:
                    return refusal
        else:
            ensure_connected(nc)
            await nc.publish(subject, payload, headers=headers)
    raise ValueError("an atomic batch needs at least one message")
