"""The gateway's PIREP cache on real PostgreSQL: served while nothing changed, never past a
notified change, not across scopes, bypassed on request and while the listener is down.

Rows are changed behind the projector's back (an owner's UPDATE, no notification) to tell a
cached answer from a fresh one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from albatross.adapters.postgres.applier import checkpoint_channel
from albatross.adapters.postgres.listener import CheckpointListener
from albatross.adapters.postgres.migrations import READER_ROLE
from albatross.adapters.postgres.read_models import PostgresReadModels, create_read_pool
from tests.contract.test_read_models import PostgresHarness, World, review, world
from tests.infra_fixtures import until

pytestmark = pytest.mark.real


class Cached:
    def __init__(self, harness: PostgresHarness, models: PostgresReadModels,
                 listener: CheckpointListener, w: World) -> None:
        self.harness, self.models, self.listener, self.w = harness, models, listener, w

    async def remarks_behind_its_back(self, pirep_id: str, remarks: str) -> None:
        await self.harness.connection.execute(
            f"UPDATE {self.harness.schema}.pireps SET remarks = $1 WHERE id = $2",
            remarks, pirep_id)

    async def remarks(self, who: str, pirep_id: str, *, fresh: bool = False) -> str | None:
        pirep = await self.models.get_pirep(self.w.principal(who), pirep_id, fresh=fresh)
        assert pirep is not None
        return pirep.remarks


@pytest.fixture
async def cached(database_url: str) -> AsyncIterator[Cached]:
    harness = PostgresHarness(database_url, f"rc_test_{uuid.uuid4().hex[:12]}")
    await harness.start()
    pool = await create_read_pool(database_url, max_size=2)
    listener = CheckpointListener(database_url, harness.schema,
                                  checkpoint_channel(harness.schema), role=READER_ROLE)
    await listener.start()
    models = PostgresReadModels(pool, listener, schema=harness.schema, owns_pool=True,
                                pirep_cache_seconds=60)
    w = world()
    await harness.feed(w.records)
    assert await models.wait_for(w.log.sequence, 5)
    try:
        yield Cached(harness, models, listener, w)
    finally:
        await models.close()
        await harness.stop()


async def test_an_unchanged_pirep_is_answered_from_memory(cached: Cached) -> None:
    assert await cached.remarks("p-a1", "r-1") is None
    await cached.remarks_behind_its_back("r-1", "changed behind its back")
    assert await cached.remarks("p-a1", "r-1") is None
    # Cache-Control: no-cache reads the row, and refreshes what is kept.
    assert await cached.remarks("p-a1", "r-1", fresh=True) == "changed behind its back"
    assert await cached.remarks("p-a1", "r-1") == "changed behind its back"


async def test_a_projected_change_is_seen_once_wait_for_returns(cached: Cached) -> None:
    before = await cached.models.get_pirep(cached.w.principal("p-a1"), "r-3")
    assert before is not None
    assert before.status == "pending"
    record = review(cached.w.log, "r-3", "ta", accept=True)
    await cached.harness.feed([record])
    # What a client's Albatross-Min-Sequence waits for: after it, no cached answer is older.
    assert await cached.models.wait_for(record.sequence, 5)
    after = await cached.models.get_pirep(cached.w.principal("p-a1"), "r-3")
    assert after is not None
    assert (after.status, after.version) == ("accepted", record.sequence)


async def test_any_notification_empties_it_even_one_that_does_not_advance(
        cached: Cached) -> None:
    assert await cached.remarks("pa", "r-2") is None
    await cached.remarks_behind_its_back("r-2", "rebuilt")
    before = cached.listener.generation
    # A rebuild's schema swap notifies the sequence the readers already know.
    await cached.harness.connection.execute(
        "SELECT pg_notify($1, $2)", checkpoint_channel(cached.harness.schema),
        str(cached.listener.known))
    await until(lambda: cached.listener.generation != before, timeout=5)
    assert await cached.remarks("pa", "r-2") == "rebuilt"


async def test_an_answer_is_kept_per_scope_never_shared_across_tenants(cached: Cached) -> None:
    principal = cached.w.principal
    assert await cached.models.get_pirep(principal("p-a1"), "r-1") is not None
    assert await cached.models.get_pirep(principal("ta-b"), "r-1") is None
    assert await cached.models.get_pirep(principal("ta-b"), "r-1") is None
    assert await cached.models.get_pirep(principal("pa"), "r-1") is not None
    assert await cached.models.get_pirep(principal("ta-b"), "r-4") is not None
    assert await cached.models.get_pirep(principal("p-a2"), "r-4") is None


async def test_nothing_is_served_from_memory_while_the_listener_is_down(cached: Cached) -> None:
    assert await cached.remarks("p-a1", "r-1") is None
    await cached.listener.stop()
    assert cached.listener.generation is None
    await cached.remarks_behind_its_back("r-1", "while deaf")
    assert await cached.remarks("p-a1", "r-1") == "while deaf"


async def test_the_listener_counts_reconnections_as_changes(cached: Cached,
                                                            database_url: str) -> None:
    assert await cached.remarks("p-a1", "r-1") is None
    await cached.remarks_behind_its_back("r-1", "during the outage")
    before = cached.listener.generation
    # This listener's session only: other tests' listeners share the server.
    listening: Any = cached.listener._connection
    owner: Any = cached.harness.connection
    await owner.execute("SELECT pg_terminate_backend($1)", listening.get_server_pid())

    def reconnected() -> bool:
        generation = cached.listener.generation
        return generation is not None and before is not None and generation > before
    await until(reconnected, timeout=5)
    assert await cached.remarks("p-a1", "r-1") == "during the outage"
