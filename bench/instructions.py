"""Instructions per request, counted by callgrind: the gateway's CPU cost, repeatable to 0.1%.

    .venv/bin/python bench/instructions.py [--requests 600] [--quick]

On this project's shared two-vCPU machines the same code measures 0.2-0.5 ms of gateway CPU
per POST from one run to the next (docs/performance.md), so a change worth 5% cannot be seen
in requests per second. valgrind's callgrind counts the instructions a process executes,
whatever else the machine is doing: the same run twice agrees to about 0.1%. Kernel time
(socket writes, ``getrandom``) is not counted, nor are caches and stalls, so this is a guide
to the interpreter's work per request, not a replacement for ``bench/gateway.py``'s rates.

Each server runs under ``valgrind --tool=callgrind --instr-atstart=no`` (about 50 times
slower), is warmed up, and is instrumented only while ``--requests`` requests (8 concurrent,
one client process outside valgrind) are answered:

* ``POST /api/pireps`` and ``GET /api/pireps/{id}`` (answered from the PIREP cache) on the
  gateway, API-key auth;
* baselines, same run, same client: the *floor* of a POST (a bare aiohttp app, no middleware,
  that reads the body, publishes the same event bytes with the same headers through the
  gateway's own ``Requests`` path, awaits the ack and answers a 201 of the same size) and a
  hello-world aiohttp JSON endpoint for the GET. Both run on uvloop like the gateway.

The gateway keeps API-key answers in its credential cache for the whole count: under valgrind
a request takes ~50 times longer, so the 0.5-s cache would expire every few dozen requests
and the count would include lookups that at full speed happen once in thousands.

Targets (this bench's own, not an issue's; they catch a regression that timings cannot):
the gateway's own work (authentication, validation, the command or query, middleware, metrics)
costs at most as much again as the bare server beside it: a POST at most 2x its floor, a GET
at most 2x hello world.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))
CONCURRENCY = 8
PIREP = {"flight_number": "BNC1", "departure": "EGLL", "arrival": "LFPG",
         "block_off_at": "2026-01-01T10:00:00Z", "block_on_at": "2026-01-01T11:10:00Z",
         "flight_time_minutes": 60}


def _gateway_bench() -> Any:
    import bench.gateway as gateway

    return gateway


# Servers (each in its own process, started under valgrind) -----------------------------------

def serve_gateway() -> None:
    """The gateway as ``albatross.services.gateway.main`` runs it, its credential cache kept."""
    import albatross.application.auth as auth
    from albatross.services.gateway import main

    original = auth.Authenticator.__init__

    def keep_answers(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._cache_ttl = 24 * 3600.0  # see the module docstring

    auth.Authenticator.__init__ = keep_answers  # type: ignore[method-assign]
    main.main()


async def serve_floor(nats_url: str, port: int, answer_size: int) -> None:
    import nats
    from aiohttp import web

    from albatross.adapters.jetstream.requests import Requests

    client = await nats.connect(nats_url)
    requests = Requests(client)
    numbers = itertools.count()
    tag = os.urandom(4).hex()
    event = json.dumps({"type": "PirepSubmitted", "schema_version": 1,
                        "occurred_at": "2026-11-27T16:00:00.000000Z",
                        "actor_id": "01a21db1-6150-7516-bf8d-a20398fdfe4d",
                        "data": {"pirep_id": "01a21db1-6150-7516-bf8d-a20398fdfe4d",
                                 "tenant_id": "01a21db1-6150-7516-bf8d-a20398fdfe4d",
                                 "pilot_id": "01a21db1-6150-7516-bf8d-a20398fdfe4d",
                                 "details": {**PIREP, "source": "manual"}}}).encode()
    answer = b'{"x":"' + b"y" * max(0, answer_size - 8) + b'"}'

    async def post(request: web.Request) -> web.Response:
        await request.read()
        subject = f"albatross.events.floor.pirep.f{tag}{next(numbers)}"
        headers = {"Albatross-Event-Type": "PirepSubmitted",
                   "Nats-Msg-Id": f"{os.urandom(16).hex()}:0", "Albatross-Prev-Seq": "0",
                   "Nats-Expected-Last-Subject-Sequence": "0",
                   "Nats-Expected-Last-Subject-Sequence-Subject": subject,
                   "Nats-Expected-Stream": "ALBATROSS_EVENTS"}
        reply = await requests.request(subject, event, timeout=5, headers=headers)
        if b'"error"' in reply.data:
            raise web.HTTPInternalServerError(text=reply.data.decode())
        return web.Response(body=answer, status=201, content_type="application/json",
                            headers={"Location": "/api/pireps/x", "ETag": '"1"',
                                     "Albatross-Sequence": "1"})

    await _gateway_bench().serve_routes(port, [web.post("/api/pireps", post)])


# Counting -------------------------------------------------------------------------------------

async def _fire(session: Any, method: str, url: str, count: int,
                headers: dict[str, str], body: Any) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    wanted = 201 if method == "POST" else 200

    async def one() -> None:
        async with gate, session.request(method, url, headers=headers, json=body) as answer:
            await answer.read()
            if answer.status != wanted:
                raise RuntimeError(f"{method} {url}: {answer.status}")

    await asyncio.gather(*(one() for _ in range(count)))


async def count_instructions(command: list[str], env: dict[str, str], work: Path, label: str,
                             calls: list[tuple[str, str, dict[str, str], Any]],
                             requests: int, warmup: int) -> dict[str, float]:
    """Instructions per request of each call in ``calls`` on the server ``command`` starts."""
    import aiohttp

    gateway = _gateway_bench()
    port = int(env["ALBATROSS_HTTP_PORT"])
    out = work / f"callgrind.{label}"
    process = await asyncio.create_subprocess_exec(
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        *command, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    counted: dict[str, float] = {}
    try:
        await gateway.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=300)
        # From here on every instruction is counted; only the dumps' differences are kept.
        subprocess.run(["callgrind_control", "--instr=on", str(process.pid)], check=True,
                       capture_output=True)
        async with aiohttp.ClientSession() as session:
            for name, method, headers, body in calls:
                url = f"http://127.0.0.1:{port}{name}"
                await _fire(session, method, url, warmup, headers, body)
                before = _dump(process.pid, out)
                await _fire(session, method, url, requests, headers, body)
                counted[f"{method} {name}"] = (_dump(process.pid, out) - before) / requests
    finally:
        process.terminate()
        await process.wait()
    return counted


def _dump(pid: int, out: Path) -> int:
    """The instructions counted so far.

    ``callgrind_control --dump`` writes the counts since the last dump to a new file; their
    sum over the files is the total since instrumentation began."""
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    total = 0
    for part in out.parent.glob(f"{out.name}*"):
        for line in part.read_text(errors="replace").splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                total += int(line.split()[1])
                break
    return total


# Orchestration -------------------------------------------------------------------------------

async def orchestrate(requests: int, warmup: int) -> dict[str, Any]:
    import aiohttp

    from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
    from albatross.config import Settings
    from albatross.infra.nats_server import NatsServer
    from albatross.infra.postgres_server import PostgresServer
    from albatross.services.bootstrap.main import bootstrap

    gateway = _gateway_bench()
    work = Path(tempfile.mkdtemp(prefix="albatross-instructions-"))
    nats_server = NatsServer(work / "nats")
    postgres = PostgresServer(work / "pg")
    children: list[asyncio.subprocess.Process] = []
    try:
        await nats_server.start()
        await postgres.start()
        admin = "bench-admin@albatross.test"
        env = {**os.environ, "ALBATROSS_NATS_URL": nats_server.url,
               "ALBATROSS_DATABASE_URL": postgres.dsn, "ALBATROSS_ADMIN_EMAIL": admin,
               "ALBATROSS_ADMIN_PASSWORD": gateway.PASSWORD, "ALBATROSS_LOG_LEVEL": "warning",
               "PYTHONHASHSEED": "0"}
        cheap = Argon2PasswordHasher(TEST_ONLY_CHEAP)
        await bootstrap(Settings.from_env(env), hasher=cheap)
        cheap.close()
        setup_port, projector_port = gateway.free_port(), gateway.free_port()
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "albatross.services.projector.main",
            env={**env, "ALBATROSS_PROJECTOR_PORT": str(projector_port)},
            stdout=asyncio.subprocess.DEVNULL))
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "albatross.services.gateway.main",
            env={**env, "ALBATROSS_HTTP_PORT": str(setup_port)},
            stdout=asyncio.subprocess.DEVNULL))
        base = f"http://127.0.0.1:{setup_port}"
        await gateway.wait_ready(f"{base}/readyz")
        async with aiohttp.ClientSession() as http:
            _, login, _ = await gateway.api(http, "POST", f"{base}/api/auth/login",
                                            json={"email": admin, "password": gateway.PASSWORD})
            token = login["token"]
            _, tenant, _ = await gateway.api(http, "POST", f"{base}/api/tenants", token,
                                             json={"name": "Bench Air", "icao": "BNC"})
            _, pilot, _ = await gateway.api(http, "POST", f"{base}/api/users", token, json={
                "email": "bench-pilot@albatross.test", "display_name": "Bench",
                "password": gateway.PASSWORD, "role": "Pilot", "tenant_id": tenant["id"]})
            _, key, _ = await gateway.api(http, "POST", f"{base}/api/users/{pilot['id']}/apikeys",
                                          token, json={"name": "bench"})
            auth = {"X-API-Key": key["key"]}
            _, created, headers = await gateway.api(http, "POST", f"{base}/api/pireps",
                                                    headers=auth, json=PIREP)
            status, _, _ = await gateway.api(http, "GET", f"{base}/api/pireps/{created['id']}",
                                             headers={**auth, "Albatross-Min-Sequence":
                                                      headers["Albatross-Sequence"]})
            if status != 200:
                raise RuntimeError(f"the projector did not show the bench's PIREP: {status}")
        answer_size = len(json.dumps(created, separators=(",", ":")))

        def server(mode: str, *extra: str) -> tuple[list[str], dict[str, str]]:
            port = gateway.free_port()
            return ([sys.executable, str(HERE), mode, str(port), *extra],
                    {**env, "ALBATROSS_HTTP_PORT": str(port)})

        command, server_env = server("gateway")
        measured = await count_instructions(
            command, server_env, work, "gateway",
            [("/api/pireps", "POST", auth, PIREP),
             (f"/api/pireps/{created['id']}", "GET", auth, None)], requests, warmup)
        command, server_env = server("floor", nats_server.url, str(answer_size))
        floor = await count_instructions(command, server_env, work, "floor",
                                         [("/api/pireps", "POST", {}, PIREP)], requests, warmup)
        command, server_env = server("hello")
        hello = await count_instructions(command, server_env, work, "hello",
                                         [("/hello", "GET", {}, None)], requests, warmup)
    finally:
        for child in children:
            child.terminate()
            await child.wait()
        await postgres.stop()
        await nats_server.stop()
        shutil.rmtree(work, ignore_errors=True)
    post, get = measured["POST /api/pireps"], measured[f"GET /api/pireps/{created['id']}"]
    floor_post, hello_get = floor["POST /api/pireps"], hello["GET /hello"]
    common = _common()
    return {
        "results": {"post_pireps_instructions": round(post),
                    "get_pirep_instructions": round(get),
                    "requests_counted": requests, "concurrency": CONCURRENCY},
        "baselines": {"floor_post_instructions": round(floor_post),
                      "hello_get_instructions": round(hello_get)},
        "targets": [
            common.target("post_pireps_vs_floor", common.ratio(post, floor_post), "<=", 2.0),
            common.target("get_pirep_vs_hello", common.ratio(get, hello_get), "<=", 2.0),
        ],
    }


def _common() -> Any:
    from bench import _common as common

    return common


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] in ("gateway", "floor", "hello"):
        mode, port = sys.argv[1], int(sys.argv[2])
        if mode == "gateway":
            serve_gateway()
            return
        import uvloop

        if mode == "floor":
            uvloop.run(serve_floor(sys.argv[3], port, int(sys.argv[4])))
        else:
            uvloop.run(_gateway_bench().serve_hello(port))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600,
                        help="requests counted per measurement (after a warm-up)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 requests")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench/instructions.py needs valgrind (Debian: apt-get install valgrind)")
    requests = 40 if args.quick else args.requests
    from albatross.observability import configure_logging

    configure_logging("bench", level="warning", stream=sys.stderr)
    line = asyncio.run(orchestrate(requests, warmup=max(20, requests // 6)))
    _common().emit("instructions", line["results"], line["baselines"], line["targets"])


if __name__ == "__main__":
    main()
