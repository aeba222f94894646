"""One fault under load, start to finish: load, fault, recovery, convergence, checks, figures.

``ALBATROSS_FAULT_ROUNDS`` (default 1) repeats each fault that many times within one load:
``make soak`` raises it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from albatross.infra.nats_server import NatsCluster, NatsServer
from albatross.infra.postgres_server import PostgresServer
from tests.faults.load import Load
from tests.faults.mesh import Mesh
from tests.faults.targets import RECOVERY_TARGETS, SLACK
from tests.faults.verify import Verdict, verify
from tests.reliability_figures import record

WARM_UP = 1.0  # seconds of load before the first fault
SETTLE = 1.0  # seconds of load after the last recovery


def rounds() -> int:
    return max(1, int(os.environ.get("ALBATROSS_FAULT_ROUNDS", "1")))


@dataclass
class Recovery:
    """Seconds from a service's restart to the first successful command, query, catch-up."""

    command_s: float = 0.0
    query_s: float = 0.0
    caught_up_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    startup_s: float = 0.0  # of a restarted process: spawn to /readyz, included above

    @property
    def worst(self) -> float:
        return max(self.command_s, self.query_s, self.caught_up_s, *self.extra.values())

    @property
    def once_running(self) -> float:
        """Recovery counted from the moment the restarted process was ready."""
        return max(0.0, self.worst - self.startup_s)


@dataclass
class Outcome:
    load: Load
    verdict: Verdict
    recoveries: list[Recovery]

    @property
    def recovery_s(self) -> float:
        return max((r.worst for r in self.recoveries), default=0.0)

    @property
    def startup_s(self) -> float:
        return max((r.startup_s for r in self.recoveries), default=0.0)

    @property
    def once_running_s(self) -> float:
        return max((r.once_running for r in self.recoveries), default=0.0)


async def measure_recovery(mesh: Mesh, load: Load, back_at: float, *,
                           socket: bool = False) -> Recovery:
    """How long after ``back_at`` commands, queries, the read models (and sockets) work."""
    target = load.max_sequence  # every command acknowledged so far
    command_s, query_s = await asyncio.gather(load.wait_ok_after(back_at, "command"),
                                              load.wait_ok_after(back_at, "query"))
    await mesh.wait_caught_up(target)
    recovery = Recovery(command_s, query_s, time.monotonic() - back_at)
    if socket:
        recovery.extra["socket_s"] = await load.wait_socket_after(back_at)
    return recovery


@asynccontextmanager
async def loaded(mesh: Mesh, seed: int, *, pilots: int = 2) -> AsyncIterator[Load]:
    """A fresh tenant under load; the load stops (commands finish) when the block ends."""
    crew = await mesh.crew(pilots)
    load = Load(mesh.gateway, crew, seed=seed)
    async with load.running():
        await asyncio.sleep(WARM_UP)
        yield load
        await asyncio.sleep(SETTLE)
        await load.stop_commands()
        load.verdict = await verify(mesh, load)


async def run_fault(mesh: Mesh, kind: str, seed: int,
                    inject: Callable[[Load, random.Random], Awaitable[Recovery]]) -> Outcome:
    """Inject ``rounds()`` faults at random moments under load, then check and record."""
    rng = random.Random(seed)
    recoveries: list[Recovery] = []
    async with loaded(mesh, seed) as load:
        for _ in range(rounds()):
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            recoveries.append(await inject(load, rng))
    outcome = Outcome(load, load.verdict, recoveries)
    record(kind, faults=len(recoveries), acknowledged=outcome.verdict.acknowledged,
           lost=outcome.verdict.lost, duplicates=outcome.verdict.duplicates,
           errors_5xx=len(load.figures.errors_5xx), recovery_s=round(outcome.recovery_s, 3),
           startup_s=round(outcome.startup_s, 3),
           recovery_once_running_s=round(outcome.once_running_s, 3),
           requests=load.figures.requests, unavailable=load.figures.unavailable,
           hangs=len(load.figures.hangs))
    return outcome


def assert_clean(outcome: Outcome, mesh: Mesh) -> None:
    """Nothing lost or doubled, no 5xx but 503 ``unavailable`` and 504 ``outcome_unknown``,
    no hang, no surprise."""
    figures, verdict, load = outcome.load.figures, outcome.verdict, outcome.load
    context = (f"\nfigures: {figures.requests} requests, {figures.unavailable} x 503, "
               f"{figures.outcome_unknown} x 504, "
               f"{figures.dropped} dropped, slowest {figures.slowest:.2f} s; "
               f"recoveries {outcome.recoveries}\n{mesh.tails()}")
    assert verdict.acknowledged >= 5, f"too little load to prove anything{context}"
    assert figures.errors_5xx == [], f"5xx other than 503 unavailable, 504 outcome_unknown: " \
                                     f"{figures.errors_5xx[:5]}{context}"
    assert figures.hangs == [], f"requests that hung: {figures.hangs[:5]}{context}"
    assert figures.unexpected == [], f"unexpected answers: {figures.unexpected[:5]}{context}"
    assert load.abandoned == [], f"never acknowledged: {load.abandoned[:5]}{context}"
    assert (verdict.lost, verdict.duplicates) == (0, 0), f"{verdict.problems[:10]}{context}"


def assert_recovered(outcome: Outcome, kind: str) -> None:
    """The target, with slack, counted from when the restarted part runs again.

    A restarted Python process needs 3-5 s (18 s seen) just to start on a loaded 2-core
    machine: that start-up is recorded (``startup_s``) and reported in ``recovery_s``, but
    the assertion is about what the mesh does once the process runs.
    """
    target = RECOVERY_TARGETS[kind]
    assert outcome.once_running_s <= target * SLACK, (
        f"{kind}: recovery {outcome.once_running_s:.2f} s after start-up, target {target} s "
        f"(x{SLACK} slack): {outcome.recoveries}")


# Faults -----------------------------------------------------------------------------------

def process_kill(mesh: Mesh, name: str) -> Callable[[Load, random.Random], Awaitable[Recovery]]:
    async def inject(load: Load, rng: random.Random) -> Recovery:
        mesh.kill(name)
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        back_at = mesh.restart(name)
        await mesh.wait_ready(name)
        startup_s = time.monotonic() - back_at
        recovery = await measure_recovery(mesh, load, back_at,
                                          socket=name in ("gateway", "notifier"))
        recovery.startup_s = startup_s
        return recovery

    return inject


def nats_kill(mesh: Mesh, server: NatsServer, outage: float
              ) -> Callable[[Load, random.Random], Awaitable[Recovery]]:
    async def inject(load: Load, rng: random.Random) -> Recovery:
        killed_at = time.monotonic()
        server.kill()
        await asyncio.sleep(outage)
        await server.restart()
        back_at = time.monotonic()
        load.outages.append((killed_at, back_at))
        return await measure_recovery(mesh, load, back_at)

    return inject


def postgres_restart(mesh: Mesh, postgres: PostgresServer, outage: float
                     ) -> Callable[[Load, random.Random], Awaitable[Recovery]]:
    async def inject(load: Load, rng: random.Random) -> Recovery:
        stopped_at = time.monotonic()
        await postgres.stop()
        await asyncio.sleep(outage)
        await postgres.start()
        back_at = time.monotonic()
        load.outages.append((stopped_at, back_at))
        return await measure_recovery(mesh, load, back_at)

    return inject


def leader_kill(mesh: Mesh, cluster: NatsCluster, outage: float
                ) -> Callable[[Load, random.Random], Awaitable[Recovery]]:
    async def inject(load: Load, rng: random.Random) -> Recovery:
        nc = await mesh.connect_nats()
        try:
            info = await nc.jetstream(timeout=10).stream_info("ALBATROSS_EVENTS")
        finally:
            await nc.close()
        assert info.cluster is not None
        assert info.cluster.leader, info.cluster
        names = [s.server_name for s in cluster.servers]
        index = names.index(info.cluster.leader)
        cluster.kill_node(index)
        killed_at = time.monotonic()
        await asyncio.sleep(outage)
        # Back up and in the cluster, without waiting for every replica it holds to be current:
        # nats-server 2.15 sometimes keeps the restarted node's ALBATROSS_CHANGES replica behind
        # for a long time ("last msgid mismatch" while it replays chained publishes; seen once
        # in CI). The other two replicas serve meanwhile, which is what this test is about.
        await cluster.servers[index].restart()
        load.outages.append((killed_at, time.monotonic()))
        # The cluster serves again once a new leader is elected, without the old one.
        return await measure_recovery(mesh, load, killed_at)

    return inject
