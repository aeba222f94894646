"""Wiring of the gateway (and of the notifier's authenticator) on NATS JetStream.

``jetstream_auth`` is what the notifier calls to authenticate tokens exactly as the gateway
does; ``build_gateway_deps`` is the gateway's whole object graph.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from albatross.adapters.codec import EventCodec
from albatross.adapters.jetstream.credentials import JetStreamClaimLookup
from albatross.adapters.jetstream.event_store import JetStreamEventStore
from albatross.adapters.jetstream.sessions import JetStreamKeyValue
from albatross.adapters.jetstream.snapshots import JetStreamSnapshotStore
from albatross.adapters.jetstream.topology import Topology
from albatross.adapters.passwords import Argon2PasswordHasher
from albatross.adapters.system import SystemClock, UuidV7Ids
from albatross.application.api_key_usage import ApiKeyUsage
from albatross.application.auth import Authenticator, LoginService
from albatross.application.auth_ports import ClaimLookup, PasswordHasher
from albatross.application.commands import CommandService, Repositories
from albatross.application.throttle import LoginThrottle
from albatross.domain.aggregates import default_registry
from albatross.ops_http import OpsEndpoints
from albatross.ports import Clock, IdGenerator, ReadModels
from albatross.services.gateway.deps import CleanupContext, GatewayDeps


@dataclass(frozen=True)
class JetStreamAuth:
    repos: Repositories
    claims: ClaimLookup
    sessions: JetStreamKeyValue
    authenticator: Authenticator


async def jetstream_auth(nc: NATS, topology: Topology, *, clock: Clock | None = None,
                         cache_ttl: float = 0.5) -> JetStreamAuth:
    """The authenticator on JetStream: ``await auth.authenticator.authenticate(secret)``."""
    clock = clock or SystemClock()
    codec = EventCodec(default_registry())
    store = JetStreamEventStore(nc, codec, topology.events_stream)
    repos = Repositories(store, JetStreamSnapshotStore(nc, topology.snapshots_bucket))
    claims = JetStreamClaimLookup(nc, topology.events_stream)
    sessions = await JetStreamKeyValue.open(nc, topology.sessions_bucket)
    authenticator = Authenticator(repos.users, sessions, claims, clock, cache_ttl=cache_ttl)
    return JetStreamAuth(repos, claims, sessions, authenticator)


def closing(close: Callable[[], Awaitable[None]]) -> CleanupContext:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        yield
        await close()

    return context


# How stale an API key's last_used_at may be, against one event per key and interval.
USAGE_FLUSH_SECONDS = 30.0
FINAL_FLUSH_SECONDS = 2.0


def flushing(usage: ApiKeyUsage, interval: float) -> CleanupContext:
    """Flush noted API-key uses every ``interval`` seconds, and once more at shutdown."""

    async def context(_app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                await usage.flush()

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Bounded: a store that is down must not hold the process past its drain deadline.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(usage.flush(), timeout=FINAL_FLUSH_SECONDS)

    return context


async def build_gateway_deps(nc: NATS, topology: Topology, read_models: ReadModels, *,
                             registry: CollectorRegistry, ops: OpsEndpoints,
                             session_ttl: timedelta, login_limit_per_address: int = 0,
                             web_dir: Path | None = None, ws_upstream: str | None = None,
                             hasher: PasswordHasher | None = None,
                             hashing_slots: Path | None = None,
                             clock: Clock | None = None, ids: IdGenerator | None = None,
                             resources: tuple[CleanupContext, ...] = ()) -> GatewayDeps:
    clock = clock or SystemClock()
    ids = ids or UuidV7Ids()
    auth = await jetstream_auth(nc, topology, clock=clock)
    throttles = await JetStreamKeyValue.open(nc, topology.login_throttle_bucket)
    idempotency = await JetStreamKeyValue.open(nc, topology.idempotency_bucket)
    own_hasher = hasher is None
    the_hasher: PasswordHasher = hasher or Argon2PasswordHasher(shared_slots=hashing_slots)
    window = timedelta(seconds=topology.login_window_seconds)
    address_throttle = (LoginThrottle(throttles, clock, limit=login_limit_per_address,
                                      window=window, namespace="address")
                        if login_limit_per_address > 0 else None)
    login = LoginService(auth.repos.users, auth.claims, auth.sessions, the_hasher, clock, ids,
                         session_ttl=session_ttl,
                         email_throttle=LoginThrottle(throttles, clock, window=window),
                         address_throttle=address_throttle)
    commands = CommandService(auth.repos, auth.claims, the_hasher, clock, ids, idempotency,
                              password_throttle=LoginThrottle(throttles, clock, window=window,
                                                              namespace="password-change"),
                              on_credentials_changed=lambda user_id: auth.authenticator.forget(
                                  user_id=user_id))
    usage = ApiKeyUsage(auth.repos.users)
    extra: list[CleanupContext] = [*resources, flushing(usage, USAGE_FLUSH_SECONDS)]
    if own_hasher and isinstance(the_hasher, Argon2PasswordHasher):
        pool_owner = the_hasher

        async def close_hasher() -> None:
            await asyncio.to_thread(pool_owner.close)

        extra.append(closing(close_hasher))
    return GatewayDeps(authenticator=auth.authenticator, login=login, commands=commands,
                       read_models=read_models, claims=auth.claims, clock=clock,
                       registry=registry, ops=ops, web_dir=web_dir, ws_upstream=ws_upstream,
                       api_key_usage=usage, resources=tuple(extra))
