"""No secret in any log line of the WebSocket side: the notifier and the gateway's proxy.

``tests/unit/test_gateway_secrets.py`` captures the gateway's HTTP flow; this extends the same
capture to what only the real mesh does: sockets authenticated by session token and API key
(directly and through the proxy), refused auth messages carrying secret-looking strings, an
unexpected message carrying a key, and revocation closing sockets with 4401.
"""

from __future__ import annotations

import asyncio
import io
import secrets

import aiohttp
import msgspec
import pytest

from albatross.application.credentials import secret_hash
from tests.integration.test_notifier_revocation import PASSWORD
from tests.integration.test_notifier_support import connect, open_socket
from tests.security.test_ws_isolation import credentials, mesh, new_tenant
from tests.unit.test_gateway_secrets import captured_logs  # noqa: F401  (the fixture)

pytestmark = pytest.mark.real


async def test_the_websocket_side_logs_no_secret(nats_url: str,
                                                 captured_logs: io.StringIO) -> None:  # noqa: F811
    async with mesh(nats_url) as (deps, _conn, urls):
        tenant = await new_tenant(deps.commands, "Logged")
        pilot = tenant.members["Pilot"]
        creds = await credentials(deps, pilot)
        token, key = creds["session"], creds["apikey"]
        fake_token = "albs_" + secrets.token_urlsafe(32)
        fake_key = "alb_" + secrets.token_urlsafe(24)
        base = urls["gateway"].removesuffix("/api/ws")

        sockets = [await connect(url, secret)
                   for url in urls.values() for secret in (token, key)]
        for url in urls.values():
            for first in (msgspec.json.encode({"type": "auth", "token": fake_token}).decode(),
                          f'{{"type": "auth", "token": "{fake_key}"',  # broken JSON
                          msgspec.json.encode({"type": "auth", "token": 42,
                                               "password": PASSWORD}).decode()):
                refused = await open_socket(url)
                await refused.ws.send_str(first)
                assert await refused.close_code() == 4401
                await refused.close()
            nosy = await connect(url, key)
            await nosy.ws.send_str(msgspec.json.encode({"type": "auth", "token": key}).decode())
            assert await nosy.close_code() in (1008, 4401)
            await nosy.close()

        # Read the session's sockets (both paths) while revoking, as a client would.
        waiting = asyncio.gather(*(c.close_code(timeout=3) for c in sockets[0::2]))
        async with aiohttp.ClientSession() as http, http.post(
                f"{base}/api/auth/logout", headers={"Authorization": f"Bearer {token}"}) as done:
            assert done.status == 204
        assert await waiting == [4401, 4401]
        for client in sockets:
            await client.close()

    logs = captured_logs.getvalue()
    assert '"request"' in logs, "the capture works"
    assert "$argon2" not in logs
    for secret in (PASSWORD, token, key, fake_token, fake_key, secret_hash(token),
                   secret_hash(key)):
        assert secret not in logs, f"leaked: {secret[:6]}..."
