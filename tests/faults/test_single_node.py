"""Faults under load on one nats-server: SIGKILL of each service, of nats-server, and a
PostgreSQL restart. After each: nothing acknowledged lost or doubled, no 5xx but 503
``unavailable``, no hang, and recovery within the targets."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import pytest

from albatross.infra.nats_server import NatsServer
from tests.faults.load import pirep_input
from tests.faults.mesh import Mesh
from tests.faults.scenario import (
    Outcome,
    assert_clean,
    assert_recovered,
    loaded,
    nats_kill,
    postgres_restart,
    process_kill,
    run_fault,
)
from tests.reliability_figures import record

pytestmark = [pytest.mark.real, pytest.mark.slow]

# Longer than the gateway's own retry budget (8 s), so that clients really see 503s.
NATS_OUTAGE_S = 8.0
POSTGRES_OUTAGE_S = 3.0
SLOW_CLIENT_TIMEOUT_S = 2.0  # the gateway's header and body timeouts in this mesh (conftest)


SEEDS = {"gateway": 8080, "projector": 8081, "notifier": 8082}


@pytest.mark.parametrize("service", list(SEEDS))
async def test_sigkill_of_a_service_under_load(mesh: Mesh, service: str) -> None:
    outcome = await run_fault(mesh, f"{service}_kill", seed=SEEDS[service],
                              inject=process_kill(mesh, service))
    assert_clean(outcome, mesh)
    assert_recovered(outcome, f"{service}_kill")


async def test_sigkill_of_nats_server_answers_503_then_recovers(mesh: Mesh) -> None:
    assert isinstance(mesh.nats, NatsServer)
    kind = "nats_restart"
    outcome = await run_fault(mesh, kind, seed=4222,
                              inject=nats_kill(mesh, mesh.nats, NATS_OUTAGE_S))
    assert_clean(outcome, mesh)
    assert outcome.load.unavailable_during_outages() > 0, "no 503 while NATS was down"
    assert_recovered(outcome, kind)


async def test_postgres_restart_keeps_commands_and_answers_queries_503(mesh: Mesh) -> None:
    kind = "postgres_restart"
    outcome = await run_fault(mesh, kind, seed=5432,
                              inject=postgres_restart(mesh, mesh.postgres, POSTGRES_OUTAGE_S))
    assert_clean(outcome, mesh)
    load = outcome.load
    assert load.unavailable_during_outages() > 0, "no query answered 503 while PostgreSQL was down"
    accepted = [t for t in load.figures.commands_ok for start, end in load.outages
                if start <= t <= end]
    assert accepted, "no command was accepted while PostgreSQL was down"
    assert_recovered(outcome, kind)


# Misbehaving clients ----------------------------------------------------------------------

def raw_request(path: str, token: str, body: bytes, **headers: str) -> tuple[bytes, bytes]:
    """The head and the body of a POST, as bytes on the wire."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body)}", f"Authorization: Bearer {token}",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


async def drop_mid_request(port: int, head: bytes, body: bytes, sent: int,
                           linger: float) -> None:
    """Send ``head`` and the first ``sent`` bytes of ``body``, wait ``linger``, hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body[:sent])
    await writer.drain()
    await asyncio.sleep(linger)
    writer.transport.abort()  # an RST, as a crashed client or a dead network leaves it


async def test_clients_that_hang_up_mid_request_leave_all_or_nothing(mesh: Mesh) -> None:
    rng = random.Random(80)
    port = mesh.ports["gateway"]
    async with loaded(mesh, seed=80) as load:
        token = load.crew.pilots[0]
        for n in range(20):
            key = f"drop{n}-{uuid.uuid4().hex}"
            body = json.dumps(pirep_input(key, rng)).encode()
            head, _ = raw_request("/api/pireps", token, body, Idempotency_Key=key)
            partial = n % 2 == 0  # half the body, or all of it and no wait for the answer
            await drop_mid_request(port, head, body, len(body) // 2 if partial else len(body),
                                   rng.uniform(0.0, 0.05))
            answer = None
            for _ in range(50):
                answer = await load.request("POST", "/api/pireps", token, "command",
                                            body=json.loads(body),
                                            headers={"Idempotency-Key": key})
                if answer is not None and answer.status == 201:
                    break
                await asyncio.sleep(0.2)
            assert answer is not None, key
            assert answer.status == 201, (key, answer)
            if partial:  # the server never had the whole command: nothing was applied
                assert "Idempotent-Replayed" not in answer.headers, (key, answer.headers)
            load.submitted[key] = str(answer.body["id"])
    outcome = Outcome(load, load.verdict, [])
    record("client_disconnect", faults=20, acknowledged=outcome.verdict.acknowledged,
           lost=outcome.verdict.lost, duplicates=outcome.verdict.duplicates,
           errors_5xx=len(load.figures.errors_5xx), hangs=len(load.figures.hangs))
    assert_clean(outcome, mesh)


async def slow_client(port: int, first: bytes, drip: bytes, every: float,
                      limit: float) -> float | None:
    """Send ``first``, then ``drip`` every ``every`` s; seconds until the server hangs up
    (None if it still listens after ``limit`` s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    try:
        writer.write(first)
        while time.monotonic() - began < limit:
            try:
                data = await asyncio.wait_for(reader.read(1024), every)
            except TimeoutError:
                writer.write(drip)
                continue
            if not data:
                return time.monotonic() - began
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - began
    finally:
        writer.transport.abort()


async def test_slow_loris_clients_are_dropped_while_others_are_served(mesh: Mesh) -> None:
    port = mesh.ports["gateway"]
    limit = 4 * SLOW_CLIENT_TIMEOUT_S + 5
    async with loaded(mesh, seed=11) as load:
        body = json.dumps(pirep_input("slow", random.Random(1))).encode()
        head, _ = raw_request("/api/pireps", load.crew.pilots[0], body,
                              Idempotency_Key=f"slow-{uuid.uuid4().hex}")
        served_before = len(load.figures.commands_ok)
        slow_headers = [slow_client(port, b"POST /api/pireps HTTP/1.1\r\nHost: x\r\n",
                                    b"X-Slow: 1\r\n", 0.3, limit) for _ in range(20)]
        slow_bodies = [slow_client(port, head + body[:10], b" ", 0.3, limit)
                       for _ in range(20)]
        dropped_after = await asyncio.gather(*slow_headers, *slow_bodies)
        served_meanwhile = len(load.figures.commands_ok) - served_before
    outcome = Outcome(load, load.verdict, [])
    record("slow_loris", faults=len(dropped_after), acknowledged=outcome.verdict.acknowledged,
           lost=outcome.verdict.lost, duplicates=outcome.verdict.duplicates,
           errors_5xx=len(load.figures.errors_5xx), hangs=len(load.figures.hangs))
    assert all(d is not None for d in dropped_after), (
        f"slow clients still connected after {limit} s: {dropped_after}")
    assert max(d for d in dropped_after if d is not None) <= SLOW_CLIENT_TIMEOUT_S + 3, \
        dropped_after
    assert served_meanwhile > 0, "nobody else was served while slow clients were connected"
    assert_clean(outcome, mesh)
