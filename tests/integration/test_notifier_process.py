"""The albatross-notifier process: serves /api/ws and the ops endpoints; on SIGTERM every
socket gets 1001 and the process exits 0 within 10 s."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import aiohttp
import pytest

from albatross.infra._process import free_port
from tests.infra_fixtures import until_ready
from tests.integration.test_notifier_revocation import PASSWORD, gateway_services, new_pilot
from tests.integration.test_notifier_support import connect, connected, open_socket

pytestmark = [pytest.mark.real, pytest.mark.slow]


async def test_notifier_process_serves_and_stops_with_1001_on_sigterm(nats_url: str) -> None:
    async with connected(nats_url), gateway_services(nats_url) as deps:
        email = await new_pilot(deps)
        token = (await deps.login.login(email, PASSWORD)).token
    port = free_port()
    env = {**os.environ, "ALBATROSS_NATS_URL": nats_url, "ALBATROSS_NOTIFIER_PORT": str(port),
           "ALBATROSS_HTTP_HOST": "127.0.0.1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "albatross.services.notifier.main", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await until_ready(base, [process])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            client = await connect(f"{base}/api/ws", token)
            assert client.ready is not None
            waiting = await open_socket(f"{base}/api/ws")  # not authenticated yet
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
            assert "albatross_notifier_sockets_open 2.0" in metrics
            assert "albatross_notifier_sockets_authenticated 1.0" in metrics

            codes = asyncio.gather(client.close_code(timeout=10), waiting.close_code(timeout=10))
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert await codes == [1001, 1001]
            assert await asyncio.wait_for(process.wait(), timeout=10) == 0
            assert time.monotonic() - started < 10
            await client.close()
            await waiting.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = (await process.stdout.read()).decode() if process.stdout else ""  # type: ignore[union-attr]
    err = (await process.stderr.read()).decode() if process.stderr else ""  # type: ignore[union-attr]
    assert token not in out + err
    assert '"stopped"' in out or "stopped" in out, err[-2000:]
