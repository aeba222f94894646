"""The stream leader of a 3-node JetStream cluster (R3) killed and restarted under load: clients
see slower answers or 503 with Retry-After, never a 500; nothing lost, nothing doubled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from albatross.infra.nats_server import NatsCluster
from albatross.infra.postgres_server import PostgresServer
from tests.faults.mesh import Mesh
from tests.faults.scenario import assert_clean, assert_recovered, leader_kill, run_fault
from tests.infra_fixtures import _postgres_base_dir

pytestmark = [pytest.mark.real, pytest.mark.slow]

# Down long enough for an election (4-8 s measured) to happen without it.
LEADER_OUTAGE_S = 6.0


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    base = tmp_path_factory.mktemp("faults-cluster")
    with _postgres_base_dir(tmp_path_factory, "faults-cluster-pg") as pg_base:
        cluster = NatsCluster(base / "cluster", size=3)
        postgres = PostgresServer(pg_base / "data")
        running = Mesh(cluster, postgres, base / "logs")
        try:
            await cluster.start()
            await postgres.start()
            await running.start(replicas=3)
            yield running
        finally:
            await running.stop()


async def test_stream_leader_killed_and_restarted_under_load(mesh: Mesh) -> None:
    assert isinstance(mesh.nats, NatsCluster)
    kind = "nats_leader_kill"
    outcome = await run_fault(mesh, kind, seed=3,
                              inject=leader_kill(mesh, mesh.nats, LEADER_OUTAGE_S))
    assert_clean(outcome, mesh)
    assert_recovered(outcome, kind)
