"""deploy/k8s/base/wait_for_bootstrap.py (every Deployment's init container) waits for real.

It must keep a pod waiting while bootstrap has not run, and let it start once the streams
exist and the image's migrations are applied. Checked against embedded nats-server and
PostgreSQL, as the init container would check the real ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import nats
import pytest

from albatross.adapters.jetstream.topology import Topology, ensure_topology
from albatross.adapters.postgres.migrations import READER_ROLE, apply_migrations
from albatross.adapters.postgres.roles import enable_reader_login
from albatross.infra.nats_server import NatsServer
from tests.deploy.tools import K8S
from tests.infra_fixtures import login_as

pytestmark = pytest.mark.real
SCRIPT = K8S / "base" / "wait_for_bootstrap.py"
_T = TypeVar("_T")


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def wait(nats_url: str, database_url: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALBATROSS_NATS_URL": nats_url, "ALBATROSS_DATABASE_URL": database_url,
           "WAIT_TIMEOUT_SECONDS": str(timeout), "WAIT_INTERVAL_SECONDS": "0.2"}
    return subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


async def _bootstrap(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        await ensure_topology(nc.jetstream(), Topology())
    finally:
        await nc.close()


def test_waits_for_the_streams_then_lets_the_pod_start(fresh_nats: NatsServer,
                                                       database_url: str) -> None:
    _run(apply_migrations(database_url))
    before = wait(fresh_nats.url, database_url, timeout=1)
    assert before.returncode == 1, before.stdout + before.stderr
    assert "ALBATROSS_EVENTS" in before.stdout + before.stderr
    _run(_bootstrap(fresh_nats.url))
    after = wait(fresh_nats.url, database_url, timeout=10)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "bootstrap is done" in after.stdout


async def _fresh_database(database_url: str) -> str:
    name = f"wait_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))


def test_waits_for_the_migrations(fresh_nats: NatsServer, database_url: str) -> None:
    _run(_bootstrap(fresh_nats.url))
    empty = _run(_fresh_database(database_url))
    before = wait(fresh_nats.url, empty, timeout=1)
    assert before.returncode == 1, before.stdout + before.stderr
    assert "no migration applied yet" in before.stdout
    _run(apply_migrations(empty))
    after = wait(fresh_nats.url, empty, timeout=10)
    assert after.returncode == 0, after.stdout + after.stderr


def test_an_unreachable_database_keeps_it_waiting(fresh_nats: NatsServer) -> None:
    _run(_bootstrap(fresh_nats.url))
    result = wait(fresh_nats.url, "postgresql://nobody:x@127.0.0.1:1/none", timeout=1)
    assert result.returncode == 1
    assert "unreachable" in result.stdout


async def _reader_url(database_url: str, password: str) -> str:
    """A fresh database, migrated, whose read-only role logs in with ``password``."""
    url = await _fresh_database(database_url)
    await apply_migrations(url)
    await enable_reader_login(url, password)
    return login_as(url, READER_ROLE, password)


async def _disable_reader_login(database_url: str) -> None:
    """Roles are cluster-wide: other tests expect the reader to be NOLOGIN, as created."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"ALTER ROLE {READER_ROLE} NOLOGIN PASSWORD NULL")
    finally:
        await connection.close()


def test_the_gateway_pod_waits_with_the_read_only_login(fresh_nats: NatsServer,
                                                        database_url: str) -> None:
    _run(_bootstrap(fresh_nats.url))
    try:
        reader = _run(_reader_url(database_url, f"reader{uuid.uuid4().hex}"))
        result = wait(fresh_nats.url, reader, timeout=10)
    finally:
        _run(_disable_reader_login(database_url))
    assert result.returncode == 0, result.stdout + result.stderr
