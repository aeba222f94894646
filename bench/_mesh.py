"""The whole platform for a benchmark: embedded servers and ``albatross up`` over them.

Used by ``bench/e2e.py`` and ``bench/growth.py`` (not a benchmark itself: no JSON line).

:class:`Mesh` starts nats-server and PostgreSQL with the same classes and defaults that
``albatross up`` uses for its embedded servers, then runs the real supervisor (``python -m
albatross.cli up``) with ``ALBATROSS_NATS_URL``/``ALBATROSS_DATABASE_URL`` pointing at them, so
bootstrap, the gateway, the projector and the notifier are exactly the processes a user gets.
Starting the servers here rather than inside ``up`` gives the benchmark their URLs (for
baselines and direct appends) and their pids. The services' JSON logs go to files in the work
directory, never to the benchmark's stdout (which holds only the one JSON line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from albatross.infra._process import free_port
from albatross.infra.nats_server import NatsServer
from albatross.infra.postgres_server import PostgresServer

if __package__:
    from bench import _common as common
else:  # run as a script: bench/ is on sys.path
    import _common as common  # type: ignore[no-redef]

ADMIN_EMAIL = "bench-admin@albatross.test"
PASSWORD = "bench password 123"
SERVICES = ("gateway", "projector", "notifier")


def proc_status_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS: resident now; VmHWM: peak resident)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def _children(parent: int) -> dict[int, str]:
    """Live child pids of ``parent`` and their command lines (Linux /proc)."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[1]) != parent:
                continue
            out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
    return out


class ApiError(RuntimeError):
    pass


async def api(http: Any, method: str, url: str, *, token: str | None = None,
              api_key: str | None = None, expect: int = 200, **kwargs: Any) -> Any:
    """One HTTP call that must answer ``expect``; the decoded JSON body."""
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if api_key:
        headers["X-API-Key"] = api_key
    async with http.request(method, url, headers=headers, **kwargs) as response:
        text = await response.text()
        if response.status != expect:
            raise ApiError(f"{method} {url}: {response.status} {text[:300]}")
        return json.loads(text) if text else None


class Mesh:
    """nats-server + PostgreSQL + ``albatross up`` (bootstrap, gateway, projector, notifier)."""

    def __init__(self, root: Path, *, sync_always: bool = True) -> None:
        self.root = root
        self.nats = NatsServer(root / "nats", sync_always=sync_always)
        self.pg = PostgresServer(root / "postgres")
        self.http_port, self.projector_port, self.notifier_port = (free_port(), free_port(),
                                                                   free_port())
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.pids: dict[str, tuple[int, ...]] = {}
        self._up: asyncio.subprocess.Process | None = None
        self._started: list[NatsServer | PostgresServer] = []

    async def start(self) -> None:
        common.progress("starting nats-server and PostgreSQL")
        await asyncio.gather(self.nats.start(), self.pg.start())
        self._started = [self.nats, self.pg]
        env = {**os.environ, "ALBATROSS_NATS_URL": self.nats.url,
               "ALBATROSS_DATABASE_URL": self.pg.dsn, "ALBATROSS_DATA_DIR": str(self.root),
               "ALBATROSS_HTTP_HOST": "127.0.0.1", "ALBATROSS_HTTP_PORT": str(self.http_port),
               "ALBATROSS_PROJECTOR_PORT": str(self.projector_port),
               "ALBATROSS_NOTIFIER_PORT": str(self.notifier_port),
               "ALBATROSS_ADMIN_EMAIL": ADMIN_EMAIL, "ALBATROSS_ADMIN_PASSWORD": PASSWORD,
               "ALBATROSS_LOG_LEVEL": "warning", "ALBATROSS_DEV": "false"}
        common.progress("starting albatross up (bootstrap, gateway, projector, notifier)")
        with (self.root / "up.out.log").open("wb") as out, \
                (self.root / "up.err.log").open("wb") as err:
            self._up = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "albatross.cli", "up", env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out.fileno(), stderr=err.fileno())
        await self._wait_ready()
        self.pids = self._service_pids()
        common.progress(f"mesh ready: {self.base} pids {self.pids}")

    async def _wait_ready(self, timeout: float = 120.0) -> None:
        import aiohttp

        urls = [f"{self.base}/readyz", f"http://127.0.0.1:{self.projector_port}/readyz",
                f"http://127.0.0.1:{self.notifier_port}/readyz"]
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            for url in urls:
                while True:
                    if self._up is not None and self._up.returncode is not None:
                        raise RuntimeError(f"albatross up exited ({self._up.returncode}): "
                                           f"{self.log_tail()}")
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with http.get(url) as response:
                            if response.status == 200:
                                break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} never became ready: {self.log_tail()}")
                    await asyncio.sleep(0.25)

    def _service_pids(self) -> dict[str, tuple[int, ...]]:
        """Each service's processes (the gateway may run several on its port)."""
        assert self._up is not None
        found: dict[str, list[int]] = {}
        for pid, cmdline in sorted(_children(self._up.pid).items()):
            for name in SERVICES:
                if f"albatross.services.{name}.main" in cmdline:
                    found.setdefault(name, []).append(pid)
        missing = set(SERVICES) - set(found)
        if missing:
            raise RuntimeError(f"albatross up runs no {sorted(missing)}")
        return {name: tuple(pids) for name, pids in found.items()}

    def restarts_seen(self) -> bool:
        """True when a service's pid changed (the supervisor restarted it): figures suspect."""
        return self._service_pids() != self.pids

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each service, nats-server and PostgreSQL (with its
        workers and autovacuum)."""
        roots: dict[str, int | tuple[int, ...]] = dict(self.pids)
        for name, server in (("nats-server", self.nats), ("postgres", self.pg)):
            if server.pid is not None:
                roots[name] = server.pid
        return common.cpu_by_role(roots)

    def memory_kib(self) -> dict[str, dict[str, int]]:
        """Each service's resident memory, summed over its processes."""
        return {name: {"rss_kib": sum(proc_status_kib(pid) for pid in pids),
                       "hwm_kib": sum(proc_status_kib(pid, "VmHWM") for pid in pids)}
                for name, pids in self.pids.items()}

    def log_tail(self, lines: int = 12) -> str:
        path = self.root / "up.err.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def admin_token(self, http: Any) -> str:
        login = await api(http, "POST", f"{self.base}/api/auth/login",
                          json={"email": ADMIN_EMAIL, "password": PASSWORD})
        return str(login["token"])

    async def stop(self) -> None:
        if self._up is not None and self._up.returncode is None:
            self._up.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._up.wait(), 20)
            except TimeoutError:
                self._up.kill()
                await self._up.wait()
        for server in reversed(self._started):
            with contextlib.suppress(Exception):
                await server.stop()


async def pilot_with_key(http: Any, mesh: Mesh, token: str, tenant_id: str,
                         email: str) -> tuple[str, str]:
    """A Pilot of ``tenant_id`` created through the API, and an API key of theirs."""
    pilot = await api(http, "POST", f"{mesh.base}/api/users", token=token, expect=201, json={
        "email": email, "display_name": "Bench Pilot", "password": PASSWORD, "role": "Pilot",
        "tenant_id": tenant_id})
    key = await api(http, "POST", f"{mesh.base}/api/users/{pilot['id']}/apikeys", token=token,
                    expect=201, json={"name": "bench"})
    return str(pilot["id"]), str(key["key"])


async def run_child(script: Path, mode: str, spec: dict[str, Any],
                    timeout: float = 300.0) -> dict[str, Any]:
    """Run ``python script mode -`` (a load process) and parse its last stdout line.

    The spec goes through stdin (:func:`child_spec` reads it): a list of ids can exceed the
    kernel's limit on one argument.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), mode, "-", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(process.communicate(json.dumps(spec).encode()), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{script.name} {mode} failed (exit {process.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_spec(argument: str) -> dict[str, Any]:
    """A child's spec: JSON in the argument, or on stdin when the argument is ``-``."""
    spec: dict[str, Any] = json.loads(sys.stdin.read() if argument == "-" else argument)
    return spec


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
