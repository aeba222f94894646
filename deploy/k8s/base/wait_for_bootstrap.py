"""Init container of every Albatross Deployment: wait until bootstrap's work is visible.

Exits 0 once, with this process's own credentials (``ALBATROSS_NATS_URL``,
``ALBATROSS_DATABASE_URL``), the Albatross streams exist and every read-model migration that
this image ships is recorded in ``public.schema_migrations``; exits 1 after
``WAIT_TIMEOUT_SECONDS``. So a new version's pods start only after that version's bootstrap
Job ran, whatever applied the manifests. ``WAIT_INBOX_PREFIX``: the NATS inbox prefix this
user may subscribe to (deploy/nats/auth.conf). Runs with the image's own Python and packages.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import nats

from albatross.adapters.jetstream.topology import Topology
from albatross.adapters.postgres.migrations import READ_MODEL_SCHEMA, load_migrations


async def missing(env: dict[str, str]) -> str | None:
    """What bootstrap has not done yet, or None when everything is in place."""
    topology = Topology()
    nc = await nats.connect(env["ALBATROSS_NATS_URL"].split(","), connect_timeout=3,
                            allow_reconnect=False,
                            inbox_prefix=env.get("WAIT_INBOX_PREFIX") or "_INBOX")
    try:
        js = nc.jetstream(timeout=3)
        for stream in (topology.events_stream, topology.changes_stream):
            try:
                await js.stream_info(stream)
            except Exception as exc:
                return f"stream {stream}: {exc!r}"
    finally:
        await nc.close()
    dsn = env.get("ALBATROSS_DATABASE_URL")
    if not dsn:
        return None
    wanted = {m.version for m in load_migrations()}
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await connection.fetch(
            "SELECT version FROM public.schema_migrations WHERE schema_name = $1",
            READ_MODEL_SCHEMA)
    except asyncpg.UndefinedTableError:
        return "no migration applied yet"
    finally:
        await connection.close()
    absent = sorted(wanted - {row["version"] for row in rows})
    return f"migrations not applied: {absent}" if absent else None


async def wait(env: dict[str, str]) -> int:
    deadline = time.monotonic() + float(env.get("WAIT_TIMEOUT_SECONDS", "600"))
    interval = float(env.get("WAIT_INTERVAL_SECONDS", "2"))
    last = ""
    while True:
        try:
            reason = await asyncio.wait_for(missing(env), timeout=30)
        except Exception as exc:  # a dependency that is not up yet: keep waiting
            reason = f"unreachable: {exc!r}"
        if reason is None:
            print("wait-for-bootstrap: bootstrap is done", flush=True)
            return 0
        if reason != last:
            print(f"wait-for-bootstrap: waiting ({reason})", flush=True)
            last = reason
        if time.monotonic() >= deadline:
            print(f"wait-for-bootstrap: gave up ({reason})", file=sys.stderr, flush=True)
            return 1
        await asyncio.sleep(interval)


if __name__ == "__main__":
    sys.exit(asyncio.run(wait(dict(os.environ))))
