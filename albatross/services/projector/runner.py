"""The projector's main loop: lead, then fetch → apply in one statement → ack → publish.

Exactly-once effect: a batch's rows, outbox rows and checkpoint commit together on the leader's
lock connection (one guarded statement, see :mod:`albatross.adapters.postgres.applier`), the
ack goes out only after the commit, and whatever is delivered again is at
or below the checkpoint and skipped. A crash anywhere in between loses nothing (un-acked events
come back) and doubles nothing (the checkpoint filters them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import asyncpg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from albatross.adapters.codec import EventCodec
from albatross.adapters.postgres.applier import BatchApplier, Poison
from albatross.adapters.postgres.migrations import READ_MODEL_SCHEMA
from albatross.adapters.postgres.pool import connect
from albatross.observability import get_logger
from albatross.services.projector.consumer import Delivery, EventConsumer
from albatross.services.projector.leader import Leadership, acquire
from albatross.services.projector.metrics import ProjectorMetrics
from albatross.services.projector.outbox import OutboxPublisher

_log = get_logger(__name__)
_ERROR_PAUSE = 0.5


def refused_as_data(exc: BaseException) -> bool:
    """Whether a failed batch failed for what it holds rather than for the moment.

    PostgreSQL's data exceptions (SQLSTATE class 22) and a value the driver cannot encode
    (asyncpg raises a ValueError of its own) fail the same way however often they are
    retried; a lost connection, a timeout or a moved checkpoint does not. A ValueError from
    anywhere else is left to the retry: a bug that failed every event must stop the
    projection, not turn every event into poison.
    """
    if isinstance(exc, asyncpg.exceptions.DataError):
        return True
    return isinstance(exc, ValueError) and type(exc).__module__.startswith("asyncpg.")


async def _discard(fetch: asyncio.Future[list[Msg]] | None) -> None:
    """Cancel a fetch under way; what it brought stays unacknowledged and comes back."""
    if fetch is not None:
        fetch.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetch


class Projector:
    def __init__(self, nc: NATS, dsn: str, codec: EventCodec, metrics: ProjectorMetrics, *,
                 events_stream: str, changes_stream: str, schema: str = READ_MODEL_SCHEMA,
                 batch: int = 500, leader_retry: float = 0.5) -> None:
        self._dsn = dsn
        self._metrics = metrics
        self._leader_retry = leader_retry
        self._applier = BatchApplier(schema)
        self._consumer = EventConsumer(nc, codec, events_stream, batch=batch)
        self._publisher = OutboxPublisher(nc, changes_stream, schema, metrics)
        self.leading = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by, lead when the lock is free, until ``stop``."""
        while not stop.is_set():
            leadership = await acquire(self._dsn, stop, self._leader_retry)
            if leadership is None:
                return
            _log.info("projector is the active applier")
            self._metrics.leader.set(1)
            self.leading.set()
            try:
                await self._lead(leadership, stop)
            except Exception as exc:
                # Whatever went wrong, give the lock up and compete again: never die with it.
                _log.error("applier failed; releasing the lock", error=repr(exc))
                await asyncio.sleep(_ERROR_PAUSE)
            finally:
                self.leading.clear()
                self._metrics.leader.set(0)
                await self._consumer.close()
                await leadership.release()
            if not stop.is_set():
                _log.warning("projector lost the applier lock; standing by")

    async def _lead(self, leadership: Leadership, stop: asyncio.Event) -> None:
        publisher_stop = asyncio.Event()
        publisher_connection = await connect(self._dsn,
                                             application_name="albatross-projector-outbox")
        # Deleting published rows needs no fsync wait: a lost delete re-publishes a row,
        # which the message id and the start-up reconciliation turn into a no-op.
        await publisher_connection.execute("SET synchronous_commit TO off")
        publisher = asyncio.create_task(self._publisher.run(publisher_connection,
                                                            publisher_stop))
        try:
            await self._apply_loop(leadership, stop)
        finally:
            publisher_stop.set()
            # Let the publisher finish what is committed, within the stop deadline.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(publisher, timeout=3.0)
            with contextlib.suppress(Exception):
                await publisher_connection.close(timeout=2)

    async def _apply_loop(self, leadership: Leadership, stop: asyncio.Event) -> None:
        # No fsync wait per batch (for this session only): the rows are derived data. A
        # PostgreSQL crash can only lose the last few commits *together with their
        # checkpoint*, and the consumer, reset to the checkpoint by the next leader, delivers
        # those events again (same change ids, which the outbox reconciles).
        await leadership.connection.execute("SET synchronous_commit TO off")
        checkpoint = await self._recover(leadership, stop, "start")
        # The next batch is fetched while this one is written: the NATS round trip (and the
        # wait for the next event) overlaps the PostgreSQL one instead of following it.
        prefetch: asyncio.Future[list[Msg]] | None = None
        try:
            while not stop.is_set() and leadership.held():
                try:
                    messages = await (prefetch or self._consumer.fetch())
                except (NatsError, JetStreamError, TimeoutError) as exc:
                    prefetch = None
                    _log.warning("fetch failed", error=repr(exc))
                    await asyncio.sleep(_ERROR_PAUSE)
                    checkpoint = await self._recover(leadership, stop, "fetch error")
                    continue
                prefetch = None
                if not messages:
                    self._metrics.lag_events.set(0)
                    self._metrics.lag_seconds.set(0)
                    continue
                delivery = self._consumer.decode(messages, checkpoint)
                if not delivery.in_order:
                    await self._reposition(checkpoint, "deliveries out of order")
                    continue
                prefetch = asyncio.ensure_future(self._consumer.fetch())
                try:
                    try:
                        checkpoint = await self._apply(leadership, delivery)
                    except Exception as exc:
                        if not refused_as_data(exc) or not leadership.held():
                            raise
                        await _discard(prefetch)
                        prefetch = None
                        _log.error("batch refused as data; applying its events one by one",
                                   error=repr(exc))
                        await self._apply_one_by_one(leadership, delivery)
                        checkpoint = await self._recover(leadership, stop, "batch isolated")
                except Exception as exc:
                    # The batch may have committed without its rows reaching the publisher;
                    # before any later batch does, the publisher goes back to the table.
                    self._publisher.take_from_table()
                    await _discard(prefetch)
                    prefetch = None
                    if not leadership.held():
                        return
                    _log.error("batch failed; retrying from the checkpoint", error=repr(exc))
                    await asyncio.sleep(_ERROR_PAUSE)
                    checkpoint = await self._recover(leadership, stop, "batch error")
        finally:
            await _discard(prefetch)

    async def _apply_one_by_one(self, leadership: Leadership, delivery: Delivery) -> None:
        """Each event of a batch the database refused as data, alone: the one it refuses
        again is recorded as poison and skipped (like an undecodable event), so that one bad
        event does not stop the projection of every tenant. Raises on any other failure."""
        for message, record in zip(delivery.messages, delivery.records, strict=True):
            alone = Delivery([message], [record], in_order=True)
            try:
                await self._apply(leadership, alone)
            except Exception as exc:
                if not refused_as_data(exc):
                    raise
                refused = Poison(record.sequence, message.subject,
                                 f"refused by the read-model database: {exc!r}"[:1000],
                                 bytes(message.data))
                await self._apply(leadership, Delivery([message], [refused], in_order=True))

    async def _apply(self, leadership: Leadership, delivery: Delivery) -> int:
        started = time.monotonic()
        # One atomic, checkpoint-guarded statement: no transaction of its own needed.
        result = await self._applier.apply(leadership.connection, delivery.records)
        if result.outbox:
            # At once: nothing may fail between the commit and the hand-over (see
            # OutboxPublisher.take_from_table for what happens when something does anyway).
            self._publisher.hand_over(result.outbox)
        committed = datetime.now(UTC)
        # After the commit only: an ack lost now merely brings back duplicates.
        with contextlib.suppress(NatsError, JetStreamError, TimeoutError):
            await delivery.messages[-1].ack()
        metrics = self._metrics
        metrics.batch_seconds.observe(time.monotonic() - started)
        metrics.batches.inc()
        metrics.events_applied.inc(result.applied)
        metrics.duplicates.inc(result.duplicates)
        metrics.checkpoint.set(result.checkpoint)
        last = delivery.messages[-1].metadata
        metrics.lag_events.set(last.num_pending)
        metrics.lag_seconds.set(max(0.0, (committed - last.timestamp).total_seconds()))
        for msg in delivery.messages:
            if msg.metadata.num_delivered == 1:
                age = (committed - msg.metadata.timestamp).total_seconds()
                metrics.event_latency.observe(max(0.0, age))
        for poison in result.poison:
            metrics.poison.inc()
            _log.warning("poison event recorded and skipped", sequence=poison.sequence,
                         subject=poison.subject, reason=poison.reason)
        metrics.outbox_pending.inc(len(result.outbox))
        return result.checkpoint

    async def _recover(self, leadership: Leadership, stop: asyncio.Event, why: str) -> int:
        """Re-read the checkpoint and move the consumer back to it (while leading and not
        stopping; NATS may be away for a while)."""
        while leadership.held() and not stop.is_set():
            try:
                checkpoint = await self._applier.checkpoint(leadership.connection)
                await self._reposition(checkpoint, why)
                return checkpoint
            except Exception as exc:
                _log.warning("cannot reposition yet", error=repr(exc))
                await asyncio.sleep(_ERROR_PAUSE)
        return 0

    async def _reposition(self, checkpoint: int, why: str) -> None:
        self._metrics.resets.inc()
        self._metrics.checkpoint.set(checkpoint)
        _log.info("consumer positioned after the checkpoint", checkpoint=checkpoint, reason=why)
        await self._consumer.position_at(checkpoint)
