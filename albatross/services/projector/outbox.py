"""Publishes committed change messages from the outbox to ``albatross.changes.>``, in order.

Rows are written by the applier in the transaction that changes the read models; this
publisher reads them in key order ``(event_sequence, ordinal)``, publishes them pipelined but
chained (each expects its predecessor as the stream's last message id, so they land in order
or not at all), and deletes them once JetStream acknowledged them. Each message carries
``Nats-Msg-Id: chg-<event seq>-<ordinal>``: a crash between the publish and the delete
re-publishes a row that JetStream drops as a duplicate within its window, and on start the
publisher compares the changes stream's last message id with the outbox, so a row published
before a longer outage is not sent twice either.

The stored payload's ``sequence`` is 0: change sequences number the changes stream and are
known only once stored, so the notifier takes them from the stream message's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from nats.js.errors import Error as JetStreamError

from albatross.adapters.codec import CHANGES
from albatross.adapters.jetstream.direct import DirectGet
from albatross.adapters.postgres.migrations import schema_identifier
from albatross.adapters.postgres.pool import Connection
from albatross.observability import get_logger
from albatross.services.projector.metrics import ProjectorMetrics

WRONG_LAST_MSG_ID = 10070
_MSG_ID = re.compile(r"^chg-(\d+)-(\d+)$")
CHUNK = 500
_log = get_logger(__name__)


def message_id(event_sequence: int, ordinal: int) -> str:
    return f"chg-{event_sequence}-{ordinal}"


class OutboxPublisher:
    def __init__(self, nc: NATS, changes_stream: str, schema: str,
                 metrics: ProjectorMetrics, *, publish_timeout: float = 5.0) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=publish_timeout)
        self._stream = changes_stream
        self._s = schema_identifier(schema)
        self._metrics = metrics
        self._timeout = publish_timeout
        self.wake = asyncio.Event()
        self._last_id: str | None = None
        self._chain_trusted = False

    async def reconcile(self, connection: Connection) -> int:
        """Drop outbox rows the changes stream already holds; how many were dropped."""
        last = await DirectGet(self._nc, self._stream).last_on(f"{CHANGES}.>")
        match = _MSG_ID.match(last.headers.get("Nats-Msg-Id", "")) if last else None
        self._last_id = match.group(0) if match else None
        dropped = 0
        if match is not None:
            status: str = await connection.execute(
                f"DELETE FROM {self._s}.change_outbox "  # noqa: S608 - validated schema name
                "WHERE (event_sequence, ordinal) <= ($1, $2)",
                int(match.group(1)), int(match.group(2)))
            dropped = int(status.split()[-1])
        pending = await connection.fetchval(
            f"SELECT count(*) FROM {self._s}.change_outbox")  # noqa: S608
        self._metrics.outbox_pending.set(pending)
        return dropped

    async def publish_pending(self, connection: Connection) -> int:
        """Publish every row present now, oldest first; how many were published.

        A chunk is published pipelined, each message expecting its predecessor as the
        stream's last message id (``Nats-Expected-Last-Msg-Id``): if one does not land, none
        after it can, so what landed is always a prefix, in order. A duplicate (a re-publish
        after a crash) is acknowledged as such before that check, so a retried chunk passes.
        """
        total = 0
        while True:
            rows = await connection.fetch(
                "SELECT event_sequence, ordinal, subject, payload "  # noqa: S608
                f"FROM {self._s}.change_outbox ORDER BY event_sequence, ordinal LIMIT {CHUNK}")
            if not rows:
                return total
            if not self._chain_trusted:
                # The stream may not know its last message id (restarted, expired): the
                # first message goes alone, without the expectation, and restarts the chain.
                rows = rows[:1]
            ids = [message_id(row["event_sequence"], row["ordinal"]) for row in rows]
            sends = []
            previous = self._last_id if self._chain_trusted else None
            for row, mid in zip(rows, ids, strict=True):
                headers = {"Nats-Msg-Id": mid}
                if previous is not None:
                    headers["Nats-Expected-Last-Msg-Id"] = previous
                sends.append(self._js.publish(row["subject"], bytes(row["payload"]),
                                              stream=self._stream, timeout=self._timeout,
                                              headers=headers))
                previous = mid
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            landed = 0
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    break
                landed += 1
            if landed:
                last = rows[landed - 1]
                await connection.execute(
                    f"DELETE FROM {self._s}.change_outbox "  # noqa: S608
                    "WHERE (event_sequence, ordinal) <= ($1, $2)",
                    last["event_sequence"], last["ordinal"])
                self._last_id = ids[landed - 1]
                self._chain_trusted = True
                self._metrics.changes_published.inc(landed)
                self._metrics.outbox_pending.dec(landed)
                total += landed
            if landed < len(rows):
                failure = outcomes[landed]
                assert isinstance(failure, BaseException)
                if isinstance(failure, APIError) and failure.err_code == WRONG_LAST_MSG_ID:
                    self._chain_trusted = False
                raise failure

    async def run(self, connection: Connection, stop: asyncio.Event) -> None:
        """Publish until ``stop``; woken by :attr:`wake` after each commit, else every second."""
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
                await self.publish_pending(connection)
            except (NatsError, JetStreamError, TimeoutError, OSError) as exc:
                # JetStream is away or slow: the rows stay, the next round publishes them
                # with the same message ids.
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


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
