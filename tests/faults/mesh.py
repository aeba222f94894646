"""A real mesh for fault tests: nats-server(s), PostgreSQL, bootstrap, then one gateway, one
projector and one notifier as separate processes, each of which can be SIGKILLed and restarted
on the same port."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
from nats.aio.client import Client as NATS

from albatross.infra._process import free_ports, log_tail
from albatross.infra.nats_server import NatsCluster, NatsServer
from albatross.infra.postgres_server import PostgresServer
from tests.faults.processes import Service, spawn, wait_ready

ADMIN = "faults-admin@albatross.test"
ADMIN_PASSWORD = "a fault-tolerant admin password"
PASSWORD = "a pilot's long password"
PORT_VARS = {"gateway": "ALBATROSS_HTTP_PORT", "projector": "ALBATROSS_PROJECTOR_PORT",
             "notifier": "ALBATROSS_NOTIFIER_PORT"}
BOOTSTRAP_TIMEOUT = 90.0


@dataclass
class Crew:
    """One tenant with its tenant admin (reviewer) and pilots, logged in."""

    tenant_id: str
    chief: str
    pilots: list[str]


@dataclass
class Mesh:
    nats: NatsServer | NatsCluster
    postgres: PostgresServer
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def nats_urls(self) -> list[str]:
        return self.nats.urls if isinstance(self.nats, NatsCluster) else [self.nats.url]

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    async def start(self, *, replicas: int = 1, extra_env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALBATROSS_")}
        ports = free_ports(3)
        self.ports = dict(zip(PORT_VARS, ports, strict=True))
        env.update({
            "ALBATROSS_NATS_URL": ",".join(self.nats_urls),
            "ALBATROSS_DATABASE_URL": self.postgres.dsn,
            "ALBATROSS_STREAM_REPLICAS": str(replicas),
            "ALBATROSS_HTTP_HOST": "127.0.0.1",
            "ALBATROSS_ADMIN_EMAIL": ADMIN,
            "ALBATROSS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            **{PORT_VARS[name]: str(port) for name, port in self.ports.items()},
            **(extra_env or {}),
        })
        self.env = env
        bootstrap = spawn("bootstrap", "albatross.services.bootstrap.main", env, self.logs)
        code = await asyncio.to_thread(bootstrap.popen.wait, BOOTSTRAP_TIMEOUT)
        assert code == 0, f"bootstrap exited {code}\n{bootstrap.tail()}"
        for name in PORT_VARS:
            self.services[name] = self._spawn(name)
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(wait_ready(http, s) for s in self.services.values()))

    def _spawn(self, name: str) -> Service:
        return spawn(name, f"albatross.services.{name}.main", self.env, self.logs,
                     PORT_VARS[name], self.ports[name])

    def kill(self, name: str) -> None:
        self.services[name].kill()

    def restart(self, name: str) -> float:
        """Start ``name`` again on its port; the monotonic time it was started."""
        assert self.services[name].popen.poll() is not None, f"{name} is still running"
        self.services[name] = self._spawn(name)
        return time.monotonic()

    async def wait_ready(self, name: str) -> None:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, self.services[name])

    async def stop(self) -> None:
        for service in self.services.values():
            service.kill()
        await self.postgres.stop()
        await self.nats.stop()

    def tails(self) -> str:
        parts = [s.tail() for s in self.services.values()]
        servers = self.nats.servers if isinstance(self.nats, NatsCluster) else [self.nats]
        parts += [f"--- nats {n.server_name} ---\n{log_tail(n.log_path, 10)}" for n in servers]
        parts.append(f"--- postgres ---\n{log_tail(self.postgres.log_path, 10)}")
        return "\n".join(parts)

    async def connect_nats(self) -> NATS:
        return await nats.connect(self.nats_urls, connect_timeout=5, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.5)

    async def checkpoint(self) -> int:
        connection = await asyncpg.connect(self.dsn, timeout=5)
        try:
            return int(await connection.fetchval(
                "SELECT last_sequence FROM read_model.projection_checkpoint"))
        finally:
            await connection.close()

    async def wait_caught_up(self, sequence: int, timeout: float = 30.0) -> float:
        """Seconds until the read models reflect ``sequence`` (polls PostgreSQL)."""
        began = time.monotonic()
        last: object = None
        while time.monotonic() - began < timeout:
            try:
                if await self.checkpoint() >= sequence:
                    return time.monotonic() - began
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                last = exc  # PostgreSQL is still on its way back
            await asyncio.sleep(0.05)
        raise AssertionError(f"read models never reached {sequence} within {timeout} s "
                             f"(last error: {last!r})")

    async def crew(self, pilots: int = 2) -> Crew:
        """A fresh tenant with a tenant admin and ``pilots`` pilots, all logged in."""
        async with aiohttp.ClientSession(base_url=self.gateway) as http:
            admin = await _login(http, ADMIN, ADMIN_PASSWORD)
            icao = "".join(chr(65 + b % 26) for b in uuid.uuid4().bytes[:3])
            tenant = await _post(http, "/api/tenants", admin,
                                 {"name": f"Faulty Air {icao}", "icao": icao})
            suffix = uuid.uuid4().hex[:8]
            emails = [(f"chief-{suffix}@example.com", "TenantAdmin")] + [
                (f"pilot{n}-{suffix}@example.com", "Pilot") for n in range(pilots)]
            for email, role in emails:
                await _post(http, "/api/users", admin, {
                    "email": email, "display_name": role, "password": PASSWORD,
                    "role": role, "tenant_id": tenant["id"]})
            tokens = [await _login(http, email, PASSWORD) for email, _ in emails]
        return Crew(tenant_id=tenant["id"], chief=tokens[0], pilots=tokens[1:])


async def _login(http: aiohttp.ClientSession, email: str, password: str) -> str:
    async with http.post("/api/auth/login", json={"email": email, "password": password}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["token"])


async def _post(http: aiohttp.ClientSession, path: str, token: str,
                body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        answer: dict[str, Any] = await r.json()
        assert r.status == 201, (path, answer)
        return answer
