"""The albatross-gateway process: starts on real NATS + PostgreSQL, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
import time

import aiohttp
import pytest

from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
from albatross.config import Settings
from albatross.infra.nats_server import NatsServer
from albatross.services.bootstrap.main import bootstrap

pytestmark = [pytest.mark.real, pytest.mark.slow]
ADMIN = "ops@albatross.test"
PASSWORD = "a chosen password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_gateway_serves_and_stops_cleanly_on_sigterm(fresh_nats: NatsServer,
                                                           database_url: str) -> None:
    env = {"ALBATROSS_NATS_URL": fresh_nats.url, "ALBATROSS_DATABASE_URL": database_url,
           "ALBATROSS_ADMIN_EMAIL": ADMIN, "ALBATROSS_ADMIN_PASSWORD": PASSWORD}
    hasher = Argon2PasswordHasher(TEST_ONLY_CHEAP)
    try:
        await bootstrap(Settings.from_env(env), out=io.StringIO(), hasher=hasher)
    finally:
        hasher.close()
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "albatross.services.gateway.main",
        env={**os.environ, **env, "ALBATROSS_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert process.returncode is None, "the gateway exited early"
                assert time.monotonic() < deadline, "the gateway never became ready"
                await asyncio.sleep(0.2)
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
