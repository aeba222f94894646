"""The notifier's aiohttp application, built from injected dependencies.

``create_app`` wires ``GET /api/ws`` and (when given) the operations endpoints. The hub and the
revocation watcher start with the application (cleanup context) and stop after its sockets:
on shutdown every socket is closed with 1001 so that its client resumes on another replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from albatross.observability import get_logger
from albatross.ops_http import OpsEndpoints, ReadinessCheck
from albatross.services.gateway.security_headers import add_security_headers
from albatross.services.notifier.handler import SocketConfig, WebSocketEndpoint
from albatross.services.notifier.hub import Hub
from albatross.services.notifier.metrics import NotifierMetrics
from albatross.services.notifier.ports import Authenticator, ChangeFeed, RevocationSignals
from albatross.services.notifier.protocol import CLOSE_GOING_AWAY
from albatross.services.notifier.revocation import RevocationWatcher

WS_PATH = "/api/ws"
_log = get_logger("albatross.notifier")


@dataclass(frozen=True)
class NotifierConfig:
    socket: SocketConfig = field(default_factory=SocketConfig)
    revalidate_interval: float = 30.0


@dataclass(frozen=True)
class NotifierDeps:
    authenticator: Authenticator
    feed: ChangeFeed
    signals: RevocationSignals
    registry: CollectorRegistry
    ops: OpsEndpoints | None = None
    config: NotifierConfig = field(default_factory=NotifierConfig)


@dataclass(frozen=True)
class Notifier:
    """The running parts, for readiness checks and tests."""

    hub: Hub
    watcher: RevocationWatcher
    endpoint: WebSocketEndpoint
    metrics: NotifierMetrics


NOTIFIER = web.AppKey("albatross.notifier", Notifier)


def create_app(deps: NotifierDeps) -> web.Application:
    metrics = NotifierMetrics(deps.registry)
    hub = Hub(deps.feed, metrics)
    watcher = RevocationWatcher(hub, deps.authenticator, deps.signals, metrics,
                                interval=deps.config.revalidate_interval)
    endpoint = WebSocketEndpoint(hub, deps.authenticator, deps.feed, metrics,
                                 deps.config.socket, on_admitted=watcher.admitted)
    notifier = Notifier(hub=hub, watcher=watcher, endpoint=endpoint, metrics=metrics)

    app = web.Application()
    add_security_headers(app)
    app[NOTIFIER] = notifier
    app.router.add_get(WS_PATH, endpoint.handle)
    if deps.ops is not None:
        deps.ops.add_check("changes_feed", _feed_check(hub))
        deps.ops.add_routes(app)

    async def running(_app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        try:
            await watcher.start()
        except BaseException:
            await hub.stop()
            raise
        _log.info("notifier started", sequence=hub.last_sequence)
        yield
        await watcher.stop()
        await hub.stop()

    async def going_away(_app: web.Application) -> None:
        endpoint.stop_admitting()
        count = len(hub.sessions())
        await endpoint.close_unauthenticated()
        await hub.close_all(CLOSE_GOING_AWAY, "server shutting down")
        _log.info("sockets closed for shutdown", sockets=count)

    app.cleanup_ctx.append(running)
    app.on_shutdown.append(going_away)
    return app


def _feed_check(hub: Hub) -> ReadinessCheck:
    async def check() -> None:
        if not hub.running:
            raise RuntimeError("changes feed not running")

    return check
