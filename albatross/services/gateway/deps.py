"""What the gateway needs, built once in ``main()`` (or by a test) and handed to create_app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from albatross.application.api_key_usage import ApiKeyUsage
from albatross.application.auth import Authenticator, LoginService
from albatross.application.auth_ports import ClaimLookup
from albatross.application.commands import CommandService
from albatross.application.principal import Principal
from albatross.ops_http import OpsEndpoints
from albatross.ports import Clock, ReadModels

CleanupContext = Callable[[web.Application], AsyncIterator[None]]

BODY_LIMIT = 64 * 1024
MIN_SEQUENCE_WAIT = 5.0


@dataclass(frozen=True)
class GatewayDeps:
    authenticator: Authenticator
    login: LoginService
    commands: CommandService
    read_models: ReadModels
    claims: ClaimLookup
    clock: Clock
    registry: CollectorRegistry
    ops: OpsEndpoints
    web_dir: Path | None = None
    # The notifier's WebSocket URL, relayed at /api/ws (all-in-one run); None: no relay.
    ws_upstream: str | None = None
    # Resources the app owns (connections, pools, background flushers): opened on startup,
    # closed on cleanup, in aiohttp's cleanup_ctx order.
    resources: Sequence[CleanupContext] = field(default_factory=tuple)
    # Where API-key uses are noted for last_used_at (None: not kept, e.g. in some tests).
    api_key_usage: ApiKeyUsage | None = None
    min_sequence_wait: float = MIN_SEQUENCE_WAIT
    body_limit: int = BODY_LIMIT


DEPS = web.AppKey("albatross.deps", GatewayDeps)
PRINCIPAL = web.RequestKey("albatross.principal", Principal)
SECRET = web.RequestKey("albatross.secret", str)
REQUEST_ID = web.RequestKey("albatross.request_id", str)
