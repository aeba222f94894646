"""Faults under load on one nats-server: SIGKILL of each service, of nats-server, and a
PostgreSQL restart. After each: nothing acknowledged lost or doubled, no 5xx but 503
``unavailable``, no hang, and recovery within the targets."""

from __future__ import annotations

import pytest

from albatross.infra.nats_server import NatsServer
from tests.faults.mesh import Mesh
from tests.faults.scenario import (
    assert_clean,
    assert_recovered,
    nats_kill,
    postgres_restart,
    process_kill,
    run_fault,
)

pytestmark = [pytest.mark.real, pytest.mark.slow]

# Longer than the gateway's own retry budget (8 s), so that clients really see 503s.
NATS_OUTAGE_S = 9.0
POSTGRES_OUTAGE_S = 3.0


@pytest.mark.parametrize("service", ["gateway", "projector", "notifier"])
async def test_sigkill_of_a_service_under_load(mesh: Mesh, service: str) -> None:
    outcome = await run_fault(mesh, f"{service}_kill", seed=hash(service) % 1000,
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
