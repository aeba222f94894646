"""schemathesis against the gateway's own OpenAPI: no 5xx, responses match the document.

The gateway (in-memory adapters) runs in a thread with its own event loop, because
schemathesis calls it synchronously. It is authenticated as a PlatformAdmin through an API
key (a session token would be ended by the generated calls to /auth/logout).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzzing_document import document_for_fuzzing
from tests.unit.test_gateway_harness import gateway, pirep_body

# Pinned for the dev extra: schemathesis==4.32.5 (a skip fails in CI, see tests/conftest.py).
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import load_all_checks  # noqa: E402
from schemathesis.specs.openapi import checks  # noqa: E402

pytestmark = pytest.mark.slow
load_all_checks()
# Not about our behaviour: "negative" cases include unknown *headers*, which HTTP servers
# rightly ignore, and "positive" cases are random ids that rightly answer 404/409/422.
EXCLUDED = [checks.negative_data_rejection, checks.positive_data_acceptance]


schema = schemathesis.openapi.from_dict(document_for_fuzzing())


@dataclass
class Live:
    base_url: str
    api_key: str


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    ready = threading.Event()
    found: dict[str, str] = {}
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    async def serve() -> None:
        async with gateway() as gw:
            tenant = await gw.tenant("SCH")
            _, pilot_email = await gw.user("Pilot", tenant)
            pilot = await gw.login(pilot_email)
            await gw.call("POST", "/api/pireps", pilot, json=pirep_body())
            status, me = await gw.call("GET", "/api/me", gw.admin_token)
            status, key = await gw.call("POST", f"/api/users/{me['id']}/apikeys",
                                        gw.admin_token, json={"name": "schemathesis"})
            assert status == 201
            found["base_url"] = str(gw.client.make_url("")).rstrip("/")
            found["api_key"] = key["key"]
            ready.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the gateway did not start"
    try:
        yield Live(found["base_url"], found["api_key"])
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)


@schema.parametrize()
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_5xx_and_every_response_matches_the_document(case: Any,
                                                        live: Live) -> None:
    case.call_and_validate(base_url=live.base_url, headers={"X-API-Key": live.api_key},
                           excluded_checks=EXCLUDED)
