"""End-to-end latency on ``albatross up`` (issue 9): ``POST /api/pireps`` → read model →
``change`` on a WebSocket, at fixed rates and at the maximum sustainable rate.

Usage: ``python bench/e2e.py [--quick] [--seconds S] [--search-seconds S] [--search-steps N]``

Prints one JSON line on stdout (see ``bench/_common.py``); progress goes to stderr.

The mesh (``bench/_mesh.py``): nats-server (``sync_interval: always``, as ``albatross up``
runs it) and PostgreSQL embedded, then the real ``albatross up`` supervisor over them:
bootstrap, gateway, projector, notifier as separate processes. A tenant, a Pilot and the
Pilot's API key are created through the API.

Each load step runs in a separate load process (never in a server process): it opens one
WebSocket on the gateway's ``/api/ws`` (proxied to the notifier, as the contract has it),
authenticates with the API key, then posts PIREPs with the same key on an open-loop schedule:
request *n* is due at ``start + n / rate`` and is sent then, whether or not earlier ones were
answered (no coordinated omission). Each PIREP carries a unique marker in ``remarks``; its
latency is from the moment it was *due* to the receipt of the ``change`` (``PirepSubmitted``)
carrying that marker. A change that never arrives (30 s drain) counts with the time until the
drain gave up (a lower bound, so losses still show in the percentiles), and the
delivered-fraction target fails.

Steps and sizes (full run: ~3 minutes in all on the shared 2-core machine, of which ~25 s
start-up; a rate beyond capacity costs more than its nominal length, because the step ends
only when every POST was answered and every change arrived or the 30 s drain ran out):

* 100 and 500 commands/s for ``--seconds`` (10 s: 1,000 and 5,000 samples; p999 at 100/s
  is therefore close to the maximum);
* the maximum sustainable rate, defined as the highest rate whose p99 stays <= 100 ms with no
  error and no lost change: a short search of ``--search-steps`` (5) steps of
  ``--search-seconds`` (4 s) each, going up by x1.5 from the best passing rate or bisecting
  between the best pass and the lowest failure; then one ``--seconds`` step at the rate found,
  whose figures are reported (they may fail where the short step passed: then they say so);
* baseline, same run, same load client and NATS server, at 100 and 500/s: a minimal pipeline
  in one aiohttp process (``bench/e2e.py baseline``): ``POST`` → ``js.publish`` to a file
  stream on the same sync-always server → a core NATS subscription → the message written to
  every WebSocket. That is the transport every design pays (HTTP, one durable append, one NATS
  hop, one WebSocket write), so ``e2e p99 - baseline p99`` is what our pipeline adds: auth,
  the aggregate load and snapshot, the projector's consumer, PostgreSQL transaction and outbox,
  the changes stream, the notifier's consumer and policy filter, and the gateway's WebSocket
  proxy hop.

Each step of the mesh also reports ``stages``: per PIREP, where its time went, split at the
moments nats-server stored its event and its change message (:func:`stage_breakdown`).

Target (issue 9): end-to-end p99 <= 50 ms at 500 commands/s, everything on this machine.
``--quick`` (CI smoke): 1-second steps, 2 search steps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

if __package__:
    from bench import _common as common
    from bench import _mesh as mesh_mod
    from bench._http import HttpPool
else:  # run as a script: bench/ is on sys.path
    import _common as common  # type: ignore[no-redef]
    import _mesh as mesh_mod  # type: ignore[no-redef]
    from _http import HttpPool  # type: ignore[no-redef]

BENCH = "e2e"
HERE = Path(__file__).resolve()
SUSTAINABLE_P99_MS = 100.0
TARGET_RATE = 500
DRAIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class Config:
    quick: bool
    seconds: float
    search_seconds: float
    search_steps: int


# Load process -------------------------------------------------------------------------------

class _ChangeData(msgspec.Struct):
    remarks: str | None = None


class _WsMessage(msgspec.Struct):
    type: str
    event: str | None = None
    data: _ChangeData | None = None


_DECODE_WS = msgspec.json.Decoder(_WsMessage).decode


def pirep_body(marker: str) -> bytes:
    return msgspec.json.encode({
        "flight_number": "BNC1", "departure": "EGLL", "arrival": "LFPG",
        "block_off_at": "2026-01-01T10:00:00Z", "block_on_at": "2026-01-01T11:10:00Z",
        "flight_time_minutes": 60, "remarks": marker})


def stats_ms(samples_s: list[float]) -> dict[str, Any]:
    """p50/p90/p99/p999/max in ms (NaN when there is no sample)."""
    out: dict[str, Any] = {"n": len(samples_s)}
    for name, q in (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p999_ms", 99.9)):
        value = common.percentile(samples_s, q) * 1000
        out[name] = round(value, 2) if math.isfinite(value) else math.inf
    top = max(samples_s) * 1000 if samples_s else math.nan
    out["max_ms"] = round(top, 2) if math.isfinite(top) else top
    return out


async def load_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Open-loop POSTs at ``rate`` for ``seconds``; per PIREP, due time → change received."""
    import aiohttp

    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    total = max(1, int(rate * seconds))
    due: dict[str, float] = {}
    received: dict[str, float] = {}
    posted: list[float] = []
    statuses: dict[str, int] = {}
    late_sends = [0.0]
    all_in = asyncio.Event()
    expected = [total]
    prefix = spec["prefix"]
    # Wall-clock twins of the monotonic times and each PIREP's id, for the stage breakdown.
    ids: dict[str, str] = {}
    answered_wall: dict[str, float] = {}
    received_wall: dict[str, float] = {}
    # The POSTs go through the lean client (bench/_http.py: aiohttp's took a quarter of the
    # machine at 500/s); the one WebSocket stays on aiohttp.
    url = urlsplit(spec["url"])
    path = url.path
    pool = HttpPool(f"{url.scheme}://{url.netloc}", 256)
    headers = {"X-API-Key": spec["api_key"], "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(spec["ws_url"], max_msg_size=0)
        await ws.send_str(json.dumps({"type": "auth", "token": spec["api_key"]}))
        ready = json.loads((await ws.receive(timeout=15)).data)
        if ready.get("type") != "ready":
            raise RuntimeError(f"WebSocket not ready: {ready!r}")
        # Resuming at the ready sequence ends the notifier's resume grace (1 s in which live
        # changes are held for a possible replay) at once, as a client that wants no replay
        # does; without it the first second of every step would measure that grace.
        await ws.send_str(json.dumps({"type": "resume", "after": ready.get("sequence", 0)}))

        async def listen() -> None:
            async for msg in ws:
                now = time.monotonic()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = _DECODE_WS(msg.data)
                if message.type != "change" or message.event != "PirepSubmitted":
                    continue
                marker = message.data.remarks if message.data is not None else None
                if marker is not None and marker.startswith(prefix) and marker not in received:
                    received[marker] = now
                    received_wall[marker] = time.time()
                    if len(received) >= expected[0]:
                        all_in.set()

        async def post(marker: str, at: float) -> None:
            request = pool.post(path, pirep_body(marker), headers)
            try:
                status, body = await pool.send(request)
                outcome = str(status)
                if status == 201:
                    posted.append(time.monotonic() - at)
                    answered_wall[marker] = time.time()
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        ids[marker] = str(json.loads(body)["id"])
            except (OSError, TimeoutError) as exc:
                outcome = type(exc).__name__
            statuses[outcome] = statuses.get(outcome, 0) + 1
            if outcome != "201":
                due.pop(marker, None)  # no change is owed for a refused command
                expected[0] -= 1
                if len(received) >= expected[0]:
                    all_in.set()

        listener = asyncio.create_task(listen())
        tasks = []
        started = time.monotonic()
        started_wall = time.time()
        for n in range(total):
            at = started + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_sends[0] = max(late_sends[0], -delay)
            marker = f"{prefix}{n}"
            due[marker] = at
            tasks.append(asyncio.create_task(post(marker, at)))
        send_seconds = time.monotonic() - started
        await asyncio.gather(*tasks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), DRAIN_TIMEOUT)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await ws.close()
        await pool.close()
    # A lost change counts with the time until the drain gave up: a lower bound that keeps
    # the percentiles numbers; the delivered-fraction target is what fails on a loss.
    gave_up = time.monotonic()
    latencies = [received.get(m, gave_up) - at for m, at in due.items()]
    stages = None
    if spec.get("nats_url") and ids:
        due_wall = {m: started_wall + (at - started) for m, at in due.items()}
        stages = await stage_breakdown(spec["nats_url"], started_wall, ids, due_wall,
                                       answered_wall, received_wall)
    errors = sum(count for status, count in statuses.items() if status != "201")
    return {"rate_per_s": rate, "seconds": seconds, "posted": total,
            "sent_per_s": round(total / send_seconds, 1) if send_seconds > 0 else None,
            "max_send_lateness_ms": round(late_sends[0] * 1000, 2), "statuses": statuses,
            "errors": errors, "changes_received": sum(1 for m in due if m in received),
            "changes_expected": len(due), "e2e": stats_ms(latencies),
            "post_response": stats_ms(posted),
            **({"stages": stages} if stages is not None else {}),
            # Is the load process itself short of CPU? (its share of one core, whole step)
            "client_cpu_s": round(time.process_time(), 2),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


async def stored_at(nats_url: str, stream: str, subjects: str, since: float,
                    wanted: set[str]) -> dict[str, float]:
    """When JetStream stored each wanted resource's first message on ``subjects`` (wall s)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(nats_url)
    found: dict[str, float] = {}
    try:
        subscription = await nc.jetstream().pull_subscribe(subjects, stream=stream, config=(
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                           opt_start_time=datetime.fromtimestamp(since - 1.0, UTC),
                           ack_policy=AckPolicy.NONE, inactive_threshold=30.0,
                           mem_storage=True)))
        while len(found) < len(wanted):
            try:
                messages = await subscription.fetch(500, timeout=2.0)
            except TimeoutError:
                break
            for msg in messages:
                resource = msg.subject.rsplit(".", 1)[-1]
                if resource in wanted and resource not in found:
                    found[resource] = msg.metadata.timestamp.timestamp()
        await subscription.unsubscribe()
    finally:
        await nc.close()
    return found


async def stage_breakdown(nats_url: str, since: float, ids: dict[str, str],
                          due: dict[str, float], answered: dict[str, float],
                          received: dict[str, float]) -> dict[str, Any]:
    """Where each PIREP's end-to-end time went, from the stored timestamps of its event and
    its change (nats-server's wall clock, the same machine's): due → event stored (load client,
    HTTP, gateway, append), event stored → POST answered (ack, fsync, gateway's response),
    event stored → change stored (projector: consume, apply, commit, outbox, publish), change
    stored → received (notifier, the gateway's WebSocket proxy, the client)."""
    wanted = set(ids.values())
    events = await stored_at(nats_url, "ALBATROSS_EVENTS", "albatross.events.*.pirep.*",
                             since, wanted)
    changes = await stored_at(nats_url, "ALBATROSS_CHANGES", "albatross.changes.*.pirep.*",
                              since, wanted)
    parts: dict[str, list[float]] = {"due_to_event_stored": [], "event_stored_to_answered": [],
                                     "event_to_change_stored": [],
                                     "change_stored_to_received": []}
    for marker, resource in ids.items():
        if resource in events and resource in changes and marker in received:
            parts["due_to_event_stored"].append(events[resource] - due[marker])
            parts["event_stored_to_answered"].append(answered[marker] - events[resource])
            parts["event_to_change_stored"].append(changes[resource] - events[resource])
            parts["change_stored_to_received"].append(received[marker] - changes[resource])
    return {name: stats_ms(values) for name, values in parts.items()}


# Baseline server ----------------------------------------------------------------------------

async def serve_baseline(spec: dict[str, Any]) -> None:
    """The minimal pipeline: POST → durable js.publish → core NATS → every WebSocket."""
    import nats
    from aiohttp import web
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(spec["nats_url"])
    js = nc.jetstream(timeout=10)
    await js.add_stream(StreamConfig(name="BENCH_E2E", subjects=["bench.e2e.>"],
                                     storage=StorageType.FILE, num_replicas=1))
    sockets: set[web.WebSocketResponse] = set()
    counter = [0]

    async def submit(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        counter[0] += 1
        change = msgspec.json.encode({"type": "change", "entity": "pirep",
                                      "event": "PirepSubmitted",
                                      "data": {"remarks": body.get("remarks")}})
        await js.publish(f"bench.e2e.{counter[0] % 1000}", change, stream="BENCH_E2E")
        return web.json_response({"id": str(counter[0])}, status=201)

    async def websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=25.0)
        await ws.prepare(request)
        await ws.receive()  # the auth message, unchecked
        await ws.send_str('{"type":"ready","sequence":0}')
        sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            sockets.discard(ws)
        return ws

    async def broadcast(msg: Any) -> None:
        text = msg.data.decode()
        for ws in list(sockets):
            with contextlib.suppress(ConnectionError):
                await ws.send_str(text)

    await nc.subscribe("bench.e2e.>", cb=broadcast)
    app = web.Application()
    app.router.add_post("/api/pireps", submit)
    app.router.add_get("/api/ws", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(spec["port"])).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


# Orchestration ------------------------------------------------------------------------------

def sustainable(step: dict[str, Any]) -> bool:
    p99 = step["e2e"]["p99_ms"]
    return (step["errors"] == 0 and step["changes_received"] == step["changes_expected"]
            and math.isfinite(p99) and p99 <= SUSTAINABLE_P99_MS)


class Runner:
    def __init__(self, base: str, api_key: str, nats_url: str | None = None,
                 mesh: mesh_mod.Mesh | None = None) -> None:
        self.base = base
        self.api_key = api_key
        self.nats_url = nats_url  # None: no stage breakdown (the baseline stores no PIREPs)
        self.mesh = mesh  # None: no CPU per process (the baseline is one process)
        self.count = 0

    async def step(self, rate: float, seconds: float, label: str) -> dict[str, Any]:
        self.count += 1
        spec = {"url": f"{self.base}/api/pireps",
                "ws_url": f"{self.base.replace('http', 'ws', 1)}/api/ws",
                "api_key": self.api_key, "rate": rate, "seconds": seconds,
                "prefix": f"s{self.count}-", "nats_url": self.nats_url}
        cpu_before = self.mesh.cpu_seconds() if self.mesh is not None else {}
        # With what the host took from this VM meanwhile (the step's tail pays for it).
        result = await common.stolen_during(mesh_mod.run_child(
            HERE, "load", spec, timeout=seconds * 20 + DRAIN_TIMEOUT + 120))
        if self.mesh is not None and result["posted"]:
            # Where a command's CPU goes, across every server process; the load process's
            # own is client_cpu_s.
            cpu_after = self.mesh.cpu_seconds()
            result["cpu_ms_per_command"] = {
                role: round((cpu_after[role] - cpu_before.get(role, 0.0)) * 1000
                            / result["posted"], 3)
                for role in cpu_after}
        e2e = result["e2e"]
        common.progress(f"{label}: {rate:g}/s for {seconds:g} s: e2e p50 {e2e['p50_ms']} ms, "
                        f"p99 {e2e['p99_ms']} ms, p999 {e2e['p999_ms']} ms; "
                        f"{result['changes_received']}/{result['changes_expected']} changes, "
                        f"{result['errors']} errors, steal {result['steal_fraction']:.1%} -> "
                        f"{'sustainable' if sustainable(result) else 'NOT sustainable'}")
        if "cpu_ms_per_command" in result:
            common.progress("  CPU ms per command: " + "; ".join(
                f"{role} {ms}" for role, ms in result["cpu_ms_per_command"].items()))
        if "stages" in result:
            common.progress("  stages p50 / p99 ms: " + "; ".join(
                f"{name} {part['p50_ms']} / {part['p99_ms']}"
                for name, part in result["stages"].items()))
        return result


async def search_max(run: Runner, known: dict[float, bool], cfg: Config) -> tuple[float, list[Any]]:
    """Highest rate found sustainable within ``cfg.search_steps`` short steps."""
    trail: list[dict[str, Any]] = []
    for _ in range(cfg.search_steps):
        good = max((r for r, ok in known.items() if ok), default=0.0)
        bad = min((r for r, ok in known.items() if not ok and r > good), default=math.inf)
        if math.isinf(bad):
            rate = good * 1.5
        elif good == 0:
            rate = bad / 2
        else:
            rate = (good + bad) / 2
            if bad - good <= max(10.0, good * 0.05):
                break  # close enough for a few-second step's resolution
        rate = float(round(rate))
        step = await run.step(rate, cfg.search_seconds, "search")
        known[rate] = sustainable(step)
        trail.append({"rate_per_s": rate, "sustainable": known[rate],
                      "p99_ms": step["e2e"]["p99_ms"], "errors": step["errors"]})
    return max((r for r, ok in known.items() if ok), default=0.0), trail


async def orchestrate(cfg: Config) -> None:
    import aiohttp

    from albatross.infra._process import free_port
    from albatross.observability import configure_logging

    configure_logging("bench", "warning", stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="albatross-bench-e2e-"))
    mesh = mesh_mod.Mesh(root, sync_always=True)
    results: dict[str, Any] = {"config": {
        "quick": cfg.quick, "step_seconds": cfg.seconds, "search_seconds": cfg.search_seconds,
        "search_steps": cfg.search_steps, "sustainable_p99_ms": SUSTAINABLE_P99_MS,
        "nats_sync_always": True, "uvloop": common.uvloop_version(), **common.machine(),
        "loadavg_at_start": mesh_mod.loadavg()}}
    baselines: dict[str, Any] = {}
    baseline: asyncio.subprocess.Process | None = None
    began = time.perf_counter()
    try:
        await mesh.start()
        async with aiohttp.ClientSession() as http:
            token = await mesh.admin_token(http)
            tenant = await mesh_mod.api(http, "POST", f"{mesh.base}/api/tenants", token=token,
                                        expect=201, json={"name": "E2E Air", "icao": "EEB"})
            _, api_key = await mesh_mod.pilot_with_key(http, mesh, token, tenant["id"],
                                                       "e2e-pilot@albatross.test")
        run = Runner(mesh.base, api_key, mesh.nats.url, mesh)
        await run.step(50, 1.0 if cfg.quick else 3.0, "warm-up")
        at_100 = await run.step(100, cfg.seconds, "fixed")
        at_500 = await run.step(TARGET_RATE, cfg.seconds, "fixed")
        results["at_100_per_s"] = at_100
        results["at_500_per_s"] = at_500
        known = {100.0: sustainable(at_100), float(TARGET_RATE): sustainable(at_500)}
        best, trail = await search_max(run, known, cfg)
        results["search"] = trail
        if best > 0:
            final = await run.step(best, cfg.seconds, "max")
            results["max_sustainable"] = {"rate_per_s": best,
                                          "confirmed_at_full_length": sustainable(final),
                                          "step": final}
        else:
            results["max_sustainable"] = {"rate_per_s": 0.0, "confirmed_at_full_length": False,
                                          "note": "no rate tried was sustainable"}
        results["restarts_seen"] = mesh.restarts_seen()
        results["loadavg_after_mesh"] = mesh_mod.loadavg()

        port = free_port()
        baseline = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "baseline",
            json.dumps({"port": port, "nats_url": mesh.nats.url}), stdout=asyncio.subprocess.PIPE)
        assert baseline.stdout is not None
        line = await asyncio.wait_for(baseline.stdout.readline(), 30)
        if line.strip() != b"READY":
            raise RuntimeError(f"baseline server did not start: {line!r}")
        plain = Runner(f"http://127.0.0.1:{port}", "unused")
        baselines["minimal_pipeline_at_100_per_s"] = await plain.step(100, cfg.seconds,
                                                                      "baseline")
        baselines["minimal_pipeline_at_500_per_s"] = await plain.step(TARGET_RATE, cfg.seconds,
                                                                      "baseline")
    except Exception:
        common.progress(f"albatross up (last lines):\n{mesh.log_tail()}")
        raise
    finally:
        if baseline is not None and baseline.returncode is None:
            baseline.terminate()
            await baseline.wait()
        await mesh.stop()
        shutil.rmtree(root, ignore_errors=True)
    results["runtime_s"] = round(time.perf_counter() - began, 1)

    p99_500 = results["at_500_per_s"]["e2e"]["p99_ms"]
    base_500 = baselines["minimal_pipeline_at_500_per_s"]["e2e"]["p99_ms"]
    results["pipeline_share_of_p99_at_500_ms"] = (
        round(p99_500 - base_500, 2) if math.isfinite(p99_500) and math.isfinite(base_500)
        else None)
    results["max_sustainable_rate_per_s"] = results["max_sustainable"]["rate_per_s"]
    targets = [
        common.target("e2e_p99_ms_at_500_per_s", p99_500, "<=", 50.0),
        common.target("changes_delivered_fraction_at_500_per_s", common.ratio(
            at_500["changes_received"], at_500["changes_expected"]), ">=", 1.0),
    ]
    for t in targets:
        common.progress(f"target {t['name']}: {t['value']} {t['op']} {t['target']} -> "
                        f"{'met' if t['met'] else 'NOT met'}")
    common.emit(BENCH, results, baselines, targets)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] in {"load", "baseline"}:
        spec = mesh_mod.child_spec(sys.argv[2])
        if sys.argv[1] == "load":
            print(json.dumps(common.run(lambda: load_step(spec))), flush=True)
        else:
            common.run(lambda: serve_baseline(spec))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-second steps (CI smoke)")
    parser.add_argument("--seconds", type=float, help="length of the fixed-rate steps (10)")
    parser.add_argument("--search-seconds", type=float, help="length of a search step (4)")
    parser.add_argument("--search-steps", type=int, help="search steps at most (5)")
    args = parser.parse_args()
    cfg = Config(quick=args.quick, seconds=args.seconds or (1.0 if args.quick else 10.0),
                 search_seconds=args.search_seconds or (1.0 if args.quick else 4.0),
                 search_steps=args.search_steps or (2 if args.quick else 5))
    common.run(lambda: orchestrate(cfg))


if __name__ == "__main__":
    main()
