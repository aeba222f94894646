"""The servers ``albatross up`` needs: embedded ones unless URLs of running ones are given."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from albatross.infra.nats_server import NatsServer
from albatross.infra.postgres_server import PostgresServer
from albatross.observability import get_logger

_log = get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class Infrastructure:
    """Where the running servers are."""

    nats_url: str
    database_url: str


class NatsEndpoint(Protocol):
    """Anything that has a NATS URL: embedded server, container, or external server."""

    @property
    def url(self) -> str: ...


class PostgresEndpoint(Protocol):
    """Anything that has a PostgreSQL DSN: embedded server, container, or external server."""

    @property
    def dsn(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class ExternalNats:
    """A NATS server somebody else runs (``ALBATROSS_NATS_URL``); nothing to start."""

    url: str


@dataclasses.dataclass(frozen=True)
class ExternalPostgres:
    """A PostgreSQL server somebody else runs (``ALBATROSS_DATABASE_URL``)."""

    dsn: str


@contextlib.asynccontextmanager
async def infrastructure(
    data_dir: Path,
    *,
    nats_url: str | None = None,
    database_url: str | None = None,
) -> AsyncIterator[Infrastructure]:
    """Start what is missing, yield where everything is, and stop what was started.

    Without ``nats_url`` an embedded nats-server keeps its JetStream store in
    ``data_dir/"nats"``; without ``database_url`` an embedded PostgreSQL keeps its data in
    ``data_dir/"postgres"``. Both directories survive, so the next run finds the data again.
    The two servers start concurrently; if one fails, the other is stopped too.
    """
    nats = NatsServer(data_dir / "nats") if nats_url is None else None
    postgres = PostgresServer(data_dir / "postgres") if database_url is None else None
    started = [server for server in (nats, postgres) if server is not None]
    try:
        try:
            async with asyncio.TaskGroup() as group:
                for server in started:
                    group.create_task(server.start())
        except BaseExceptionGroup as failure:
            # One failure is the common case; the group wrapper only obscures it.
            if len(failure.exceptions) == 1:
                raise failure.exceptions[0] from None
            raise
        watcher = asyncio.create_task(keep_running(started), name="infra.keep_running")
        try:
            yield Infrastructure(
                nats_url=nats.url if nats is not None else str(nats_url),
                database_url=postgres.dsn if postgres is not None else str(database_url),
            )
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    finally:
        # Shielded so a cancelled `albatross up` still leaves no server behind.
        await asyncio.shield(_stop_all(started))


async def keep_running(servers: list[NatsServer | PostgresServer], *,
                       interval: float = 1.0, max_delay: float = 30.0) -> None:
    """Start again, on the same ports and data, an embedded server that exited on its own
    (crashed, killed, out of memory), as the supervisor does for the services: they reconnect.
    Checking reaps the dead process too, so none lingers as a zombie. Failed starts are tried
    again at doubling intervals, up to ``max_delay``."""
    failures = 0
    while True:
        await asyncio.sleep(min(max_delay, interval * 2 ** failures))
        failed = False
        for server in servers:
            if server.running:
                continue
            name = type(server).__name__
            _log.error("embedded server exited; starting it again", server=name)
            try:
                await server.restart()
            except Exception as exc:
                _log.error("starting an embedded server again failed", server=name,
                           error=repr(exc))
                failed = True
            else:
                _log.info("embedded server running again", server=name)
        failures = min(failures + 1, 16) if failed else 0


async def _stop_all(servers: list[NatsServer | PostgresServer]) -> None:
    results = await asyncio.gather(*(server.stop() for server in servers),
                                   return_exceptions=True)
    for server, result in zip(servers, results, strict=True):
        if isinstance(result, BaseException):
            _log.error("stopping an embedded server failed", server=type(server).__name__,
                       error=repr(result))
