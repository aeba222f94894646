"""Gateway benchmark (issue 3): one JSON line with the gateway's figures and its baselines.

    .venv/bin/python bench/gateway.py [--seconds 8] [--clients 64]

Starts embedded nats-server and PostgreSQL (or uses ALBATROSS_NATS_URL/ALBATROSS_DATABASE_URL),
runs bootstrap, then the gateway (as many processes on its port as ``albatross up`` would run
here, their pools together the SELECT baseline's size) and the projector as separate
processes. Every load runs in a separate process with ``--clients`` concurrent clients, API-key
auth for the gateway; every HTTP load, baseline or not, goes through the same lean keep-alive
client (``bench/_http.py``):

* ``POST /api/pireps`` and ``GET /api/pireps/{id}`` at full speed, the GET also past the
  gateway's PIREP cache (``Cache-Control: no-cache``: every request queries PostgreSQL);
* baselines, same concurrency, same run: a minimal aiohttp JSON endpoint (uvloop), raw nats-py
  ``js.publish`` to a file stream like the event store's, raw asyncpg primary-key SELECTs with
  the gateway's pool size (16);
* p99 of ``POST /api/pireps`` and of hello-world, each paced at half its maximum rate;
* ``GET /api/me`` p99 paced, idle and while 16 logins run concurrently (argon2id production).

The four paced loads, whose p99s the targets compare, are measured again when the host stole
over 1% of the machine's CPU time during them (at most twice more; the least stolen-from
attempt is the figure, each attempt recorded under ``attempts``: ``_common.least_disturbed``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))
PG_POOL = 16
PASSWORD = "bench password 123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def py_spy() -> str:
    """py-spy beside this interpreter (a venv's bin is often not on PATH), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def summary(latencies: list[float], errors: int, seconds: float,
            cpu_s: float) -> dict[str, Any]:
    return {"rate": round(len(latencies) / seconds, 1), "errors": errors,
            "p50_ms": round(_common().percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(_common().percentile(latencies, 99) * 1000, 3),
            "loadgen_cpu_s": round(cpu_s, 3)}


# Load generators (each runs in its own process) ---------------------------------------------

async def worker_loop(call: Any, seconds: float, clients: int, rate: float | None,
                      stats: list[float], errors: list[int]) -> float:
    """Run the load; the CPU seconds this process spent on it (its start-up, ~0.4 s, is not
    the load's: counted in, it was most of the load process's CPU per POST)."""
    cpu = time.process_time()
    deadline = time.perf_counter() + seconds

    async def one(index: int) -> None:
        interval = clients / rate if rate else 0.0
        next_at = time.perf_counter() + (interval * index / clients)
        while True:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                ok = await call()
            except Exception:
                ok = False
            if ok:
                stats.append(time.perf_counter() - started)
            else:
                errors[0] += 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    return time.process_time() - cpu


async def load_http(spec: dict[str, Any]) -> dict[str, Any]:
    # The lean client (bench/_http.py) of the end-to-end bench: aiohttp's client spent
    # 0.2-0.4 ms of CPU per request here, taken from the two cores the servers share.
    url = urlsplit(spec["url"])
    pool = _http().HttpPool(f"{url.scheme}://{url.netloc}", spec["clients"])
    body = json.dumps(spec.get("json")).encode() if spec.get("json") is not None else None
    headers = {**spec.get("headers", {}), "Content-Type": "application/json"}
    request = pool.prepare(spec["method"], url.path, body, headers)
    stats: list[float] = []
    errors = [0]
    await pool.open()
    # Loads started together begin together, once every process is up (a Python start-up
    # costs ~0.4 s of CPU: sixteen of them would otherwise be measured as load).
    delay = spec.get("start_at", 0.0) - time.time()
    if delay > 0:
        await asyncio.sleep(delay)

    async def call() -> bool:
        status, _ = await pool.send(request)
        return status < 300

    try:
        cpu_s = await worker_loop(call, spec["seconds"], spec["clients"], spec.get("rate"),
                                  stats, errors)
    finally:
        await pool.close()
    return summary(stats, errors[0], spec["seconds"], cpu_s)


async def load_publish(spec: dict[str, Any]) -> dict[str, Any]:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(spec["nats_url"])
    js = nc.jetstream()
    name = "BENCH_BASELINE"
    with contextlib.suppress(Exception):
        await js.delete_stream(name)
    await js.add_stream(StreamConfig(name=name, subjects=["bench.>"], storage=StorageType.FILE,
                                     num_replicas=1, allow_direct=True))
    payload = b"x" * 300
    stats: list[float] = []
    errors = [0]
    counter = [0]

    async def call() -> bool:
        counter[0] += 1
        await js.publish(f"bench.{counter[0] % 10_000}", payload, stream=name)
        return True

    cpu_s = await worker_loop(call, spec["seconds"], spec["clients"], None, stats, errors)
    await js.delete_stream(name)
    await nc.close()
    return summary(stats, errors[0], spec["seconds"], cpu_s)


async def load_select(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped]

    pool = await asyncpg.create_pool(spec["dsn"], min_size=PG_POOL, max_size=PG_POOL)
    async with pool.acquire() as connection:
        await connection.execute("CREATE TABLE IF NOT EXISTS bench_baseline "
                                 "(id text PRIMARY KEY, data jsonb NOT NULL)")
        await connection.execute("INSERT INTO bench_baseline SELECT 'k' || g, "
                                 "'{\"a\": 1}'::jsonb FROM generate_series(1, 10000) g "
                                 "ON CONFLICT DO NOTHING")
    stats: list[float] = []
    errors = [0]
    counter = [0]

    async def call() -> bool:
        counter[0] += 1
        row = await pool.fetchrow("SELECT data FROM bench_baseline WHERE id = $1",
                                  f"k{counter[0] % 10_000 + 1}")
        return row is not None

    cpu_s = await worker_loop(call, spec["seconds"], spec["clients"], None, stats, errors)
    await pool.close()
    return summary(stats, errors[0], spec["seconds"], cpu_s)


async def serve_hello(port: int) -> None:
    """The hello-world baseline: a minimal aiohttp JSON endpoint at ``/hello``."""
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    await serve_routes(port, [web.get("/hello", hello)])


async def serve_routes(port: int, routes: list[Any]) -> None:
    """A bare aiohttp app with ``routes`` and a ``/readyz`` on ``port``, until stopped."""
    from aiohttp import web

    async def ready(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([*routes, web.get("/readyz", ready)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def run_child(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE), mode, json.dumps(spec), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# Orchestration ------------------------------------------------------------------------------

async def wait_ready(url: str, timeout: float = 60) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} never became ready")


async def api(http: Any, method: str, url: str, token: str | None = None,
              **kwargs: Any) -> tuple[int, Any, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, headers=headers, **kwargs) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None), response.headers


async def caught_up(http: Any, base: str, auth: dict[str, str], pirep: dict[str, Any],
                    timeout: float = 120) -> float:
    """Seconds until the read models show a PIREP posted now (the projector caught up)."""
    started = time.monotonic()
    _, created, headers = await api(http, "POST", f"{base}/api/pireps", headers=auth,
                                    json=pirep)
    wait = {**auth, "Albatross-Min-Sequence": headers["Albatross-Sequence"]}
    while time.monotonic() - started < timeout:
        status, _, _ = await api(http, "GET", f"{base}/api/pireps/{created['id']}",
                                 headers=wait)
        if status == 200:
            return round(time.monotonic() - started, 2)
    raise RuntimeError("the projector did not catch up")


async def orchestrate(seconds: float, clients: int, profile_dir: str | None = None,
                      only: set[str] | None = None, login_count: int = 16,
                      cprofile: str | None = None) -> dict[str, Any]:
    import aiohttp

    from albatross.adapters.passwords import TEST_ONLY_CHEAP, Argon2PasswordHasher
    from albatross.config import Settings
    from albatross.infra.nats_server import NatsServer
    from albatross.infra.postgres_server import PostgresServer
    from albatross.services.bootstrap.main import bootstrap
    from albatross.services.up import gateway_services

    work = Path(tempfile.mkdtemp(prefix="albatross-bench-"))
    servers: list[Any] = []
    children: list[asyncio.subprocess.Process] = []
    nats_url = os.environ.get("ALBATROSS_NATS_URL", "")
    dsn = os.environ.get("ALBATROSS_DATABASE_URL", "")
    try:
        if not nats_url:
            nats_server = NatsServer(work / "nats")
            await nats_server.start()
            servers.append(nats_server)
            nats_url = nats_server.url
        if not dsn:
            pg = PostgresServer(work / "pg")
            await pg.start()
            servers.append(pg)
            dsn = pg.dsn
        admin = "bench-admin@albatross.test"
        env = {"ALBATROSS_NATS_URL": nats_url, "ALBATROSS_DATABASE_URL": dsn,
               "ALBATROSS_ADMIN_EMAIL": admin, "ALBATROSS_ADMIN_PASSWORD": PASSWORD,
               "ALBATROSS_LOG_LEVEL": "warning"}
        cheap = Argon2PasswordHasher(TEST_ONLY_CHEAP)
        await bootstrap(Settings.from_env(env), hasher=cheap)
        cheap.close()
        port, projector_port, hello_port = free_port(), free_port(), free_port()
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "albatross.services.projector.main",
            env={**os.environ, **env, "ALBATROSS_PROJECTOR_PORT": str(projector_port)},
            stdout=asyncio.subprocess.DEVNULL))
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "hello", str(hello_port)))
        # The gateway as `albatross up` runs it: as many processes on the port as it would
        # start here, their pools together the size of the SELECT baseline's.
        gateways = gateway_services(Settings.from_env(os.environ).gateway_processes, work)
        for spec in gateways:
            # With --cprofile the gateway runs under cProfile (written when it stops); it
            # doubles the gateway's CPU, so py-spy's profiles are taken without it.
            profiled = ["-m", "cProfile", "-o", f"{cprofile}.{spec.name}"] if cprofile else []
            children.append(await asyncio.create_subprocess_exec(
                spec.command[0], *profiled, *spec.command[1:],
                env={**os.environ, **env, **spec.env, "ALBATROSS_HTTP_PORT": str(port),
                     "ALBATROSS_GATEWAY_POOL_SIZE": str(max(1, PG_POOL // len(gateways)))},
                stdout=asyncio.subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        await wait_ready(f"{base}/readyz")
        await wait_ready(f"http://127.0.0.1:{projector_port}/readyz")
        async with aiohttp.ClientSession() as http:
            _, login, _ = await api(http, "POST", f"{base}/api/auth/login",
                                    json={"email": admin, "password": PASSWORD})
            token = login["token"]
            _, tenant, _ = await api(http, "POST", f"{base}/api/tenants", token,
                                     json={"name": "Bench Air", "icao": "BNC"})
            pilot_email = "bench-pilot@albatross.test"
            _, pilot, _ = await api(http, "POST", f"{base}/api/users", token, json={
                "email": pilot_email, "display_name": "Bench", "password": PASSWORD,
                "role": "Pilot", "tenant_id": tenant["id"]})
            _, key, _ = await api(http, "POST", f"{base}/api/users/{pilot['id']}/apikeys",
                                  token, json={"name": "bench"})
            auth = {"X-API-Key": key["key"]}
            login_emails = [f"bench-login-{n}@albatross.test" for n in range(login_count)]
            for email in login_emails:
                await api(http, "POST", f"{base}/api/users", token, json={
                    "email": email, "display_name": "Login", "password": PASSWORD,
                    "role": "Pilot", "tenant_id": tenant["id"]})
            pirep = {"flight_number": "BNC1", "departure": "EGLL", "arrival": "LFPG",
                     "block_off_at": "2026-01-01T10:00:00Z",
                     "block_on_at": "2026-01-01T11:10:00Z", "flight_time_minutes": 60}
            _, created, headers = await api(http, "POST", f"{base}/api/pireps",
                                                 headers=auth, json=pirep)
            await api(http, "GET", f"{base}/api/pireps/{created['id']}",
                                headers={**auth, "Albatross-Min-Sequence":
                                         headers["Albatross-Sequence"]})
        common = {"seconds": seconds, "clients": clients}
        roots: dict[str, int | tuple[int, ...]] = {
            "gateway": tuple(child.pid for child in children[2:]), "projector": children[0].pid,
            "hello": children[1].pid,
                 **{type(s).__name__: s.pid for s in servers if s.pid is not None}}
        # py-spy follows one process per role: the first gateway stands for all of them.
        spied = {"gateway": children[2].pid, "projector": children[0].pid}

        async def measured(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
            """One load plus the CPU each process spent on it, in ms per request."""
            before = _common().cpu_by_role(roots)
            spies = [await asyncio.create_subprocess_exec(
                py_spy(), "record", "--pid", str(pid), "--duration",
                str(int(spec["seconds"])), "--rate", "250", "--format", "raw", "--output",
                str(Path(profile_dir) / f"{spec['name']}-{role}.txt"), "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                for role, pid in spied.items() if profile_dir and "name" in spec]
            figure = await run_child(mode, spec)
            for spy in spies:
                await spy.wait()
            after = _common().cpu_by_role(roots)
            done = max(1.0, figure["rate"] * spec["seconds"])
            figure["cpu_ms_per_request"] = {
                **{role: round((after[role] - before[role]) * 1000 / done, 3) for role in roots},
                "loadgen": round(figure.pop("loadgen_cpu_s") * 1000 / done, 3)}
            return figure

        def steady(label: str, load: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
            """A latency load, measured again while the host stole CPU time during it."""
            helpers = _common()
            return helpers.least_disturbed(lambda: helpers.stolen_during(load()), label)

        figures: dict[str, Any] = {"gateway_processes": len(gateways)}
        projector = children[0]

        def want(name: str) -> bool:
            return only is None or name in only

        hello_url = f"http://127.0.0.1:{hello_port}/hello"
        post = {**common, "method": "POST", "url": f"{base}/api/pireps", "headers": auth,
                "json": pirep}
        if want("hello"):
            figures["hello"] = await measured("http", {**common, "method": "GET",
                                                        "url": hello_url})
        if want("js_publish"):
            figures["js_publish"] = await measured("publish", {**common, "nats_url": nats_url})
        if want("pg_select"):
            figures["pg_select"] = await measured("select", {**common, "dsn": dsn})
        # The write path is the gateway's: the projector (measured by bench/projector.py and,
        # with everything together, by bench/e2e.py) is paused meanwhile so that it does not
        # take the same two cores; it catches up before the reads.
        projector.send_signal(signal.SIGSTOP)
        try:
            if want("post_pireps"):
                figures["post_pireps"] = await measured("http", {**post, "name": "post_pireps"})
            if want("post_pireps_half") and "post_pireps" in figures:
                half = {**post, "rate": figures["post_pireps"]["rate"] / 2}
                figures["post_pireps_half"] = await steady(
                    "POST at half rate", lambda: run_child("http", half))
        finally:
            projector.send_signal(signal.SIGCONT)
        async with aiohttp.ClientSession() as http:
            figures["catch_up_s"] = await caught_up(http, base, auth, pirep)
        if want("get_pirep"):
            figures["get_pirep"] = await measured("http", {
                **common, "name": "get_pirep", "method": "GET",
                "url": f"{base}/api/pireps/{created['id']}", "headers": auth})
        if want("get_pirep_uncached"):
            # The same read past the gateway's PIREP cache: every request queries PostgreSQL.
            figures["get_pirep_uncached"] = await measured("http", {
                **common, "name": "get_pirep_uncached", "method": "GET",
                "url": f"{base}/api/pireps/{created['id']}",
                "headers": {**auth, "Cache-Control": "no-cache"}})
        if want("hello_half") and "hello" in figures:
            hello_half = {**common, "method": "GET", "url": hello_url,
                          "rate": figures["hello"]["rate"] / 2}
            figures["hello_half"] = await steady(
                "hello world at half rate", lambda: run_child("http", hello_half))
        me = {**common, "clients": 8, "method": "GET", "url": f"{base}/api/me",
              "headers": auth, "rate": 200}
        if want("me"):
            figures["me_idle"] = await steady("GET /api/me", lambda: run_child("http", me))

            async def me_during_logins() -> dict[str, Any]:
                # 16 users logging in at once (one account logging in 16 times in parallel
                # would be throttled: in-flight attempts count as failures until they succeed).
                start_at = time.time() + 2.0 + 0.25 * len(login_emails)
                logins = asyncio.ensure_future(asyncio.gather(*(run_child("http", {
                    "seconds": seconds + 1.5, "clients": 1, "method": "POST",
                    "url": f"{base}/api/auth/login", "start_at": start_at,
                    "json": {"email": email, "password": PASSWORD}})
                    for email in login_emails)))
                await asyncio.sleep(max(0.0, start_at - time.time()))
                figure = await run_child("http", {**me, "start_at": start_at + 0.5})
                done = await logins
                figure["logins"] = {"rate": round(sum(d["rate"] for d in done), 1),
                                    "errors": sum(d["errors"] for d in done),
                                    "p50_ms": max(d["p50_ms"] for d in done)}
                return figure

            figures["me_during_logins"] = await steady("GET /api/me during logins",
                                                       me_during_logins)
            figures["logins"] = figures["me_during_logins"].pop("logins")
    finally:
        for child in children:
            if child.returncode is None:
                child.terminate()
                await child.wait()
        for server in reversed(servers):
            await server.stop()
        shutil.rmtree(work, ignore_errors=True)
    common = _common()
    targets = []

    def ratio_to_slower(numerator: str, denominators: tuple[str, ...], key: str) -> Any:
        """``numerator``'s figure over the lowest of ``denominators``'; ``None`` if missing."""
        if numerator not in figures or any(d not in figures for d in denominators):
            return None
        slower = min(figures[d][key] for d in denominators)
        return common.ratio(figures[numerator][key], slower)

    def ratio_target(name: str, numerator: str, denominators: tuple[str, ...], key: str,
                     op: str, bound: float) -> None:
        value = ratio_to_slower(numerator, denominators, key)
        if value is not None:
            targets.append(common.target(name, value, op, bound))

    ratio_target("post_pireps_vs_slower_of_hello_and_publish", "post_pireps",
                 ("hello", "js_publish"), "rate", ">=", 0.5)
    ratio_target("get_pirep_vs_slower_of_hello_and_select", "get_pirep",
                 ("hello", "pg_select"), "rate", ">=", 0.5)
    ratio_target("post_p99_at_half_rate_vs_hello_p99", "post_pireps_half", ("hello_half",),
                 "p99_ms", "<=", 4.0)
    # Information, not a target: the read path when every request queries PostgreSQL.
    uncached = ratio_to_slower("get_pirep_uncached", ("hello", "pg_select"), "rate")
    if uncached is not None:
        figures["get_pirep_uncached"]["vs_slower_of_hello_and_select"] = uncached
    ratio_target(f"me_p99_during_{login_count}_logins_vs_idle", "me_during_logins", ("me_idle",),
                 "p99_ms", "<=", 3.0)
    baseline_names = ("hello", "js_publish", "pg_select", "hello_half")
    return {
        "results": {"config": {"seconds": seconds, "clients": clients, "cpus": os.cpu_count(),
                               "loadavg_1m": round(os.getloadavg()[0], 2)},
                    **{k: v for k, v in figures.items() if k not in baseline_names}},
        "baselines": {k: figures[k] for k in baseline_names if k in figures},
        "targets": targets,
    }


def _http() -> Any:
    try:
        from bench import _http as http
    except ImportError:  # run as a script from bench/
        import _http as http  # type: ignore[no-redef]
    return http


def _common() -> Any:
    try:
        from bench import _common as common
    except ImportError:  # run as a script from bench/
        import _common as common  # type: ignore[no-redef]
    return common


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in {"http", "publish", "select", "hello"}:
        mode = sys.argv[1]
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        if mode == "hello":
            asyncio.run(serve_hello(int(sys.argv[2])))
            return
        spec = json.loads(sys.argv[2])
        runner = {"http": load_http, "publish": load_publish, "select": load_select}[mode]
        print(json.dumps(asyncio.run(runner(spec))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run at a tiny size (1 s per load, 8 clients)")
    parser.add_argument("--profile", metavar="DIR",
                        help="record py-spy profiles (collapsed stacks) of the gateway and the "
                             "projector during the POST and GET loads into DIR")
    parser.add_argument("--cprofile", metavar="FILE",
                        help="run the gateway under cProfile and write its stats to FILE "
                             "(call counts; it doubles the gateway's CPU)")
    parser.add_argument("--only", metavar="LOADS",
                        help="comma-separated loads to run (hello, js_publish, pg_select, "
                             "post_pireps, post_pireps_half, get_pirep, get_pirep_uncached, "
                             "hello_half, me); "
                             "targets whose figures are missing are left out")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.clients = 1.0, 8
    from albatross.observability import configure_logging

    # Library log lines (server start-up, bootstrap) go to stderr: stdout is the JSON line.
    configure_logging("bench", level="warning", stream=sys.stderr)
    only = set(args.only.split(",")) if args.only else None
    # The quick smoke run logs in 4 users instead of 16 (each login is its own process).
    logins = 4 if args.quick else 16
    line = asyncio.run(orchestrate(args.seconds, args.clients, args.profile, only, logins,
                                   args.cprofile))
    _common().emit("gateway", line["results"], line["baselines"], line["targets"])


if __name__ == "__main__":
    main()
