"""pytest fixtures for real servers: embedded by default, containers or external on request.

Registered from ``tests/conftest.py`` with ``pytest_plugins = ["tests.infra_fixtures"]``.

Environment:

* ``ALBATROSS_TEST_INFRA``: ``embedded`` (default) runs nats-server and PostgreSQL as child
  processes; ``containers`` runs them in Docker through testcontainers (tests that need them
  are skipped when no Docker engine answers).
* ``ALBATROSS_NATS_URL`` / ``ALBATROSS_DATABASE_URL``: use these running servers instead.

The session fixtures start their server the first time a test asks for it, never otherwise.

The fixtures are synchronous on purpose: they start and stop servers on a private event loop
in a worker thread (the server classes are not tied to a loop). pytest-asyncio cannot set up
an async fixture from ``request.getfixturevalue`` inside another async fixture (the loop is
already running), and the contract suites use exactly that to start NATS only for their
JetStream parameter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import nats
import pytest
from nats.aio.client import Client as NATS

from albatross.infra.containers import (
    DockerUnavailable,
    NatsContainerServer,
    PostgresContainerServer,
)
from albatross.infra.nats_server import NatsCluster, NatsServer
from albatross.infra.postgres_server import PostgresServer
from albatross.infra.provider import (
    ExternalNats,
    ExternalPostgres,
    NatsEndpoint,
    PostgresEndpoint,
)

_MODES = ("embedded", "containers")
_T = TypeVar("_T")


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a fresh loop in a worker thread, whatever loop runs here."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="infra") as pool:
        return pool.submit(asyncio.run, coro).result()


def _infra_mode() -> str:
    mode = os.environ.get("ALBATROSS_TEST_INFRA", "").strip().lower() or "embedded"
    if mode not in _MODES:
        raise pytest.UsageError(
            f"ALBATROSS_TEST_INFRA={mode!r}: expected one of {', '.join(_MODES)}"
        )
    return mode


@contextlib.contextmanager
def _postgres_base_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A folder for PostgreSQL data that stays reachable while the server runs.

    As root, PostgreSQL runs as another user, who needs search permission on every parent
    folder for as long as the server runs. pytest resets ``/tmp/pytest-of-root`` to 0700
    whenever *any* session starts, which would cut a running server off its data (it then
    PANICs at the next checkpoint), so as root the data goes to a folder of its own in /tmp.
    """
    if os.geteuid() != 0:
        yield tmp_path_factory.mktemp(name)
        return
    base = Path(tempfile.mkdtemp(prefix=f"albatross-{name}-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private folder for a test that runs its own :class:`PostgresServer` (see above)."""
    with _postgres_base_dir(tmp_path_factory, "pg") as base:
        yield base


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsEndpoint]:
    """The session's NATS server; an :class:`ExternalNats` when ``ALBATROSS_NATS_URL`` is set.

    Shared by the whole session: tests that kill or restart a server use ``fresh_nats``.
    """
    external = os.environ.get("ALBATROSS_NATS_URL", "").strip()
    if external:
        yield ExternalNats(external)
        return
    if _infra_mode() == "containers":
        container = NatsContainerServer()
        try:
            _run(container.start())
        except DockerUnavailable as exc:
            pytest.skip(f"ALBATROSS_TEST_INFRA=containers: {exc}")
        try:
            yield container
        finally:
            _run(container.stop())
        return
    server = NatsServer(tmp_path_factory.mktemp("nats-session") / "store")
    _run(server.start())
    try:
        yield server
    finally:
        _run(server.stop())


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsEndpoint) -> str:
    return nats_server.url


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresEndpoint]:
    """The session's PostgreSQL; an :class:`ExternalPostgres` for ``ALBATROSS_DATABASE_URL``."""
    external = os.environ.get("ALBATROSS_DATABASE_URL", "").strip()
    if external:
        yield ExternalPostgres(external)
        return
    if _infra_mode() == "containers":
        container = PostgresContainerServer()
        try:
            _run(container.start())
        except DockerUnavailable as exc:
            pytest.skip(f"ALBATROSS_TEST_INFRA=containers: {exc}")
        try:
            yield container
        finally:
            _run(container.stop())
        return
    with _postgres_base_dir(tmp_path_factory, "postgres-session") as base:
        server = PostgresServer(base / "data")
        _run(server.start())
        try:
            yield server
        finally:
            _run(server.stop())


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresEndpoint) -> str:
    return postgres_server.dsn


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A private nats-server for one test, free to be killed and restarted.

    Always embedded, whatever ``ALBATROSS_TEST_INFRA`` says: fault tests need the process.
    """
    server = NatsServer(tmp_path / "nats")
    _run(server.start())
    try:
        yield server
    finally:
        _run(server.stop())


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A private three-node cluster for one test (always embedded, like ``fresh_nats``)."""
    cluster = NatsCluster(tmp_path / "cluster", size=3)
    _run(cluster.start())
    try:
        yield cluster
    finally:
        _run(cluster.stop())


def login_as(dsn: str, user: str, password: str) -> str:
    """``dsn`` with another user and password (same host, port and database)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def until_ready(base: str, processes: list[asyncio.subprocess.Process],
                      timeout: float = 30.0) -> None:
    """Wait until ``{base}/readyz`` answers 200; fails if a process exits first."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert all(p.returncode is None for p in processes), "a process exited early"
            assert asyncio.get_running_loop().time() < deadline, f"{base} never became ready"
            await asyncio.sleep(0.1)


async def reconnecting_client(server: NatsServer) -> NATS:
    """A client that reconnects for ever, as the services' do, but every 0.1 s."""
    return await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                              connect_timeout=2)
