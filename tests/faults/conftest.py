"""One real mesh per test module: a single nats-server, PostgreSQL and the services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from albatross.infra.nats_server import NatsServer
from albatross.infra.postgres_server import PostgresServer
from tests.faults.mesh import Mesh
from tests.infra_fixtures import _postgres_base_dir

# Short header/body timeouts so that the slow-loris test drops its clients quickly.
SHORT_TIMEOUTS = {"ALBATROSS_HTTP_HEADER_TIMEOUT": "2", "ALBATROSS_HTTP_BODY_TIMEOUT": "2"}


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    base = tmp_path_factory.mktemp("faults")
    with _postgres_base_dir(tmp_path_factory, "faults-pg") as pg_base:
        nats_server = NatsServer(base / "nats")
        postgres = PostgresServer(pg_base / "data")
        running = Mesh(nats_server, postgres, base / "logs")
        try:
            await nats_server.start()
            await postgres.start()
            await running.start(extra_env=SHORT_TIMEOUTS)
            yield running
        finally:
            await running.stop()
