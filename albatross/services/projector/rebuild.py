"""``albatross projector rebuild``: replay the whole stream into fresh tables, then swap.

1. Create the shadow schema ``read_model_rebuild`` from the migrations.
2. Replay ``albatross.events.>`` from sequence 1 up to the live checkpoint into it (never
   further: later events still need their change messages, which the live applier writes;
   no change messages here: clients saw
   them once already; no NOTIFY: its checkpoint means nothing to readers yet), while the live
   schema keeps serving and the live projector keeps applying.
3. Catch up to the live checkpoint without locks, then, in ONE transaction: lock the live
   checkpoint row's table (the live applier waits on it), catch up to the live checkpoint
   exactly, move the live outbox's unpublished rows over, rename the live schema away, rename
   the shadow to ``read_model``, drop the old one, and announce the checkpoint. Readers see the
   old tables or the new ones, never a mix; the live applier's next batch finds the new tables
   and continues from the same checkpoint.

The progress display is a bar with events/s and ETA on a terminal, plain log lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import nats
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from albatross.adapters.codec import EVENTS, EventCodec
from albatross.adapters.jetstream.topology import Topology
from albatross.adapters.postgres.applier import BatchApplier, checkpoint_channel
from albatross.adapters.postgres.bulk import BulkLoader
from albatross.adapters.postgres.migrations import (
    READ_MODEL_SCHEMA,
    migrate,
    schema_identifier,
)
from albatross.adapters.postgres.pool import Connection, connect
from albatross.config import ConfigError, Settings, without_credentials
from albatross.domain.aggregates import default_registry
from albatross.lifecycle import Shutdown, StartupError, close_nats, connect_dependency, run
from albatross.observability import configure_logging, get_logger
from albatross.services.projector.consumer import INBOX_PREFIX, Puller, decode_message

SHADOW_SCHEMA = "read_model_rebuild"
RETIRED_SCHEMA = "read_model_retired"
BATCH = 2000
_log = get_logger(__name__)

Progress = Callable[[int, int], None]
"""Called with (events replayed so far, events to replay in all)."""


class ReplayGap(RuntimeError):
    """Deliveries were lost mid-replay (a reconnect): the replay resumes from its checkpoint."""


@dataclass(frozen=True)
class RebuildResult:
    events: int
    checkpoint: int
    seconds: float


async def _live_checkpoint(connection: Connection, live: str) -> int:
    value: int = await connection.fetchval(
        f"SELECT last_sequence FROM {schema_identifier(live)}.projection_checkpoint")  # noqa: S608
    return value


async def replay(nc: NATS, connection: Connection, applier: BatchApplier, stream: str,
                 codec: EventCodec, *, until: int, batch: int = BATCH,
                 progress: Progress | None = None, in_transaction: bool = False,
                 bulk: BulkLoader | None = None) -> int:
    """Apply every event after the target schema's checkpoint up to ``until``; how many.

    Each batch commits on its own (``synchronous_commit`` off: a crashed rebuild starts over
    anyway), unless ``in_transaction``: then everything runs in the caller's transaction.
    With ``bulk``, batches are projected in memory instead, and the caller flushes ``bulk``.
    """
    start = bulk.checkpoint if bulk is not None else await applier.checkpoint(connection)
    if start >= until:
        return 0
    js = nc.jetstream(timeout=10)
    name = f"albatross-rebuild-{uuid.uuid4().hex[:12]}"
    # An ephemeral consumer (named, so it can be pulled from by hand); the server drops it
    # a minute after a crashed rebuild stops asking.
    await js.add_consumer(stream, ConsumerConfig(
        name=name, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start + 1,
        ack_policy=AckPolicy.NONE, filter_subject=f"{EVENTS}.>", inactive_threshold=60.0,
        mem_storage=True, num_replicas=1))
    puller = Puller(nc, stream, name)
    await puller.open()
    done = 0
    expected_consumer_seq = 1
    total = until - start
    try:
        while True:
            messages = await puller.pull(batch, wait=None)
            if not messages:
                # Nothing pending: wait for the next event (the target is not reached yet).
                messages = await puller.pull(batch, wait=1.0)
            if not messages:
                reached = (bulk.checkpoint if bulk is not None
                           else await applier.checkpoint(connection))
                if reached >= until:
                    return done
                continue
            records = []
            finished = False
            for msg in messages:
                meta = msg.metadata
                if meta.sequence.consumer != expected_consumer_seq:
                    raise ReplayGap(f"expected delivery {expected_consumer_seq}, "
                                    f"got {meta.sequence.consumer}")
                expected_consumer_seq += 1
                if meta.sequence.stream > until:
                    finished = True
                    break
                records.append(decode_message(codec, meta.sequence.stream, msg))
                finished = meta.sequence.stream >= until or meta.num_pending == 0
            if records:
                if bulk is not None:
                    bulk.add(records)
                elif in_transaction:
                    await applier.apply(connection, records)
                else:
                    async with connection.transaction():
                        await connection.execute("SET LOCAL synchronous_commit TO off")
                        await applier.apply(connection, records)
                done += len(records)
                if progress is not None:
                    progress(records[-1].sequence - start, total)
            if finished:
                return done
    finally:
        await puller.close()
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, name)


async def swap_in(nc: NATS, connection: Connection, stream: str, codec: EventCodec,
                  shadow: str = SHADOW_SCHEMA, live: str = READ_MODEL_SCHEMA) -> int:
    """Catch the shadow up to the live checkpoint and make it the live schema, atomically."""
    shadow, live = schema_identifier(shadow), schema_identifier(live)
    retired = schema_identifier(RETIRED_SCHEMA)
    applier = BatchApplier(shadow, outbox=False, notify=False)
    async with connection.transaction():
        # The live applier's guarded write needs this table: it now waits for the swap.
        await connection.execute(
            f"LOCK TABLE {live}.projection_checkpoint IN EXCLUSIVE MODE")
        checkpoint: int = await connection.fetchval(
            f"SELECT last_sequence FROM {live}.projection_checkpoint")  # noqa: S608
        await replay(nc, connection, applier, stream, codec, until=checkpoint,
                     in_transaction=True)
        reached = await applier.checkpoint(connection)
        if reached < checkpoint:
            raise RuntimeError(f"shadow reached {reached}, live is at {checkpoint}")
        await connection.execute(
            f"INSERT INTO {shadow}.change_outbox SELECT * FROM {live}.change_outbox "  # noqa: S608
            "ON CONFLICT DO NOTHING")
        await connection.execute(f"DROP SCHEMA IF EXISTS {retired} CASCADE")
        await connection.execute(f"ALTER SCHEMA {live} RENAME TO {retired}")
        await connection.execute(f"ALTER SCHEMA {shadow} RENAME TO {live}")
        await connection.execute(f"DROP SCHEMA {retired} CASCADE")
        await connection.execute(
            "DELETE FROM public.schema_migrations WHERE schema_name = $1", live)
        await connection.execute(
            "UPDATE public.schema_migrations SET schema_name = $1 WHERE schema_name = $2",
            live, shadow)
        await connection.execute("SELECT pg_notify($1, $2)", checkpoint_channel(live),
                                 str(checkpoint))
    return checkpoint


async def rebuild(nc: NATS, dsn: str, *, stream: str, progress: Progress | None = None,
                  batch: int = BATCH, shadow: str = SHADOW_SCHEMA,
                  live: str = READ_MODEL_SCHEMA, swap: bool = True,
                  until: int | None = None) -> RebuildResult:
    """Replay everything into ``shadow`` and (``swap``) make it the live schema.

    ``until`` (no swap only: a benchmark, an audit) replays up to that sequence instead of
    the live checkpoint.
    """
    if swap and until is not None:
        raise ValueError("a swapped-in rebuild stops at the live checkpoint, not at `until`")
    began = time.monotonic()
    codec = EventCodec(default_registry())
    connection = await connect(dsn, application_name="albatross-rebuild", plans="custom")
    try:
        await migrate(connection, live)  # the live schema must exist to be swapped out
        await migrate(connection, shadow, fresh=True)
        applier = BatchApplier(shadow, outbox=False, notify=False)
        # The shadow never goes past the live checkpoint: events beyond it have not had their
        # change messages written yet, and the live applier writes them after the swap.
        # The bulk of the stream is projected in memory and COPYed in once.
        bulk = BulkLoader(shadow)
        events = await replay(nc, connection, applier, stream, codec,
                              until=until if until is not None
                              else await _live_checkpoint(connection, live),
                              batch=batch, progress=progress, bulk=bulk)
        await bulk.flush(connection)
        checkpoint = await applier.checkpoint(connection)
        if swap:
            # Most of the distance the live applier covered meanwhile is replayed without
            # locks; the swap transaction only replays the last few events.
            events += await replay(nc, connection, applier, stream, codec,
                                   until=await _live_checkpoint(connection, live), batch=batch)
            checkpoint = await swap_in(nc, connection, stream, codec, shadow, live)
        return RebuildResult(events, checkpoint, time.monotonic() - began)
    finally:
        await connection.close()


class ProgressReport:
    """A bar with events/s and ETA on a terminal; a log line every few seconds otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, interval: float = 2.0) -> None:
        self._out = out
        self._tty = tty
        self._interval = interval
        self._began = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < (0.2 if self._tty else self._interval) and done < total:
            return
        self._last = now
        elapsed = max(now - self._began, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        share = min(done / total, 1.0) if total else 1.0
        if self._tty:
            bar = "#" * int(share * 30)
            self._out.write(f"\r[{bar:<30}] {share:6.1%} {done}/{total} "
                            f"{rate:,.0f} events/s ETA {eta:,.0f} s ")
            self._out.flush()
        else:
            _log.info("rebuild progress", done=done, total=total, events_per_second=round(rate),
                      eta_seconds=round(eta, 1))

    def finish(self) -> None:
        if self._tty:
            self._out.write("\n")
            self._out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="albatross projector rebuild",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=BATCH, help="events per transaction")
    parser.add_argument("--no-swap", action="store_true",
                        help="build the shadow schema only; leave the live one in place")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"albatross projector rebuild: error: {exc}\n")
        return 2
    configure_logging("projector-rebuild", settings.log_level, human=settings.dev_mode)

    async def serve(shutdown: Shutdown) -> None:
        if not settings.nats_url or not settings.database_url:
            raise ConfigError("ALBATROSS_NATS_URL and ALBATROSS_DATABASE_URL are required")
        nc = await connect_dependency(
            f"NATS at {without_credentials(settings.nats_url)}",
            nats.connect(settings.nats_url.split(","), connect_timeout=5,
                         max_reconnect_attempts=-1, inbox_prefix=INBOX_PREFIX), timeout=15)
        report = ProgressReport(sys.stdout, tty=sys.stdout.isatty())
        try:
            work = asyncio.ensure_future(rebuild(
                nc, settings.database_url, stream=Topology().events_stream, progress=report,
                batch=args.batch, swap=not args.no_swap))
            stop = asyncio.ensure_future(shutdown.wait())
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not work.done():
                # Nothing live was touched yet unless the swap began; it is one transaction.
                work.cancel()
                raise StartupError("rebuild interrupted; the live read models are unchanged")
            result = work.result()
            report.finish()
            _log.info("rebuild finished", events=result.events, checkpoint=result.checkpoint,
                      seconds=round(result.seconds, 1), swapped=not args.no_swap)
        finally:
            await close_nats(nc)

    # A rebuild may run for minutes: no cancel-after, it stops at the next signal-safe point.
    return run(serve, name="albatross projector rebuild", deadline=3600, cancel_after=None)


if __name__ == "__main__":
    sys.exit(main())
