"""Stateful schemathesis over the whole REST API: operations chained by the OpenAPI links that
the route table generates (create a tenant, register a user in it, make and revoke its keys,
list PIREPs and review one, read its history...), as a PlatformAdmin.

Every response must conform to the document (status, content type, body schema, headers) and
no request may answer 5xx. A refused request (4xx) must change nothing: the event store's last
sequence is the same before and after it (the in-memory gateway has no background writer, so
any new event was appended by that request).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings

from albatross.services.gateway.openapi import build_openapi
from albatross.services.gateway.routes import OPERATIONS
from tests.fuzzing_document import document_for_fuzzing
from tests.reliability_figures import record
from tests.unit.test_gateway_harness import Gateway, gateway, pirep_body

# Pinned for the dev extra (schemathesis==4.32.5); a skip fails in CI (tests/conftest.py).
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import load_all_checks  # noqa: E402
from schemathesis.specs.openapi import checks  # noqa: E402

pytestmark = pytest.mark.slow
T = TypeVar("T")
load_all_checks()
# "negative" cases include unknown headers, which servers rightly ignore; "positive" ones
# carry random ids that rightly answer 404/409/422 (see tests/unit/test_gateway_schemathesis).
EXCLUDED = [checks.negative_data_rejection, checks.positive_data_acceptance]
# About 25 cases per scenario: ~2,500 cases and ~90 s on a 2-core machine (the checks
# send requests of their own too, e.g. "a created resource can be fetched"). A longer run (a
# soak) raises it.
SCENARIOS = int(os.environ.get("ALBATROSS_FUZZ_SCENARIOS", "100"))
STEPS = 25


schema = schemathesis.openapi.from_dict(document_for_fuzzing())


@dataclass
class Live:
    """A fresh in-memory gateway per scenario, served on one loop in a thread (schemathesis
    calls synchronously). Fresh, because Hypothesis replays scenario prefixes and expects the
    same answers: state left by earlier scenarios would make generation inconsistent."""

    loop: asyncio.AbstractEventLoop
    gw: Gateway | None = None
    base_url: str = ""
    api_key: str = ""
    statuses: Counter[int] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    refused_unchanged: int = 0
    _open: AbstractAsyncContextManager[Gateway] | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def fingerprint(self) -> int:
        assert self.gw is not None
        return self.run(self.gw.store.inner.last_sequence())

    def start(self) -> None:
        self.run(self._start())

    def stop(self) -> None:
        if self._open is not None:
            self.run(self._open.__aexit__(None, None, None))
        self._open = self.gw = None

    async def _start(self) -> None:
        self._open = gateway()
        gw = self.gw = await self._open.__aenter__()
        tenant = await gw.tenant("FUZ")
        _, pilot_email = await gw.user("Pilot", tenant)
        pilot = await gw.login(pilot_email)
        # Pending PIREPs for the list -> review links to find (each review uses one up).
        for n in range(3):
            status, _ = await gw.call("POST", "/api/pireps", pilot,
                                      json=pirep_body(flight_number=f"FZ{n}"))
            assert status == 201
        _, me = await gw.call("GET", "/api/me", gw.admin_token)
        # An API key, not a session: generated calls to /auth/logout would end a session.
        status, key = await gw.call("POST", f"/api/users/{me['id']}/apikeys", gw.admin_token,
                                    json={"name": "fuzz"})
        assert status == 201, key
        self.api_key = key["key"]
        self.base_url = str(gw.client.make_url("")).rstrip("/")


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    # Client and server share the GIL: at the default 5 ms switch interval every request
    # waits for a forced switch, which halves the cases a time budget affords.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    thread.start()
    try:
        yield Live(loop)
    finally:
        sys.setswitchinterval(interval)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_linked_workflows_never_5xx_conform_and_refusals_change_nothing(live: Live) -> None:
    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            live.start()
            self.headers = {"X-API-Key": live.api_key}
            self.before = 0

        def teardown(self) -> None:
            live.stop()
            super().teardown()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live.base_url, "headers": self.headers}

        def before_call(self, case: Any) -> None:
            # Schemathesis fills the bearer scheme's header with random text, which overrides
            # the key (401). A few are kept (a deterministic share, as Hypothesis replays
            # scenarios) so that refused credentials are fuzzed too; the rest use the key.
            bearer = (case.headers or {}).get("Authorization")
            if bearer is not None and len(bearer) % 8:
                del case.headers["Authorization"]
            self.before = live.fingerprint()

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            live.statuses[response.status_code] += 1
            live.operations[f"{case.method} {case.path}"] += 1
            assert response.status_code < 500, (case.method, case.path, response.text)
            if 400 <= response.status_code < 500:
                after = live.fingerprint()
                assert after == self.before, (
                    f"{case.method} {case.path} answered {response.status_code} but appended "
                    f"events {self.before + 1}..{after}")
                live.refused_unchanged += 1

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, additional_checks=additional_checks,
                                   excluded_checks=EXCLUDED, transport_kwargs=kwargs or None,
                                   recorder=self.recorder)

    Workflow.run(settings=settings(
        max_examples=SCENARIOS, stateful_step_count=STEPS, deadline=None,
        phases=[Phase.generate], suppress_health_check=list(HealthCheck)))

    cases = sum(live.statuses.values())
    record("fuzz", target="rest_stateful", cases=cases, errors_5xx=0,
           refused_unchanged=live.refused_unchanged)
    print(f"\nstateful cases: {cases}, statuses: {dict(sorted(live.statuses.items()))}")
    print("operations:", dict(live.operations.most_common()))
    # Not vacuous: the chains reached every operation and many requests were accepted.
    spec = build_openapi(OPERATIONS)
    linked = {link["operationId"] for methods in spec["paths"].values()
              for operation in methods.values() for response in operation["responses"].values()
              for link in response.get("links", {}).values()}
    reached = {f"{op.method} /api{op.path}" for op in OPERATIONS if op.operation_id in linked}
    assert reached <= set(live.operations), reached - set(live.operations)
    assert sum(n for s, n in live.statuses.items() if s < 300) > cases // 10, live.statuses
