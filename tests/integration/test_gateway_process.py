"""The albatross-gateway process: starts on real NATS + PostgreSQL, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.config import Settings
from albatross.infra._process import free_port
from albatross.infra.nats_server import NatsServer
from albatross.services.bootstrap.main import bootstrap
from albatross.services.up import gateway_services
from tests.infra_fixtures import until_ready

pytestmark = [pytest.mark.real, pytest.mark.slow]
ADMIN = "ops@albatross.test"
PASSWORD = "a chosen password"


async def _bootstrapped(nats_url: str, database_url: str) -> dict[str, str]:
    """The environment of a gateway on a freshly bootstrapped NATS and database."""
    env = {"ALBATROSS_NATS_URL": nats_url, "ALBATROSS_DATABASE_URL": database_url,
           "ALBATROSS_ADMIN_EMAIL": ADMIN, "ALBATROSS_ADMIN_PASSWORD": PASSWORD}
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
    try:
        await bootstrap(Settings.from_env(env), out=io.StringIO(), hasher=hasher)
    finally:
        hasher.close()
    return env


async def test_gateway_serves_and_stops_cleanly_on_sigterm(fresh_nats: NatsServer,
                                                           database_url: str,
                                                           tmp_path: Path) -> None:
    env = await _bootstrapped(fresh_nats.url, database_url)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "albatross.services.gateway.main",
        env={**os.environ, **env, "ALBATROSS_HTTP_PORT": str(port),
             "ALBATROSS_WEB_DIR": str(tmp_path / "no-ui")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await until_ready(base, [process])
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/auth/login",
                                 json={"email": ADMIN, "password": PASSWORD}) as response:
                assert response.status == 200
                token = (await response.json())["token"]
            async with http.get(f"{base}/api/me",
                                headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200
                assert (await response.json())["role"] == "PlatformAdmin"
            async with http.get(f"{base}/metrics") as response:
                assert "albatross_http_requests_total" in await response.text()
            async with http.get(f"{base}/") as response:
                assert response.status == 404  # no UI built there: said at start-up (below)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=10)
        assert code == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = (await process.stdout.read()).decode() if process.stdout else ""  # type: ignore[union-attr]
    assert PASSWORD not in out
    assert token not in out
    assert '"web UI not served: no such directory"' in out
    assert str(tmp_path / "no-ui") in out


async def _listening(process: asyncio.subprocess.Process) -> asyncio.Task[bytes]:
    """Once the process logs that it listens: a task reading the rest of its output (a full
    pipe would block its logging)."""
    assert process.stdout is not None
    async for line in process.stdout:
        if b'"gateway listening"' in line:
            return asyncio.get_running_loop().create_task(process.stdout.read())
    raise AssertionError("the gateway exited before listening")


def _healthz_count(metrics: str) -> float:
    prefix = 'albatross_http_requests_total{method="GET",route="/healthz",status="200"}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith(prefix))


async def test_two_gateways_share_one_port_and_each_scrape_counts_both(
        fresh_nats: NatsServer, database_url: str, tmp_path: Path) -> None:
    env = await _bootstrapped(fresh_nats.url, database_url)
    port = free_port()
    specs = gateway_services(2, tmp_path)
    processes = [await asyncio.create_subprocess_exec(
        *spec.command, env={**os.environ, **env, **spec.env, "ALBATROSS_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        for spec in specs]
    base = f"http://127.0.0.1:{port}"
    drains: list[asyncio.Task[bytes]] = []
    try:
        # Each one listening, not just one of them ready.
        drains = list(await asyncio.wait_for(
            asyncio.gather(*(_listening(p) for p in processes)), 30))
        await until_ready(base, processes)
        # A connection per request: the kernel spreads connections, not requests.
        for _ in range(30):
            async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as response:
                assert response.status == 200
        assert all(p.returncode is None for p in processes)
        written = {path.name for path in (tmp_path / "gateway-metrics").iterdir()}
        assert {f"counter_{p.pid}.db" for p in processes} <= written
        for _ in range(6):
            async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
                assert _healthz_count(await response.text()) == 30
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), timeout=10) for p in processes]
        await asyncio.gather(*drains)
    assert codes == [0, 0]


async def test_an_unusable_hashing_slots_dir_stops_the_start_with_its_name(
        tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "albatross.services.gateway.main",
        env={**os.environ, "ALBATROSS_NATS_URL": "nats://127.0.0.1:1",
             "ALBATROSS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
             "ALBATROSS_HASHING_SLOTS_DIR": str(blocker / "slots")},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode != 0
    assert f"ALBATROSS_HASHING_SLOTS_DIR: cannot use {blocker / 'slots'}" in err.decode()


@pytest.mark.parametrize(("service", "port_variable"), [
    ("gateway", "ALBATROSS_HTTP_PORT"), ("projector", "ALBATROSS_PROJECTOR_PORT"),
    ("notifier", "ALBATROSS_NOTIFIER_PORT")])
async def test_a_sigterm_during_a_nats_outage_still_exits_0(
        fresh_nats: NatsServer, database_url: str, tmp_path: Path, service: str,
        port_variable: str) -> None:
    """Kubernetes stops pods during a NATS rollout too: draining a connection that is down
    must not turn the stop into a failure."""
    env = await _bootstrapped(fresh_nats.url, database_url)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"albatross.services.{service}.main",
        env={**os.environ, **env, port_variable: str(port), "ALBATROSS_HTTP_PORT": str(port),
             "ALBATROSS_WEB_DIR": str(tmp_path / "no-ui")},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await until_ready(f"http://127.0.0.1:{port}", [process])
        fresh_nats.kill()
        await asyncio.sleep(0.5)  # the client has noticed and is reconnecting
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = (await process.stderr.read()).decode() if process.stderr else ""  # type: ignore[union-attr]
    assert code == 0, err


async def test_the_websocket_reaches_the_notifier_on_a_host_other_than_loopback(
        fresh_nats: NatsServer, database_url: str, tmp_path: Path) -> None:
    """ALBATROSS_HTTP_HOST binds the gateway and the notifier alike: the gateway's relay of
    /api/ws must look for the notifier there (127.0.0.2 is local, and not 127.0.0.1)."""
    env = await _bootstrapped(fresh_nats.url, database_url)
    http_port, notifier_port = free_port(), free_port()
    common = {**os.environ, **env, "ALBATROSS_HTTP_HOST": "127.0.0.2",
              "ALBATROSS_HTTP_PORT": str(http_port),
              "ALBATROSS_NOTIFIER_PORT": str(notifier_port),
              "ALBATROSS_WEB_DIR": str(tmp_path / "no-ui")}
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"albatross.services.{service}.main", env=common,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for service in ("notifier", "gateway")]
    try:
        await until_ready(f"http://127.0.0.2:{notifier_port}", processes)
        await until_ready(f"http://127.0.0.2:{http_port}", processes)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.2:{http_port}/api/auth/login",
                                 json={"email": ADMIN, "password": PASSWORD}) as response:
                token = (await response.json())["token"]
            async with http.ws_connect(f"ws://127.0.0.2:{http_port}/api/ws") as ws:
                await ws.send_json({"type": "auth", "token": token})
                ready = await ws.receive_json(timeout=5)
        assert ready["type"] == "ready"
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(asyncio.wait_for(p.wait(), 10) for p in processes))
