"""schemathesis against the gateway's own OpenAPI: no 5xx, responses match the document.

The gateway runs in a thread with its own event loop, because schemathesis calls it
synchronously: once on in-memory adapters, once with its reads from PostgreSQL (a schema of
its own, fed by the projector's applier after every append), whose answers and refusals
the in-memory read models only imitate. Ten examples per operation did not happen to send
the NUL that answered 500 there (2026-11-27; tests/contract/test_read_models.py covers it).
It is authenticated as a PlatformAdmin through an API key (a session token would be ended by
the generated calls to /auth/logout).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from albatross.adapters.memory import InMemoryEventStore
from albatross.adapters.postgres.applier import BatchApplier, Poison, checkpoint_channel
from albatross.adapters.postgres.listener import CheckpointListener
from albatross.adapters.postgres.migrations import READER_ROLE, migrate
from albatross.adapters.postgres.pool import connect
from albatross.adapters.postgres.read_models import PostgresReadModels, create_read_pool
from albatross.ports import UnreadableEvent
from tests.fuzzing_document import document_for_fuzzing
from tests.unit.test_gateway_harness import Gateway, gateway, pirep_body

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


def serve_in_thread(open_gateway: Callable[[], AbstractAsyncContextManager[Gateway]]
                    ) -> Iterator[Live]:
    """Run the gateway ``open_gateway`` opens in a thread, with a pilot's PIREP and an admin
    API key; yield where to reach it."""
    ready = threading.Event()
    found: dict[str, str] = {}
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    async def serve() -> None:
        async with open_gateway() as gw:
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


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    yield from serve_in_thread(gateway)


@asynccontextmanager
async def gateway_reading_postgres(dsn: str) -> AsyncIterator[Gateway]:
    schema_name = f"rm_fuzz_{uuid.uuid4().hex[:12]}"
    writer = await connect(dsn)
    await migrate(writer, schema_name)
    listener = CheckpointListener(dsn, schema_name, checkpoint_channel(schema_name),
                                  role=READER_ROLE)
    await listener.start()
    models = PostgresReadModels(await create_read_pool(dsn, max_size=4), listener,
                                schema=schema_name, owns_pool=True)
    applier = BatchApplier(schema_name)
    applied = 0
    one_at_a_time = asyncio.Lock()  # one connection: concurrent appends take turns

    async def catch_up(store: InMemoryEventStore) -> None:
        nonlocal applied
        async with one_at_a_time:
            while records := await store.read_after(applied, 500):
                await applier.apply(writer, [
                    Poison(r.sequence, r.subject, r.reason) if isinstance(r, UnreadableEvent)
                    else r for r in records])
                applied = records[-1].sequence

    try:
        async with gateway(read_models=models, catch_up=catch_up) as gw:
            yield gw
    finally:
        await models.close()
        await writer.execute(f"DROP SCHEMA {schema_name} CASCADE")
        await writer.execute("DELETE FROM public.schema_migrations WHERE schema_name = $1",
                             schema_name)
        await writer.close()


@pytest.fixture(scope="module")
def live_on_postgres(database_url: str) -> Iterator[Live]:
    yield from serve_in_thread(lambda: gateway_reading_postgres(database_url))


@schema.parametrize()
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_5xx_and_every_response_matches_the_document(case: Any,
                                                        live: Live) -> None:
    case.call_and_validate(base_url=live.base_url, headers={"X-API-Key": live.api_key},
                           excluded_checks=EXCLUDED)


@schema.parametrize()
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@pytest.mark.real
def test_no_5xx_with_the_reads_from_postgresql(case: Any, live_on_postgres: Live) -> None:
    case.call_and_validate(base_url=live_on_postgres.base_url,
                           headers={"X-API-Key": live_on_postgres.api_key},
                           excluded_checks=EXCLUDED)
