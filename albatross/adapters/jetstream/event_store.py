"""The event store on one JetStream stream.

Layout: one subject per aggregate and visibility
(``albatross.<events|secrets>.<scope>.<aggregate>.<id>``) and one per uniqueness claim
(``albatross.claims.<kind>.<sha256>``). An aggregate's version is the stream sequence of its
last message, checked on append with a wildcard expectation that covers both of its subjects.

Loads never scan the stream: every message names the aggregate's previous version
(``Albatross-Prev-Seq``) and, through its ``Nats-Msg-Id``, its offset within its own append, so
the history is walked backwards with Direct Gets, one per event, from the last message on the
aggregate's subjects. Appends of several messages use an atomic batch (ADR-50), whose messages
are stored contiguously.

Every message carries ``Nats-Msg-Id = <append id>:<index>``; the append id is the caller's
idempotency key (or a fresh one), so a retry after a lost ack is recognised whether the server
answers "duplicate" or, on the single-replica path, "wrong last sequence" (10071). Events come
before claims in an append, so an event's index is its offset among the append's events.

Messages written before 2026-11-26 also restate both parts in ``Albatross-Append-Id`` and
``Albatross-Batch-Offset``, which are no longer written (each header costs the server and the
client a visible share of an append's CPU) nor needed to read them.

Unavailable means nothing was written (the contract's 503). An append that left the client and
got no answer may have landed, so once one attempt is unanswered the retries go on past the
usual deadline, until an answer settles the outcome or ``resolve_deadline`` passes
(:class:`OutcomeUnknown`); nothing is sent while the client is reconnecting, which would send
it after the caller gave up (see ``requests.py``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError

from albatross.adapters.codec import (
    EVENTS,
    SECRETS,
    DecodeError,
    EventCodec,
    claim_subject,
    event_subject,
    stream_filter,
    stream_of,
)
from albatross.adapters.jetstream.acks import PubAck, api_error, decode_ack
from albatross.adapters.jetstream.batches import publish_atomic_batch
from albatross.adapters.jetstream.direct import DirectGet, StoredMessage
from albatross.adapters.jetstream.requests import NotConnected, Requests
from albatross.ports import (
    AppendRequest,
    AppendResult,
    Claim,
    ClaimTaken,
    OutcomeUnknown,
    RecordedEvent,
    StoreUnavailable,
    StreamId,
    UnreadableEvent,
    WrongExpectedVersion,
    check_append_key,
)

H_TYPE = "Albatross-Event-Type"
H_PREV = "Albatross-Prev-Seq"
H_MSG_ID = "Nats-Msg-Id"

WRONG_LAST_SEQUENCE = 10071
BATCH_DUPLICATE_MSG_ID = 10201
_RESOLVABLE = {WRONG_LAST_SEQUENCE, BATCH_DUPLICATE_MSG_ID}
# 10210, too many open atomic batches (default 50 per stream): abandoned ones pile up while the
# server is slow, and each closes on its own timeout, so it passes like a leader election.
_TOO_MANY = 429
# How many earlier appends of the aggregate a retry looks through for its own append.
_RETRY_LOOKBACK = 32
_TRANSIENT = (NoRespondersError, NatsTimeoutError, asyncio.TimeoutError, ConnectionClosedError,
              NotConnected)

T = TypeVar("T")


class _Outgoing(msgspec.Struct, frozen=True):
    subject: str
    data: bytes
    headers: dict[str, str]
    secret: bool


class JetStreamEventStore:
    """Implements the EventStore port on the stream ``Topology.events_stream``."""

    def __init__(self, nc: NATS, codec: EventCodec, stream: str, *,
                 deadline: float = 8.0, resolve_deadline: float = 15.0,
                 request_timeout: float = 2.0) -> None:
        if resolve_deadline < deadline:
            raise ValueError("resolve_deadline must not be shorter than deadline")
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=request_timeout)
        self._codec = codec
        self._stream = stream
        self._requests = Requests(nc)
        self._direct = DirectGet(self._requests, stream, timeout=request_timeout)
        self._deadline = deadline
        self._resolve_deadline = resolve_deadline
        self._timeout = request_timeout

    # Writing ------------------------------------------------------------------------------

    async def append(self, request: AppendRequest) -> AppendResult:
        if not request.events:
            raise ValueError("an append needs at least one event")
        check_append_key(request.idempotency_key)
        append_id = request.idempotency_key or os.urandom(16).hex()
        return await self._retrying(lambda: self._append_once(request, append_id))

    async def _append_once(self, request: AppendRequest, append_id: str) -> AppendResult:
        expected = request.expected_version
        if expected is None:
            # Every message names its predecessor, so even an unchecked append is checked
            # against the head it read; a race is retried by the caller's loop.
            expected = await self.version(request.stream)
        outgoing = self._messages(request, append_id, expected)
        try:
            if len(outgoing) == 1:
                ack = await self._publish_single(outgoing[0], request.stream, expected)
            else:
                ack = await self._publish_batch(outgoing, request.stream, expected)
        except APIError as exc:
            if exc.err_code not in _RESOLVABLE:
                raise
            return await self._resolve_refusal(request, append_id, expected)
        return self._result(ack, outgoing, len(request.events))

    def _messages(self, request: AppendRequest, append_id: str,
                  expected: int) -> list[_Outgoing]:
        out = []
        for index, event in enumerate(request.events):
            out.append(_Outgoing(
                subject=event_subject(request.stream, event),
                data=self._codec.encode(event, request.occurred_at, request.actor_id),
                headers={H_TYPE: event.event_type, H_MSG_ID: f"{append_id}:{index}",
                         H_PREV: str(expected)},
                secret=event.secret,
            ))
        # Claims come last so that an aggregate's messages of one append are contiguous.
        for offset, claim in enumerate(request.claims, start=len(out)):
            out.append(_Outgoing(
                subject=claim_subject(claim),
                data=msgspec.json.encode({"stream": request.stream.key}),
                headers={H_MSG_ID: f"{append_id}:{offset}"},
                secret=True,
            ))
        return out

    async def _publish_single(self, message: _Outgoing, stream: StreamId,
                              expected: int) -> PubAck:
        headers = {**message.headers, **_expectation(stream, expected)}
        return await self._publish_acked(message.subject, message.data, headers)

    async def _publish_acked(self, subject: str, data: bytes,
                             headers: dict[str, str]) -> PubAck:
        """A JetStream publish and its acknowledgement, read with msgspec.

        What ``JetStreamContext.publish`` does, minus its stdlib-json and dataclass decoding
        of the ack (a visible share of a command's CPU); "no responders" stays
        ``NoRespondersError``, which :meth:`_retrying` treats as transient.
        """
        headers["Nats-Expected-Stream"] = self._stream
        try:
            reply = await self._requests.request(subject, data, timeout=self._timeout,
                                                 headers=headers)
        except NatsTimeoutError as exc:
            raise _Unanswered from exc
        ack = decode_ack(reply.data)
        if ack.error is not None:
            raise api_error(ack.error)
        return ack

    async def _publish_batch(self, messages: list[_Outgoing], stream: StreamId,
                             expected: int) -> PubAck:
        batch = []
        for number, message in enumerate(messages, start=1):
            headers = dict(message.headers)
            if number == 1:
                headers.update(_expectation(stream, expected))
            if H_TYPE not in message.headers:
                headers["Nats-Expected-Last-Subject-Sequence"] = "0"
            if number == len(messages):
                headers["Nats-Expected-Stream"] = self._stream
            batch.append((message.subject, message.data, headers))
        try:
            ack = await publish_atomic_batch(self._requests, self._nc, batch,
                                             timeout=self._timeout)
        except NatsTimeoutError as exc:
            raise _Unanswered from exc  # possibly the commit's answer that never came
        if ack.error is not None:
            raise api_error(ack.error)
        return ack

    def _result(self, ack: PubAck, outgoing: list[_Outgoing], events: int) -> AppendResult:
        first = ack.seq - len(outgoing) + 1 if len(outgoing) > 1 else ack.seq
        public = [first + i for i, m in enumerate(outgoing[:events]) if not m.secret]
        return AppendResult(sequence=first + events - 1,
                            public_sequence=public[-1] if public else None,
                            duplicate=bool(ack.duplicate))

    async def _resolve_refusal(self, request: AppendRequest, append_id: str,
                               expected: int) -> AppendResult:
        """Tell a retry of an append that landed from a real conflict."""
        earlier = await self._find_append(request.stream, append_id)
        if earlier is not None:
            return earlier
        for claim in request.claims:
            holder = await self._direct.last_on(claim_subject(claim))
            if holder is not None and _append_id_of(holder) != append_id:
                raise ClaimTaken(claim)
        actual = await self.version(request.stream)
        if request.expected_version is None and actual != expected:
            raise _HeadMoved
        raise WrongExpectedVersion(request.stream, request.expected_version, actual)

    async def _find_append(self, stream: StreamId, append_id: str) -> AppendResult | None:
        message = await self._direct.last_on(stream_filter(stream))
        for _ in range(_RETRY_LOOKBACK):
            if message is None:
                return None
            if _append_id_of(message) == append_id:
                group = await self._group_of(message)
                public = [m.sequence for m in group if m.subject.startswith(EVENTS + ".")]
                return AppendResult(sequence=message.sequence,
                                    public_sequence=public[-1] if public else None,
                                    duplicate=True)
            previous = int(message.headers.get(H_PREV, "0"))
            message = await self._direct.by_sequence(previous) if previous else None
        return None

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry transient failures (leader election, restart, too many open batches) until
        the deadline.

        Safe because every retry reuses the append id, so the server or
        ``_resolve_refusal`` recognises what already landed. After an unanswered attempt
        the retries go on until ``resolve_deadline``: only an answer tells whether it landed.
        """
        delay = 0.05
        loop = asyncio.get_running_loop()
        began = loop.time()
        unanswered = False
        while True:
            try:
                return await attempt()
            except _HeadMoved as exc:
                failure: Exception = exc
            except _Unanswered as exc:
                failure, unanswered = exc, True
            except _TRANSIENT as exc:
                failure = exc
            except APIError as exc:
                if exc.code is not None and (exc.code >= 500 or exc.code == _TOO_MANY):
                    failure = exc  # the server's trouble, or its limit of open batches
                elif unanswered:
                    # A refusal of the retry says nothing of the attempt that went unanswered.
                    raise OutcomeUnknown(f"the event store refused a retry of an append it did "
                                         f"not answer: {exc!r}") from exc
                else:
                    raise
            if unanswered and loop.time() + delay >= began + self._resolve_deadline:
                raise OutcomeUnknown(f"event store did not answer whether the append landed: "
                                     f"{failure!r}") from failure
            if not unanswered and loop.time() + delay >= began + self._deadline:
                raise StoreUnavailable(f"event store unavailable: {failure!r}") from failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    # Reading ------------------------------------------------------------------------------

    async def version(self, stream: StreamId) -> int:
        message = await self._direct.last_on(stream_filter(stream))
        return message.sequence if message else 0

    async def load(self, stream: StreamId, after: int = 0) -> list[RecordedEvent]:
        newest_first: list[StoredMessage] = []
        message = await self._direct.last_on(stream_filter(stream))
        while message is not None and message.sequence > after:
            group = await self._group_of(message)
            newest_first.extend(m for m in reversed(group) if m.sequence > after)
            previous = int(message.headers.get(H_PREV, "0"))
            message = await self._direct.by_sequence(previous) if previous > after else None
        records = []
        for stored in reversed(newest_first):
            record = self._decode(stored)
            if isinstance(record, UnreadableEvent):
                raise DecodeError(f"{stream.key} seq {record.sequence}: {record.reason}")
            records.append(record)
        return records

    async def _group_of(self, last: StoredMessage) -> list[StoredMessage]:
        """The aggregate's messages of the append that ``last`` ends, oldest first."""
        offset = _offset_of(last)
        if offset == 0:
            return [last]
        earlier = await asyncio.gather(*(self._direct.by_sequence(seq)
                                         for seq in range(last.sequence - offset, last.sequence)))
        group = []
        for stored in earlier:
            if stored is None or _append_id_of(stored) != _append_id_of(last):
                raise DecodeError(f"append at seq {last.sequence} is not contiguous")
            group.append(stored)
        return [*group, last]

    async def read_after(self, sequence: int, limit: int) -> list[RecordedEvent | UnreadableEvent]:
        if sequence >= await self.last_sequence():
            return []
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=sequence + 1,
            ack_policy=AckPolicy.NONE, filter_subjects=[f"{EVENTS}.>", f"{SECRETS}.>"],
            inactive_threshold=30.0, mem_storage=True, num_replicas=1,
        )
        subscription = await self._js.pull_subscribe("", stream=self._stream, config=config)
        try:
            try:
                messages = await subscription.fetch(limit, timeout=self._timeout)
            except NatsTimeoutError:
                return []
        finally:
            await subscription.unsubscribe()
        out = []
        for msg in messages:
            stored = StoredMessage(sequence=msg.metadata.sequence.stream, subject=msg.subject,
                                   headers=dict(msg.headers or {}), data=msg.data)
            out.append(self._decode(stored))
        return out

    async def last_sequence(self) -> int:
        info = await self._js.stream_info(self._stream)
        return int(info.state.last_seq)

    def _decode(self, stored: StoredMessage) -> RecordedEvent | UnreadableEvent:
        try:
            stream = stream_of(stored.subject)
            event, occurred_at, actor_id = self._codec.decode(stored.data)
        except (DecodeError, ValueError) as exc:
            return UnreadableEvent(stored.sequence, stored.subject, str(exc))
        return RecordedEvent(stored.sequence, stream, event, occurred_at, actor_id)


class _Unanswered(Exception):
    """An attempt left the client and no answer came: it may have landed."""


class _HeadMoved(Exception):
    """An unchecked append raced another writer: read the head again and retry."""


def _append_id_of(message: StoredMessage) -> str | None:
    msg_id = message.headers.get(H_MSG_ID)
    return msg_id.rpartition(":")[0] if msg_id else None


def _offset_of(message: StoredMessage) -> int:
    """An event message's index among its append's events (0 for a one-event append)."""
    index = message.headers.get(H_MSG_ID, "").rpartition(":")[2]
    return int(index) if index.isdigit() else 0


def _expectation(stream: StreamId, expected: int) -> dict[str, str]:
    return {"Nats-Expected-Last-Subject-Sequence": str(expected),
            "Nats-Expected-Last-Subject-Sequence-Subject": stream_filter(stream)}


__all__ = ["Claim", "JetStreamEventStore"]
