"""Shared plumbing for the embedded servers: free ports, child processes, log tails.

Children are started with :class:`subprocess.Popen` rather than asyncio's subprocess API so
that a server object is not tied to the event loop that started it (pytest fixtures and
``albatross up`` may use different loops), and so that :meth:`ChildProcess.kill` can stay
synchronous for fault-injection tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

_log = logging.getLogger(__name__)


class InfraError(RuntimeError):
    """An embedded or containerised server could not be started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nobody listens on right now.

    The port is released before the caller binds it, so another process may take it in
    between; the kernel hands out ephemeral ports in a way that makes that rare.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (held open together, so none is handed out twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note when there is none."""
    try:
        with path.open("rb") as handle:
            # Logs of long-lived servers grow; only the end explains a failed start.
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(text.splitlines()[-lines:])


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ChildProcess:
    """One server process whose output goes to a log file.

    The child runs in its own session so that a Ctrl-C in the terminal reaches only the
    Python process, which then shuts services and servers down in order.
    """

    def __init__(self, argv: Sequence[str], log_path: Path, *, user: str | None = None,
                 pass_fds: Sequence[int] = (), cwd: Path | None = None) -> None:
        self._argv = list(argv)
        self._log_path = log_path
        self._user = user
        self._pass_fds = tuple(pass_fds)
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def spawn(self) -> None:
        if self.running:
            raise InfraError(f"{self._argv[0]} is already running (pid {self.pid})")
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with self._log_path.open("ab") as log:
            # A user is only given when running as root: PostgreSQL refuses to run as root,
            # so it runs as a dedicated user without root's supplementary groups.
            self._popen = subprocess.Popen(  # noqa: S603 - argv is built by this package
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self._pass_fds,
                cwd=self._cwd,
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user is not None else None,
            )
        _log.debug("started %s (pid %s), log %s", self._argv[0], self.pid, self._log_path)

    def send_signal(self, sig: int) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process and reap it; a no-op when it is not running."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self._popen.kill()
        # SIGKILL cannot be caught, so the wait is bounded by the kernel tearing it down.
        self._popen.wait(timeout=10)

    async def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self._popen.send_signal(sig)
        if not await self.wait(timeout):
            _log.warning("%s (pid %s) ignored signal %s for %.1f s; killing it",
                         self._argv[0], self.pid, sig, timeout)
            self.kill()

    async def wait(self, timeout: float) -> bool:
        """Wait for the process to exit; whether it did within ``timeout``."""
        if self._popen is None:
            return True
        deadline = time.monotonic() + timeout
        while self._popen.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


async def http_get(port: int, path: str, *, host: str = "127.0.0.1",
                   timeout: float = 1.0) -> tuple[int, bytes]:
    """A bare HTTP/1.0 GET, enough to poll a monitoring endpoint without a client library."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii"))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise InfraError(f"malformed HTTP response from {host}:{port}{path}: {raw[:80]!r}")
    return int(status_line[1]), body
