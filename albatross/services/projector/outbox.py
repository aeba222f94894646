"""Publishes committed change messages from the outbox to ``albatross.changes.>``, in order.

Rows are written by the applier in the transaction that changes the read models; this
publisher reads them in key order ``(event_sequence, ordinal)``, publishes them pipelined but
chained (each expects the stream's last sequence to be its predecessor's, so they land in
order or not at all), and deletes them once JetStream acknowledged them. A backlog (a chunk of
``ATOMIC_FROM`` rows or more) goes as one atomic batch instead, stored with one write. Each
message carries
``Nats-Msg-Id: chg-<event seq>-<ordinal>``: a crash between the publish and the delete
re-publishes a row that JetStream drops as a duplicate within its window, and on start the
publisher compares the changes stream's last message id with the outbox, so a row published
before a longer outage is not sent twice either.

Rows reach the publisher two ways. After a start or a failure it reads them from the table.
Once a read has found the table drained, it takes the rows the applier hands over as it
commits them (:meth:`OutboxPublisher.hand_over`) and publishes those without reading the table,
deleting what landed once a second at most: the table read and the delete were two
PostgreSQL round trips between every commit and its change message. The hand-over starts
before the table read that drains the backlog, so a row committed meanwhile is in the read,
in the hand-over, or in both (then sent once: only keys above the last one published go).

The stored payload's ``sequence`` is 0: change sequences number the changes stream and are
known only once stored, so the notifier takes them from the stream message's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from albatross.adapters.codec import CHANGES
from albatross.adapters.jetstream.acks import PubAck, decode_ack
from albatross.adapters.jetstream.batches import publish_atomic_batch
from albatross.adapters.jetstream.direct import DirectGet
from albatross.adapters.jetstream.requests import Requests, send_now
from albatross.adapters.postgres.applier import OutboxRow
from albatross.adapters.postgres.migrations import schema_identifier
from albatross.adapters.postgres.pool import Connection
from albatross.observability import get_logger
from albatross.services.projector.metrics import ProjectorMetrics

WRONG_LAST_SEQUENCE = 10071
ATOMIC_PUBLISH_DISABLED = 10174
BATCH_HOLDS_DUPLICATE = 10201
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
# From this many rows on a chunk goes as one atomic batch: stored with one write (one fsync
# with ``sync_interval: always``) instead of one per message. A batch costs ~5 ms whatever
# its size, a pipelined message 0.26-0.38 ms: even at about 25 (docs/performance.md).
ATOMIC_FROM = 32
_RESTART_CHAIN = frozenset({WRONG_LAST_SEQUENCE, BATCH_HOLDS_DUPLICATE})
_MSG_ID = re.compile(r"^chg-(\d+)-(\d+)$")
CHUNK = 500
# Rows handed over while the publisher cannot keep up (or is failing) are dropped beyond this
# many, and the table, which holds them all, becomes the source again.
HANDED_LIMIT = 10 * CHUNK
# Published rows are deleted at most this often (seconds): a delete per change message was a
# round trip on the publisher's path. Rows left meanwhile are never published twice: the
# publisher skips keys it has published, and a restart deletes up to the stream's last id.
DELETE_EVERY = 1.0
_NOTHING: tuple[int, int] = (0, 0)  # below every key (event sequences start at 1)
_log = get_logger(__name__)


def message_id(event_sequence: int, ordinal: int) -> str:
    return f"chg-{event_sequence}-{ordinal}"


class PublishRefused(Exception):
    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(f"{err_code}: {description}")
        self.err_code = err_code


class PipelinedPublisher:
    """JetStream publishes with one shared reply subscription, in order, acks collected.

    ``js.publish`` costs a request (inbox, future, timer) per message, several times the
    cost of the publish itself; a chunk of changes is sent here with plain publishes, each
    replying to ``<inbox>.<chunk>.<index>``, and the acknowledgements are matched by index.
    """

    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix = ""
        self._chunk = 0
        self._results: list[PubAck | BaseException | None] = []
        self._missing = 0
        self._complete = asyncio.Event()
        self._subscription: Any = None

    async def open(self) -> None:
        if self._subscription is None:
            self._prefix = self._nc.new_inbox()
            self._subscription = await self._nc.subscribe(f"{self._prefix}.>",
                                                          cb=self._on_ack)

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _on_ack(self, msg: Msg) -> None:
        _, chunk, index = msg.subject.rsplit(".", 2)
        if int(chunk) != self._chunk:
            return  # a late answer to an abandoned chunk
        position = int(index)
        if self._results[position] is not None:
            return
        result: PubAck | BaseException
        headers = msg.headers or {}
        if not msg.data and "Status" in headers:
            # 503: no stream listens on the subject (yet).
            result = PublishRefused(0, f"status {headers.get('Status')}")
        else:
            try:
                result = decode_ack(msg.data)
            except msgspec.DecodeError as exc:
                result = PublishRefused(0, f"unreadable ack: {exc}")
        self._results[position] = result
        self._missing -= 1
        if self._missing == 0:
            self._complete.set()

    async def publish(self, messages: list[tuple[str, bytes, dict[str, str]]]
                      ) -> list[PubAck | BaseException | None]:
        """Send in order; each message's ack, error, or None (no answer in time)."""
        await self.open()
        self._chunk += 1
        self._results = [None] * len(messages)
        self._missing = len(messages)
        self._complete = asyncio.Event()
        for index, (subject, payload, headers) in enumerate(messages):
            await self._nc.publish(subject, payload, reply=f"{self._prefix}.{self._chunk}."
                                   f"{index}", headers=headers)
        send_now(self._nc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._complete.wait(), self._timeout)
        return list(self._results)


_Sent = tuple[int, PubAck | None, BaseException | None]  # landed, last ack, what stopped it


def _failure(outcome: PubAck | BaseException | None) -> BaseException | None:
    """Why ``outcome`` is not a stored message, or None when it is one."""
    if outcome is None:
        return TimeoutError("no acknowledgement in time")
    if isinstance(outcome, BaseException):
        return outcome
    if outcome.error is not None:
        return PublishRefused(outcome.error.err_code, outcome.error.description)
    return None


class OutboxPublisher:
    def __init__(self, nc: NATS, changes_stream: str, schema: str,
                 metrics: ProjectorMetrics, *, publish_timeout: float = 5.0) -> None:
        self._nc = nc
        self._sender = PipelinedPublisher(nc, publish_timeout)
        self._requests = Requests(nc)
        self._direct = DirectGet(self._requests, changes_stream)
        self._atomic = True  # until the stream says it does not allow atomic batches
        self._stream = changes_stream
        self._s = schema_identifier(schema)
        self._metrics = metrics
        self._timeout = publish_timeout
        self.wake = asyncio.Event()
        self._last_sequence = 0  # of the last message this publisher saw land
        self._chain_trusted = False
        # Rows committed since the hand-over started (None: not taken, the table is the
        # source); ``_drained``: a table read since then found nothing left before them.
        self._handed: list[OutboxRow] | None = None
        self._drained = False
        self._published = _NOTHING  # the highest key known to be on the changes stream
        self._deleted = _NOTHING  # the highest key deleted from the table
        self._delete_due = 0.0

    def hand_over(self, rows: Sequence[OutboxRow]) -> None:
        """Rows the applier has just committed, in key order (the applier is the only one)."""
        if self._handed is not None:
            self._handed.extend(rows)
            if len(self._handed) > HANDED_LIMIT:
                self.take_from_table()
        self.wake.set()

    def take_from_table(self) -> None:
        """Read the table next round, not the hand-over.

        What the publisher sends from the hand-over must be the table's next rows in key
        order: a deletion by key range (here and in :meth:`reconcile`) counts every row below
        the last one published as published. So the applier calls this when a batch failed
        in a way that may have committed it without handing its rows over, before it applies
        another: the rows are then read from the table, in order, and none is skipped.
        """
        self._handed = None
        self._drained = False

    async def reconcile(self, connection: Connection) -> int:
        """Drop outbox rows the changes stream already holds; how many were dropped."""
        last = await self._direct.last_on(f"{CHANGES}.>")
        match = _MSG_ID.match(last.headers.get("Nats-Msg-Id", "")) if last else None
        self._chain_trusted = False
        dropped = 0
        if match is not None:
            key = (int(match.group(1)), int(match.group(2)))
            self._published = max(self._published, key)
            dropped = await self._delete_upto(connection, key)
        pending = await connection.fetchval(
            f"SELECT count(*) FROM {self._s}.change_outbox")  # noqa: S608
        self._metrics.outbox_pending.set(pending)
        return dropped

    async def publish_pending(self, connection: Connection) -> int:
        """Publish every row present in the table now, oldest first; how many were published.

        A chunk is published pipelined, each message expecting the stream's last sequence to
        be the one its predecessor got (``Nats-Expected-Last-Sequence``; this publisher is the
        stream's only writer): if one does not land, none after it can, so what landed is
        always a prefix, in order. A re-published duplicate keeps the sequence it got the
        first time, so the chain after it still holds; where the server checks the sequence
        before the duplicate (a single node), the refusal restarts the chain.

        Not ``Nats-Expected-Last-Msg-Id``: nats-server 2.15 checks that one again on every
        replica as it applies the message, against a last id a restarted replica may not
        have, and the replica then stops applying the stream ("last msgid mismatch",
        docs/reliability.md). The sequence is checked once, by the stream leader.
        """
        await self._delete_published(connection, force=True)  # none of them read again
        total = 0
        while True:
            rows = [OutboxRow(row["event_sequence"], row["ordinal"], row["subject"],
                              bytes(row["payload"]))
                    for row in await connection.fetch(
                        "SELECT event_sequence, ordinal, subject, payload "  # noqa: S608
                        f"FROM {self._s}.change_outbox "
                        f"ORDER BY event_sequence, ordinal LIMIT {CHUNK}")]
            if not rows:
                return total
            # A short chunk was everything committed when it was read: rows committed since
            # set ``wake``, so the caller comes back at once and no empty read is needed.
            everything = len(rows) < CHUNK and self._chain_trusted
            landed, failure = await self._publish_chunk(rows)
            if landed:
                await self._delete_published(connection, force=True)
                total += landed
            if failure is not None:
                raise failure
            if everything:
                return total

    async def publish_round(self, connection: Connection) -> int:
        """One round of :meth:`run`: the handed-over rows once the table is drained, else the
        table; how many were published. After a failure the table is the source again."""
        try:
            handed = self._handed
            if handed is not None and self._drained:
                self._handed = []
                published = await self._publish_handed(handed)
            else:
                # Taken from before the read, so nothing committed meanwhile is missed: it is
                # in the read, in the hand-over, or in both.
                self._handed, self._drained = [], False
                published = await self.publish_pending(connection)
                self._drained = True
            await self._delete_published(connection)
        except BaseException:
            self.take_from_table()
            raise
        return published

    async def _publish_handed(self, handed: list[OutboxRow]) -> int:
        """Publish rows handed over (none read from the table)."""
        rows = [row for row in handed if row.key > self._published]
        total = 0
        while rows:
            landed, failure = await self._publish_chunk(rows[:CHUNK])
            total += landed
            if failure is not None:
                raise failure
            rows = rows[landed:]
        return total

    async def _publish_chunk(self, rows: list[OutboxRow]) -> tuple[int, BaseException | None]:
        """Publish a prefix of ``rows``: how many landed, and what stopped the rest.

        Where the chain stands is not known (a start, a failure): the first message goes
        alone, without the expectation; its ack restarts the chain.
        """
        if not self._chain_trusted:
            rows = rows[:1]
        if self._chain_trusted and self._atomic and len(rows) >= ATOMIC_FROM:
            landed, last_ack, failure = await self._publish_atomic(rows)
        else:
            landed, last_ack, failure = await self._publish_pipelined(rows)
        if last_ack is not None:
            self._published = max(self._published, rows[landed - 1].key)
            self._last_sequence = last_ack.seq
            self._chain_trusted = True
            self._metrics.changes_published.inc(landed)
            self._metrics.outbox_pending.dec(landed)
        if isinstance(failure, PublishRefused):
            if failure.err_code in _RESTART_CHAIN:
                self._chain_trusted = False
            elif failure.err_code == ATOMIC_PUBLISH_DISABLED:
                _log.warning("the changes stream does not allow atomic batches; "
                             "publishing message by message (run bootstrap)")
                self._atomic = False
        return landed, failure

    async def _delete_published(self, connection: Connection, *, force: bool = False) -> None:
        """Delete the published rows still in the table (at most every ``DELETE_EVERY``)."""
        if self._published <= self._deleted:
            return
        now = time.monotonic()
        if not force and now < self._delete_due:
            return
        await self._delete_upto(connection, self._published)
        self._delete_due = now + DELETE_EVERY

    async def _delete_upto(self, connection: Connection, key: tuple[int, int]) -> int:
        """Delete the rows up to ``key`` (all on the changes stream); how many there were."""
        status: str = await connection.execute(
            f"DELETE FROM {self._s}.change_outbox "  # noqa: S608 - validated schema name
            "WHERE (event_sequence, ordinal) <= ($1, $2)", *key)
        self._deleted = max(self._deleted, key)
        return int(status.split()[-1])

    async def _publish_pipelined(self, rows: list[OutboxRow]) -> _Sent:
        messages = []
        for offset, row in enumerate(rows):
            headers = {"Nats-Msg-Id": message_id(row.event_sequence, row.ordinal)}
            if self._chain_trusted:
                headers[EXPECTED_LAST_SEQUENCE] = str(self._last_sequence + offset)
            messages.append((row.subject, row.payload, headers))
        landed = 0
        last_ack: PubAck | None = None
        for outcome in await self._sender.publish(messages):
            if not isinstance(outcome, PubAck) or outcome.error is not None:
                return landed, last_ack, _failure(outcome)
            landed += 1
            last_ack = outcome
        return landed, last_ack, None

    async def _publish_atomic(self, rows: list[OutboxRow]) -> _Sent:
        """All of ``rows`` as one atomic batch: every message lands, or none does.

        The first message carries the chain's expectation. A duplicate message id refuses
        the whole batch (10201): the chain restarts with the first row alone, which the
        server then acknowledges as the duplicate it is.
        """
        batch = []
        for number, row in enumerate(rows, start=1):
            headers = {"Nats-Msg-Id": message_id(row.event_sequence, row.ordinal)}
            if number == 1:
                headers[EXPECTED_LAST_SEQUENCE] = str(self._last_sequence)
            batch.append((row.subject, row.payload, headers))
        try:
            ack = await publish_atomic_batch(self._requests, self._nc, batch,
                                             timeout=self._timeout)
        except (NatsError, TimeoutError, msgspec.DecodeError) as exc:
            return 0, None, exc
        failure = _failure(ack)
        return (0, None, failure) if failure is not None else (len(rows), ack, None)

    async def run(self, connection: Connection, stop: asyncio.Event) -> None:
        """Publish until ``stop``; woken by :attr:`wake` after each commit, else every second."""
        # Where the stream stands is learnt anew for each leadership (reconcile, below).
        self.take_from_table()
        self._published = self._deleted = _NOTHING
        try:
            reconciled = False
            while not stop.is_set():
                self.wake.clear()
                try:
                    if not reconciled:
                        dropped = await self.reconcile(connection)
                        reconciled = True
                        if dropped:
                            _log.info("outbox rows already on the changes stream dropped",
                                      rows=dropped)
                    await self.publish_round(connection)
                except (NatsError, TimeoutError, OSError, PublishRefused, Exception) as exc:
                    # JetStream or PostgreSQL is away or slow: the rows stay, the next round
                    # reads them from the table and publishes them with the same message ids.
                    # Never die: nothing else would.
                    _log.warning("change publishing failed; will retry", error=repr(exc))
                    reconciled = False
                    await _sleep_unless(stop, 1.0)
                    continue
                waiter = asyncio.ensure_future(self.wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({waiter, stopper}, timeout=1.0,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
        finally:
            self.take_from_table()
            with contextlib.suppress(Exception):
                await self._delete_published(connection, force=True)
            await self._sender.close()
            await self._requests.close()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
