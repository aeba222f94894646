"""After a fault and convergence: every acknowledged command exactly once, everywhere.

Looked up in the event store (the tenant's PIREP subjects in ALBATROSS_EVENTS), the read models
(``read_model.pireps``), the changes stream (ALBATROSS_CHANGES: one message per change id, one
change per PIREP event) and what the WebSocket listener received (each change once, in order).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from albatross.adapters.codec import EventCodec
from albatross.domain.aggregates import default_registry
from albatross.domain.pireps import PirepSubmitted
from tests.faults.load import Load
from tests.faults.mesh import Mesh

REVIEW_EVENTS = {"PirepAccepted", "PirepRejected"}
STATUS_OF_EVENT = {"PirepAccepted": "accepted", "PirepRejected": "rejected"}
CONVERGE_TIMEOUT = 30.0


@dataclass
class Verdict:
    acknowledged: int = 0
    lost: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def missing(self, what: str) -> None:
        self.lost += 1
        self.problems.append(f"lost: {what}")

    def doubled(self, what: str, extra: int) -> None:
        self.duplicates += extra
        self.problems.append(f"duplicate x{extra}: {what}")


async def messages(nc: NATS, stream: str, subject: str,
                   timeout: float = CONVERGE_TIMEOUT) -> list[nats.aio.msg.Msg]:
    """Every message on ``subject`` in ``stream``, oldest first.

    A read that stalls, or that the cluster answers 503 (no leader for the new consumer yet),
    is retried with a new consumer until ``timeout``: right after a node's restart a consumer
    may be placed on that node while its replica of the stream still catches up. So is a
    stream info request that goes unanswered (seen once right after the stream leader's
    restart, in a fresh-clone CI run).
    """
    js = nc.jetstream(timeout=10)
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info(stream, subjects_filter=subject)
            total = sum((info.state.subjects or {}).values())
            if total == 0:
                return []
            return await _read(js, subject, stream, total)
        except (nats.errors.TimeoutError, ServiceUnavailableError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _read(js: JetStreamContext, subject: str, stream: str,
                total: int) -> list[nats.aio.msg.Msg]:
    sub = await js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, mem_storage=True,
        inactive_threshold=30.0))
    out: list[nats.aio.msg.Msg] = []
    try:
        while len(out) < total:
            out.extend(await sub.fetch(min(500, total - len(out)), timeout=5))
    finally:
        await sub.unsubscribe()
    return out


async def stored_events(nc: NATS, tenant_id: str) -> list[tuple[str, Any]]:
    codec = EventCodec(default_registry())
    found = []
    for msg in await messages(nc, "ALBATROSS_EVENTS", f"albatross.events.{tenant_id}.pirep.>"):
        event, _, _ = codec.decode(msg.data)
        found.append((event.event_type, event))
    return found


async def read_model_rows(dsn: str, tenant_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await connection.fetch(
            "SELECT id, remarks, status FROM read_model.pireps WHERE tenant_id = $1",
            tenant_id))
    finally:
        await connection.close()


async def stored_changes(nc: NATS, tenant_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(change id, change) of the tenant's PIREPs; ``sequence`` is the stream sequence."""
    return [((m.headers or {}).get("Nats-Msg-Id", ""),
             {**json.loads(m.data), "sequence": m.metadata.sequence.stream})
            for m in await messages(nc, "ALBATROSS_CHANGES",
                                    f"albatross.changes.{tenant_id}.pirep.>")]


def expected_changes(load: Load) -> Counter[tuple[str, str]]:
    """(PIREP id, status it shows) for every acknowledged command."""
    wanted: Counter[tuple[str, str]] = Counter()
    for pirep_id in load.submitted.values():
        wanted[(pirep_id, "pending")] += 1
    for pirep_id, status in load.reviewed.items():
        wanted[(pirep_id, status)] += 1
    return wanted


async def _until(check: Any, timeout: float) -> Any:
    """Poll the async ``check`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def verify(mesh: Mesh, load: Load) -> Verdict:
    """Wait for convergence, then compare what was acknowledged with what is stored."""
    verdict = Verdict(acknowledged=len(load.submitted) + len(load.reviewed))
    tenant = load.crew.tenant_id
    await mesh.wait_caught_up(load.max_sequence, CONVERGE_TIMEOUT)
    wanted = expected_changes(load)
    nc = await mesh.connect_nats()
    try:
        events = await stored_events(nc, tenant)

        async def changes_complete() -> list[tuple[str, dict[str, Any]]] | None:
            changes = await stored_changes(nc, tenant)
            seen = {(c["id"], c["data"]["status"]) for _, c in changes}
            return changes if all(w in seen for w in wanted) else None

        changes = await _until(changes_complete, CONVERGE_TIMEOUT) or await stored_changes(
            nc, tenant)
    finally:
        await nc.close()
    rows = await read_model_rows(mesh.dsn, tenant)

    # The event store: one submission per key, at most one review per PIREP.
    by_key = Counter(e.details.remarks for t, e in events if isinstance(e, PirepSubmitted))
    reviews = Counter(e.pirep_id for t, e in events if t in REVIEW_EVENTS)
    review_status = {e.pirep_id: STATUS_OF_EVENT[t] for t, e in events if t in REVIEW_EVENTS}
    for key, count in by_key.items():
        if count > 1:
            verdict.doubled(f"event store: PIREP submitted with key {key}", count - 1)
    for pirep_id, count in reviews.items():
        if count > 1:
            verdict.doubled(f"event store: PIREP {pirep_id} reviewed", count - 1)

    # The read models: one row per key.
    rows_by_key = Counter(r["remarks"] for r in rows)
    row_of = {r["id"]: r for r in rows}
    for key, count in rows_by_key.items():
        if count > 1:
            verdict.doubled(f"read models: PIREP with key {key}", count - 1)

    # The changes stream: one message per change id, one change per (PIREP, state).
    ids = Counter(msg_id for msg_id, _ in changes)
    for msg_id, count in ids.items():
        if count > 1:
            verdict.doubled(f"changes stream: change id {msg_id}", count - 1)
    per_state = Counter((c["id"], c["data"]["status"]) for _, c in changes)
    for pair, count in per_state.items():
        if count > 1:
            verdict.doubled(f"changes stream: {pair}", count - 1)

    for key, pirep_id in load.submitted.items():
        if by_key[key] == 0:
            verdict.missing(f"event store: submission {key} ({pirep_id})")
        elif pirep_id not in row_of:
            verdict.missing(f"read models: PIREP {pirep_id}")
        elif per_state[(pirep_id, "pending")] == 0:
            verdict.missing(f"changes stream: submission of {pirep_id}")
    for pirep_id, status in load.reviewed.items():
        if review_status.get(pirep_id) != status:
            verdict.missing(f"event store: review {status} of {pirep_id}")
        elif pirep_id not in row_of or row_of[pirep_id]["status"] != status:
            verdict.missing(f"read models: review {status} of {pirep_id}")
        elif per_state[(pirep_id, status)] == 0:
            verdict.missing(f"changes stream: review {status} of {pirep_id}")

    await _check_sockets(load, wanted, verdict, {(c["id"], c["data"]["status"]): c["sequence"]
                                                 for _, c in changes})
    return verdict


async def _check_sockets(load: Load, wanted: Counter[tuple[str, str]], verdict: Verdict,
                         stored_at: dict[tuple[str, str], int]) -> None:
    """Every listener received each acknowledged change once, in sequence order."""
    for n, received in enumerate(load.changes):
        def pirep_states(received: list[dict[str, Any]] = received) -> set[tuple[str, str]]:
            return {(c["id"], c["data"]["status"]) for c in received if c["entity"] == "pirep"}

        async def complete(received: list[dict[str, Any]] = received) -> bool:
            return all(w in pirep_states(received) for w in wanted)

        await _until(complete, CONVERGE_TIMEOUT)
        sequences = [c["sequence"] for c in received]
        doubled = len(sequences) - len(set(sequences))
        if doubled:
            verdict.doubled(f"socket {n}: change sequences", doubled)
        if sequences != sorted(sequences):
            verdict.problems.append(f"socket {n}: changes out of order")
        missing = [w for w in wanted if w not in pirep_states()]
        for pair in missing:
            at = stored_at.get(pair, 0)
            around = [s for s in sequences if abs(s - at) <= 5]
            verdict.missing(f"socket {n}: change {pair} at sequence {at} "
                            f"(received nearby: {around})")
