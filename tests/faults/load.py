"""A load of mixed commands and reads that runs while faults are injected, like real clients.

Pilots submit PIREPs, each with its own ``Idempotency-Key`` (also written in ``remarks`` so the
checks can find it in the event store), and retry the same request until it is acknowledged;
the tenant admin reviews them; everyone reads (one PIREP with ``Albatross-Min-Sequence``, lists);
a WebSocket listener follows the tenant's changes through the gateway and resumes after every
drop. Every answer is classified: 2xx, 503 ``unavailable`` with ``Retry-After`` (allowed while
a dependency is down; the checks prove it wrote nothing), 504 ``outcome_unknown`` (allowed: a
command in flight when the store went down; retried like a dropped connection), any other 5xx
(a failure), a 4xx nobody expected (a failure), no answer
within :data:`CLIENT_TIMEOUT` (a hang: a failure), a dropped connection (retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.faults.mesh import Crew

# Longest a request may take: the gateway's own bounds (event-store retries 8 s, 15 s for an
# append whose answer was lost; the read-your-writes wait 5 s) plus slack for a loaded 2-core
# machine.
CLIENT_TIMEOUT = 25.0
# A command still not acknowledged this long after its first attempt is given up (a failure).
COMMAND_DEADLINE = 60.0
RETRY_PAUSE = 0.2
PAUSE = 0.05  # between a worker's operations: a steady load that leaves CPU for the mesh


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Figures:
    requests: int = 0
    unavailable: int = 0
    unavailable_at: list[float] = field(default_factory=list)
    outcome_unknown: int = 0
    errors_5xx: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    dropped: int = 0
    commands_ok: list[float] = field(default_factory=list)
    queries_ok: list[float] = field(default_factory=list)
    slowest: float = 0.0

    def first_ok_after(self, moment: float, kind: str) -> float | None:
        times = self.commands_ok if kind == "command" else self.queries_ok
        later = [t for t in times if t >= moment]
        return min(later) - moment if later else None


def pirep_input(key: str, rng: random.Random) -> dict[str, Any]:
    minutes = rng.randrange(30, 600)
    return {"flight_number": f"FLT{rng.randrange(1, 9999)}", "departure": "EGLL",
            "arrival": "LFPG", "block_off_at": "2026-11-25T06:00:00Z",
            "block_on_at": "2026-11-25T16:00:00Z", "flight_time_minutes": minutes,
            "remarks": key}


class Load:
    """Run with ``async with load.running(): ...``; the figures and acknowledgements stay."""

    def __init__(self, base_url: str, crew: Crew, *, seed: int, listeners: int = 1) -> None:
        self.base_url = base_url
        self.crew = crew
        self.rng = random.Random(seed)
        self.listeners = listeners
        self.figures = Figures()
        self.submitted: dict[str, str] = {}  # Idempotency-Key -> PIREP id, acknowledged
        self.reviewed: dict[str, str] = {}  # PIREP id -> status, acknowledged
        self.abandoned: list[str] = []
        self.max_sequence = 0
        self.changes: list[list[dict[str, Any]]] = [[] for _ in range(listeners)]
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._stop_listening = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._listener_tasks: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self.sockets_ready_at: list[float] = []
        self.outages: list[tuple[float, float]] = []  # (fault, back) of each outage
        self.verdict: Any = None  # set by the scenario once the load has converged

    # Running ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        connector = aiohttp.TCPConnector(limit=64, force_close=False)
        async with aiohttp.ClientSession(self.base_url, connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=None)) as http:
            self._http = http
            # Sockets first: a change made before a socket is ready is not owed to it.
            self._listener_tasks = [asyncio.create_task(self._listener(n))
                                    for n in range(self.listeners)]
            async with asyncio.timeout(30):
                while len(self.sockets_ready_at) < self.listeners:
                    await asyncio.sleep(0.02)
            self._workers = [asyncio.create_task(self._pilot(token, n))
                             for n, token in enumerate(self.crew.pilots)]
            self._workers.append(asyncio.create_task(self._reviewer()))
            self._workers += [asyncio.create_task(self._reader(ryw)) for ryw in (True, False)]
            try:
                yield self
            finally:
                await self.stop_commands()
                self._stop_listening.set()
                await asyncio.gather(*self._listener_tasks)

    async def stop_commands(self) -> None:
        """Stop issuing commands; each worker first finishes the one it holds."""
        self._stop.set()
        await asyncio.gather(*self._workers)

    async def request(self, method: str, path: str, token: str, kind: str, *,
                      body: Any = None, headers: dict[str, str] | None = None) -> Answer | None:
        """One request; None when the connection failed (the outcome is unknown)."""
        assert self._http is not None
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        began = time.monotonic()
        self.figures.requests += 1
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                async with self._http.request(method, path, json=body, headers=sent) as r:
                    raw = await r.read()
                    answer = Answer(r.status, _json(raw), dict(r.headers))
        except TimeoutError:
            self.figures.hangs.append(f"{method} {path}: no answer within {CLIENT_TIMEOUT} s")
            return None
        except aiohttp.ClientError:
            self.figures.dropped += 1
            return None
        finished = time.monotonic()
        self.figures.slowest = max(self.figures.slowest, finished - began)
        if answer.status >= 500:
            code = answer.body.get("code") if isinstance(answer.body, dict) else None
            if answer.status == 503 and code == "unavailable" and answer.headers.get(
                    "Retry-After", "").isdigit():
                self.figures.unavailable += 1
                self.figures.unavailable_at.append(finished)
            elif answer.status == 504 and code == "outcome_unknown" and answer.headers.get(
                    "Retry-After", "").isdigit():
                self.figures.outcome_unknown += 1
            else:
                self.figures.errors_5xx.append(f"{method} {path}: {answer.status} {answer.body}")
        elif answer.status < 300:
            (self.figures.commands_ok if kind == "command" else self.figures.queries_ok).append(
                finished)
            sequence = answer.headers.get("Albatross-Sequence")
            if sequence is not None:
                self.max_sequence = max(self.max_sequence, int(sequence))
        return answer

    # Workers ------------------------------------------------------------------------------

    async def _pilot(self, token: str, n: int) -> None:
        rng = random.Random(self.rng.random())
        while not self._stop.is_set():
            key = f"k{n}-{uuid.uuid4().hex}"
            pirep_id = await self._submit(token, key, rng)
            if pirep_id is not None:
                await self._pending.put(pirep_id)
            await asyncio.sleep(PAUSE)

    async def _reader(self, read_your_writes: bool) -> None:
        """Reads of their own, so that a read waiting on a dependency holds no command back;
        two of them, so that one waiting for the projector holds no plain read back."""
        rng = random.Random(self.rng.random())
        while not self._stop.is_set():
            token = rng.choice([self.crew.chief, *self.crew.pilots])
            known = list(self.submitted.values())
            if read_your_writes and known:
                # Waits (at most 5 s) for the projector, else 503.
                await self.request("GET", f"/api/pireps/{rng.choice(known)}", token, "query",
                                   headers={"Albatross-Min-Sequence": str(self.max_sequence)})
            else:
                await self.request("GET", "/api/pireps?limit=5", token, "query")
            await asyncio.sleep(PAUSE)

    async def _submit(self, token: str, key: str, rng: random.Random) -> str | None:
        body = pirep_input(key, rng)
        began = time.monotonic()
        while time.monotonic() - began < COMMAND_DEADLINE:
            answer = await self.request("POST", "/api/pireps", token, "command", body=body,
                                        headers={"Idempotency-Key": key})
            if answer is not None and answer.status == 201:
                pirep_id = str(answer.body["id"])
                earlier = self.submitted.setdefault(key, pirep_id)
                if earlier != pirep_id:
                    self.figures.unexpected.append(f"key {key}: {earlier} then {pirep_id}")
                return pirep_id
            if answer is not None and answer.status < 500:
                self.figures.unexpected.append(f"POST /api/pireps: {answer.status} "
                                               f"{answer.body}")
                return None
            await asyncio.sleep(RETRY_PAUSE)
        self.abandoned.append(f"submit {key}")
        return None

    async def _reviewer(self) -> None:
        rng = random.Random(self.rng.random())
        token = self.crew.chief
        while not self._stop.is_set():
            try:
                pirep_id = await asyncio.wait_for(self._pending.get(), 0.5)
            except TimeoutError:
                continue
            if rng.random() < 0.3:
                continue  # some PIREPs stay pending
            decision = "accept" if rng.random() < 0.7 else "reject"
            await self._review(token, pirep_id, decision)
            await asyncio.sleep(PAUSE)

    async def _review(self, token: str, pirep_id: str, decision: str) -> None:
        began = time.monotonic()
        ambiguous = False
        while time.monotonic() - began < COMMAND_DEADLINE:
            answer = await self.request("POST", f"/api/pireps/{pirep_id}/review", token,
                                        "command", body={"decision": decision})
            if answer is not None and answer.status == 200:
                self.reviewed[pirep_id] = str(answer.body["status"])
                return
            if answer is None or answer.status == 504:
                ambiguous = True  # the review may have landed: a 409 next time is fine
            elif answer.status == 409 and ambiguous:
                return  # it did land; the checks find exactly one review event
            elif answer.status < 500:
                self.figures.unexpected.append(
                    f"review {pirep_id}: {answer.status} {answer.body}")
                return
            await asyncio.sleep(RETRY_PAUSE)
        self.abandoned.append(f"review {pirep_id}")

    async def _listener(self, n: int) -> None:
        """The tenant admin's socket through the gateway; resumes after every drop."""
        assert self._http is not None
        seen = self.changes[n]
        after: int | None = None
        while not self._stop_listening.is_set():
            try:
                async with self._http.ws_connect("/api/ws", heartbeat=5.0,
                                                 timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                    await ws.send_json({"type": "auth", "token": self.crew.chief})
                    if after is not None:
                        await ws.send_json({"type": "resume", "after": after})
                    while not self._stop_listening.is_set():
                        try:
                            msg = await ws.receive(timeout=0.5)
                        except TimeoutError:
                            continue
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            break
                        data = json.loads(msg.data)
                        if data["type"] == "ready":
                            self.sockets_ready_at.append(time.monotonic())
                            if after is None:
                                after = int(data["sequence"])
                        elif data["type"] == "change":
                            seen.append(data)
                            after = int(data["sequence"])
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                pass
            await asyncio.sleep(RETRY_PAUSE)

    # Waiting for recovery -------------------------------------------------------------------

    async def wait_ok_after(self, moment: float, kind: str, timeout: float = 60.0) -> float:
        """Seconds from ``moment`` to the first successful ``kind`` ("command" or "query")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.figures.first_ok_after(moment, kind)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no successful {kind} within {timeout} s of the restart")

    async def wait_socket_after(self, moment: float, timeout: float = 60.0) -> float:
        """Seconds from ``moment`` to a socket (re)authenticated and ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [t for t in self.sockets_ready_at if t >= moment]
            if later:
                return min(later) - moment
            await asyncio.sleep(0.05)
        raise AssertionError(f"no socket ready within {timeout} s of the restart")

    def unavailable_during_outages(self) -> int:
        return sum(1 for t in self.figures.unavailable_at
                   for start, end in self.outages if start <= t <= end)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")
