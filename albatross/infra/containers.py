"""NATS and PostgreSQL in Docker containers, through testcontainers.

The alternative to the embedded servers when tests should run against the official images
(``ALBATROSS_TEST_INFRA=containers``). testcontainers and the Docker SDK are imported only
when a container is started or Docker is probed, so this module imports without them.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from albatross.infra._process import InfraError

DEFAULT_NATS_IMAGE = "nats:2.15"
DEFAULT_POSTGRES_IMAGE = "postgres:18"


class DockerUnavailable(InfraError):
    """No Docker engine answers, so containers cannot be started."""


def _docker_error(exc: BaseException) -> DockerUnavailable:
    return DockerUnavailable(
        f"no Docker engine answers ({type(exc).__name__}: {exc}); start Docker, set "
        "DOCKER_HOST, or use the embedded servers (unset ALBATROSS_TEST_INFRA)"
    )


def ensure_docker(timeout: float = 2.0) -> None:
    """Raise :class:`DockerUnavailable` unless a Docker engine answers a ping in time."""
    try:
        import docker  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise DockerUnavailable(
            "the Docker SDK is not installed (`pip install testcontainers`)"
        ) from exc
    client: Any = None
    try:
        # from_env already asks the engine for its API version, so it fails fast when no
        # socket exists; the ping covers an engine that accepts but does not answer.
        client = docker.from_env(timeout=timeout)
        if not client.ping():
            raise DockerUnavailable("the Docker engine did not answer the ping")
    except DockerUnavailable:
        raise
    except Exception as exc:
        raise _docker_error(exc) from exc
    finally:
        if client is not None:
            client.close()


def docker_available(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers (see :func:`ensure_docker`)."""
    try:
        ensure_docker(timeout)
    except DockerUnavailable:
        return False
    return True


class NatsContainerServer:
    """``nats-server -js`` in a container; ``url`` once started.

    The image's default sync interval applies (no ``sync_interval: always``): containers are
    for functional tests, the fault tests that need fsync use the embedded server.
    """

    def __init__(self, image: str = DEFAULT_NATS_IMAGE) -> None:
        self._image = image
        self._container: Any = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise InfraError("the NATS container has not been started")
        return self._url

    async def start(self) -> None:
        await asyncio.to_thread(ensure_docker)
        self._container, self._url = await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> tuple[Any, str]:
        from testcontainers.community.nats import NatsContainer

        container = NatsContainer(self._image, jetstream=True)
        container.start()
        try:
            host, port = container.nats_host_and_port()
            return container, f"nats://{host}:{port}"
        except BaseException:
            container.stop()
            raise

    async def stop(self) -> None:
        container, self._container, self._url = self._container, None, None
        if container is not None:
            await asyncio.to_thread(container.stop)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


class PostgresContainerServer:
    """The official PostgreSQL image with a database ``albatross``; ``dsn`` once started."""

    def __init__(self, image: str = DEFAULT_POSTGRES_IMAGE, *, user: str = "albatross",
                 password: str = "albatross",  # noqa: S107 - a throwaway test container
                 database: str = "albatross") -> None:
        self._image = image
        self._user = user
        self._password = password
        self._database = database
        self._container: Any = None
        self._dsn: str | None = None

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise InfraError("the PostgreSQL container has not been started")
        return self._dsn

    async def start(self) -> None:
        await asyncio.to_thread(ensure_docker)
        self._container, self._dsn = await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> tuple[Any, str]:
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(self._image, username=self._user,
                                      password=self._password, dbname=self._database,
                                      driver=None)
        container.start()
        try:
            return container, str(container.get_connection_url(driver=None))
        except BaseException:
            container.stop()
            raise

    async def stop(self) -> None:
        container, self._container, self._dsn = self._container, None, None
        if container is not None:
            await asyncio.to_thread(container.stop)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
