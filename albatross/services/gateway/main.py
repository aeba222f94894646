"""``albatross-gateway``: the public REST API (and the web UI's files) on one port."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

import nats
from aiohttp import web
from prometheus_client import CollectorRegistry

from albatross.adapters.jetstream.topology import topology_for
from albatross.config import ConfigError, Settings, local_url, without_credentials
from albatross.lifecycle import (
    Shutdown,
    StartupError,
    close_nats,
    connect_dependency,
    run_main,
    tune_gc_for_serving,
)
from albatross.observability import configure_logging, get_logger
from albatross.ops_http import OpsEndpoints, scraped_registry
from albatross.services.gateway.app import create_app
from albatross.services.gateway.container import build_gateway_deps, closing

DRAIN_SECONDS = 5.0  # in-flight requests get this long after SIGTERM



async def serve(settings: Settings, shutdown: Shutdown) -> None:
    log = get_logger("gateway")
    if not settings.nats_url:
        raise StartupError("ALBATROSS_NATS_URL is required")
    if not settings.database_url:
        raise StartupError("ALBATROSS_DATABASE_URL is required")
    if settings.hashing_slots_dir is not None:
        try:
            settings.hashing_slots_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"ALBATROSS_HASHING_SLOTS_DIR: cannot use "
                               f"{settings.hashing_slots_dir}: {exc.strerror}") from exc
    from albatross.adapters.postgres.read_models import PostgresReadModels

    nc = await connect_dependency(
        f"NATS at {without_credentials(settings.nats_url)}",
        nats.connect(settings.nats_url.split(","), connect_timeout=5,
                     max_reconnect_attempts=-1, name="albatross-gateway"), timeout=15)
    try:
        read_models = await connect_dependency(
            "PostgreSQL", PostgresReadModels.open(
                settings.database_url, max_size=settings.gateway_pool_size,
                pirep_cache_seconds=settings.pirep_cache_ms / 1000),
            timeout=15)
    except BaseException:
        await nc.close()
        raise
    registry = CollectorRegistry()
    stopping = asyncio.Event()
    ops = OpsEndpoints(scraped_registry(registry, os.environ), stopping=stopping)

    async def nats_ready() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected")
        await nc.flush(timeout=1)

    async def postgres_ready() -> None:
        await read_models.checkpoint()

    ops.add_check("nats", nats_ready)
    ops.add_check("postgres", postgres_ready)

    async def close_connections() -> None:
        await read_models.close()
        await close_nats(nc)

    try:
        deps = await build_gateway_deps(
            nc, topology_for(settings), read_models, registry=registry, ops=ops,
            session_ttl=timedelta(seconds=settings.session_ttl_seconds),
            login_limit_per_address=settings.login_limit_per_address,
            web_dir=settings.web_dir, hashing_slots=settings.hashing_slots_dir,
            resources=(closing(close_connections),),
            # The notifier listens on the same host setting as this gateway.
            ws_upstream=f"{local_url(settings.http_host, settings.notifier_port)}/api/ws")
    except Exception as exc:
        await close_connections()
        raise StartupError(f"cannot open the JetStream buckets (run albatross-bootstrap "
                           f"first?): {exc!r}") from exc
    if not settings.web_dir.is_dir():
        # Otherwise the only sign is a 404 at "/" (ALBATROSS_WEB_DIR is relative to the cwd).
        log.warning("web UI not served: no such directory", web_dir=str(settings.web_dir),
                    resolved=str(settings.web_dir.resolve()),
                    fix="build it (make web) or set ALBATROSS_WEB_DIR")
    app = create_app(deps, body_timeout=settings.http_body_timeout)
    # aiohttp closes a connection that has not sent a complete request head within the
    # keep-alive timeout (from the connection's start, and between requests): that is the
    # header timeout against slow-loris clients.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=DRAIN_SECONDS,
                           keepalive_timeout=settings.http_header_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port,
                           reuse_port=settings.http_reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.http_host}:{settings.http_port}: "
                               f"{exc.strerror}") from exc
        log.info("gateway listening", host=settings.http_host, port=settings.http_port)
        tune_gc_for_serving()
        await shutdown.wait()
        log.info("gateway stopping", reason=shutdown.reason)
        stopping.set()
    finally:
        await runner.cleanup()


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"albatross-gateway: error: {exc}\n")
        raise SystemExit(2) from None
    configure_logging("gateway", settings.log_level, human=settings.dev_mode)
    run_main(lambda shutdown: serve(settings, shutdown), name="albatross-gateway")


if __name__ == "__main__":
    main()
