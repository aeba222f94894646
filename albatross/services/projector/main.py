"""``albatross-projector``: projects ``albatross.events.>`` into the PostgreSQL read models.

Several replicas may run; one applies (see :mod:`.leader`), the others stand by. Each serves
``/healthz``, ``/readyz`` (NATS and PostgreSQL answer) and ``/metrics`` on
``ALBATROSS_PROJECTOR_PORT``.
"""

from __future__ import annotations

import os

import nats
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.topology import topology_for, wait_for_streams
from albatross.adapters.postgres.migrations import apply_migrations
from albatross.adapters.postgres.pool import Pool, create_pool
from albatross.config import ConfigError, Settings, without_credentials
from albatross.domain.aggregates import default_registry
from albatross.lifecycle import (
    Shutdown,
    StartupError,
    close_nats,
    connect_dependency,
    run_main,
    tune_gc_for_serving,
)
from albatross.observability import configure_logging, get_logger
from albatross.ops_http import OpsEndpoints, ReadinessCheck, serve_ops
from albatross.services.projector.consumer import INBOX_PREFIX
from albatross.services.projector.metrics import ProjectorMetrics
from albatross.services.projector.runner import Projector

NAME = "albatross-projector"


def _checks(nc: NATS, pool: Pool) -> dict[str, ReadinessCheck]:
    async def nats_ready() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected")
        await nc.flush(timeout=1)

    async def postgres_ready() -> None:
        await pool.fetchval("SELECT 1")

    return {"nats": nats_ready, "postgres": postgres_ready}


async def serve(settings: Settings, shutdown: Shutdown) -> None:
    log = get_logger("projector")
    if not settings.nats_url:
        raise ConfigError("ALBATROSS_NATS_URL is required")
    if not settings.database_url:
        raise ConfigError("ALBATROSS_DATABASE_URL is required")
    dsn = settings.database_url
    nc = await connect_dependency(
        f"NATS at {without_credentials(settings.nats_url)}",
        nats.connect(settings.nats_url.split(","), connect_timeout=5,
                     max_reconnect_attempts=-1, reconnect_time_wait=0.5, name=NAME,
                     inbox_prefix=INBOX_PREFIX),
        timeout=15)
    pool: Pool | None = None
    runner = None
    try:
        topology = topology_for(settings)
        await connect_dependency(
            "the JetStream streams (bootstrap creates them)",
            wait_for_streams(nc.jetstream(), [topology.events_stream, topology.changes_stream],
                             timeout=60), timeout=61)
        applied = await connect_dependency("PostgreSQL", apply_migrations(dsn), timeout=60)
        pool = await create_pool(dsn, min_size=1, max_size=2,
                                 application_name="albatross-projector-ops")
        registry = CollectorRegistry()
        metrics = ProjectorMetrics(registry)
        endpoints = OpsEndpoints(registry, _checks(nc, pool), stopping=shutdown.requested)
        try:
            runner = await serve_ops(settings.http_host, settings.projector_port, endpoints)
        except OSError as exc:
            raise StartupError(f"cannot listen on port {settings.projector_port}: {exc}") from exc
        ports = [address[1] for address in runner.addresses]
        log.info("projector started", ops_ports=ports, migrations_applied=applied)
        tune_gc_for_serving()
        projector = Projector(nc, dsn, EventCodec(default_registry()), metrics,
                              events_stream=topology.events_stream,
                              changes_stream=topology.changes_stream)
        await projector.run(shutdown.requested)
        log.info("projector stopped", reason=shutdown.reason)
    finally:
        if runner is not None:
            await runner.cleanup()
        if pool is not None:
            await pool.close()
        await close_nats(nc)


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        raise SystemExit(f"{NAME}: error: {exc}") from None
    configure_logging("projector", settings.log_level, human=settings.dev_mode)

    async def run(shutdown: Shutdown) -> None:
        await serve(settings, shutdown)

    run_main(run, name=NAME)


if __name__ == "__main__":
    main()
