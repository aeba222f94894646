"""``albatross-notifier``: live changes over WebSockets (``GET /api/ws``) plus ops endpoints.

Serves on ``ALBATROSS_NOTIFIER_PORT`` (host ``ALBATROSS_HTTP_HOST``). Needs
``ALBATROSS_NATS_URL`` and the topology made by ``albatross-bootstrap``. On SIGTERM: ``/readyz``
turns 503, every socket gets close code 1001 (clients resume on another replica), then the
process exits 0 well within 10 s.
"""

from __future__ import annotations

import asyncio
import os
import sys

import nats
from aiohttp import web
from prometheus_client import CollectorRegistry

from albatross.adapters.jetstream.topology import topology_for
from albatross.config import ConfigError, Settings, without_credentials
from albatross.lifecycle import (
    Shutdown,
    StartupError,
    close_nats,
    connect_dependency,
    run_main,
    tune_gc_for_serving,
)
from albatross.observability import configure_logging, get_logger
from albatross.ops_http import OpsEndpoints
from albatross.services.gateway.container import jetstream_auth
from albatross.services.notifier.app import NOTIFIER, NotifierConfig, NotifierDeps, create_app
from albatross.services.notifier.handler import SocketConfig
from albatross.services.notifier.jetstream import JetStreamChangeFeed, JetStreamRevocationSignals

NAME = "albatross-notifier"
INBOX_PREFIX = "_INBOX_notifier"
# Handlers get this long after the sockets were told 1001 (their closes are bounded anyway).
SHUTDOWN_TIMEOUT = 2.0


def notifier_config(settings: Settings) -> NotifierConfig:
    return NotifierConfig(socket=SocketConfig(allowed_origins=settings.allowed_origins))



async def serve(settings: Settings, shutdown: Shutdown) -> None:
    log = get_logger("notifier")
    if not settings.nats_url:
        raise StartupError("ALBATROSS_NATS_URL is required")
    app_ref: list[web.Application] = []

    async def reconnected() -> None:
        # Signals missed while disconnected are redelivered by the ordered consumers; this
        # re-check of every socket is one more safety net.
        if app_ref:
            await app_ref[0][NOTIFIER].watcher.revalidate_all()

    nc = await connect_dependency(
        f"NATS at {without_credentials(settings.nats_url)}",
        nats.connect(settings.nats_url.split(","), connect_timeout=5, name=NAME,
                     max_reconnect_attempts=-1, reconnected_cb=reconnected,
                     # The notifier's NATS user may read replies on its own inboxes only
                     # (deploy/nats/auth.conf): others' replies can carry credentials.
                     inbox_prefix=INBOX_PREFIX), timeout=15)
    try:
        topology = topology_for(settings)
        js = nc.jetstream()
        try:
            auth = await jetstream_auth(nc, topology)
        except Exception as exc:
            raise StartupError(f"cannot open the JetStream buckets (run albatross-bootstrap "
                               f"first?): {exc!r}") from exc
        registry = CollectorRegistry()
        stopping = asyncio.Event()
        ops = OpsEndpoints(registry, stopping=stopping)

        async def nats_ready() -> None:
            if not nc.is_connected:
                raise ConnectionError("not connected")
            await nc.flush(timeout=1)

        ops.add_check("nats", nats_ready)
        deps = NotifierDeps(
            authenticator=auth.authenticator,
            feed=JetStreamChangeFeed(js, topology.changes_stream),
            signals=JetStreamRevocationSignals(nc, sessions_bucket=topology.sessions_bucket),
            registry=registry, ops=ops, config=notifier_config(settings))
        app = create_app(deps)
        app_ref.append(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT,
                               handle_signals=False)
        try:
            await runner.setup()
        except Exception as exc:
            raise StartupError(f"cannot subscribe to the changes stream: {exc!r}") from exc
        try:
            try:
                await web.TCPSite(runner, settings.http_host, settings.notifier_port).start()
            except OSError as exc:
                raise StartupError(f"cannot listen on {settings.http_host}:"
                                   f"{settings.notifier_port}: {exc}") from exc
            log.info("listening", host=settings.http_host, port=settings.notifier_port)
            tune_gc_for_serving()
            await shutdown.wait()
            log.info("stopping", reason=shutdown.reason)
            stopping.set()
        finally:
            await runner.cleanup()
    finally:
        await close_nats(nc)
    log.info("stopped")


def main() -> None:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"{NAME}: error: {exc}\n")
        raise SystemExit(2) from None
    configure_logging("notifier", settings.log_level, human=settings.dev_mode)
    run_main(lambda shutdown: serve(settings, shutdown), name=NAME)


if __name__ == "__main__":
    main()
