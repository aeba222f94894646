"""The JetStream streams and buckets Albatross needs, created or updated idempotently.

``bootstrap`` calls :func:`ensure_topology`; running it twice, or from two processes at once,
leaves one correct topology.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from albatross.adapters.codec import CHANGES, CLAIMS, EVENTS, SECRETS
from albatross.config import Settings

DAY = 24 * 3600.0


@dataclass(frozen=True)
class Topology:
    """Names and settings of every stream; ``replicas`` is 1 locally, 3 in a cluster."""

    replicas: int = 1
    events_stream: str = "ALBATROSS_EVENTS"
    changes_stream: str = "ALBATROSS_CHANGES"
    snapshots_bucket: str = "albatross_snapshots"
    changes_max_age_seconds: float = 7 * DAY
    duplicate_window_seconds: float = 120.0
    # Credentials and request state shared by every gateway/notifier replica (KV buckets).
    sessions_bucket: str = "albatross_sessions"
    session_ttl_seconds: float = 12 * 3600.0
    login_throttle_bucket: str = "albatross_login_throttle"
    login_window_seconds: float = 15 * 60.0
    idempotency_bucket: str = "albatross_idempotency"
    idempotency_ttl_seconds: float = 10 * 60.0

    @property
    def snapshots_stream(self) -> str:
        return f"KV_{self.snapshots_bucket}"

    def events_config(self) -> StreamConfig:
        # The event store is append-only: deletes and purges are refused by the server itself.
        return StreamConfig(
            name=self.events_stream,
            description="Albatross event store: domain events, credentials, uniqueness claims",
            subjects=[f"{EVENTS}.>", f"{SECRETS}.>", f"{CLAIMS}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window_seconds,
            allow_direct=True,
            allow_atomic=True,
            allow_msg_ttl=True,
            deny_delete=True,
            deny_purge=True,
            discard=DiscardPolicy.NEW,
        )

    def changes_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.changes_stream,
            description="Albatross change notifications, after projection",
            subjects=[f"{CHANGES}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            max_age=self.changes_max_age_seconds,
            duplicate_window=self.duplicate_window_seconds,
            allow_direct=True,
            allow_atomic=True,  # the outbox publishes a backlog as one batch
        )

    def snapshots_config(self) -> StreamConfig:
        # A KV bucket by hand: only the last value per key matters, and losing one is harmless.
        return StreamConfig(
            name=self.snapshots_stream,
            description="Albatross aggregate state snapshots (a cache)",
            subjects=[f"$KV.{self.snapshots_bucket}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            max_msgs_per_subject=1,
            discard=DiscardPolicy.OLD,
            allow_direct=True,
            allow_rollup_hdrs=True,
            deny_delete=False,
        )

    def kv_config(self, bucket: str, ttl_seconds: float, description: str) -> StreamConfig:
        """A KV bucket whose every entry expires ``ttl_seconds`` after its last write.

        Laid out exactly as nats-py's ``create_key_value`` would (so ``js.key_value`` opens
        it), but created through :func:`ensure_stream` so that a changed TTL setting is applied
        to an existing bucket.
        """
        return StreamConfig(
            name=f"KV_{bucket}",
            description=description,
            subjects=[f"$KV.{bucket}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            max_msgs_per_subject=1,
            max_age=ttl_seconds,
            duplicate_window=min(self.duplicate_window_seconds, ttl_seconds),
            discard=DiscardPolicy.NEW,
            allow_direct=True,
            allow_rollup_hdrs=True,
            allow_msg_ttl=True,
            deny_delete=True,
        )

    def sessions_config(self) -> StreamConfig:
        return self.kv_config(self.sessions_bucket, self.session_ttl_seconds,
                              "Albatross login sessions by token hash (expire with the TTL)")

    def login_throttle_config(self) -> StreamConfig:
        return self.kv_config(self.login_throttle_bucket, self.login_window_seconds,
                              "Albatross failed-login counters per email / address")

    def idempotency_config(self) -> StreamConfig:
        return self.kv_config(self.idempotency_bucket, self.idempotency_ttl_seconds,
                              "Albatross Idempotency-Key bindings (10 min)")

    def all_streams(self) -> list[StreamConfig]:
        return [self.events_config(), self.changes_config(), self.snapshots_config(),
                self.sessions_config(), self.login_throttle_config(),
                self.idempotency_config()]


def topology_for(settings: Settings) -> Topology:
    """The topology every process derives from the same settings, so they agree on it."""
    return Topology(replicas=settings.stream_replicas,
                    session_ttl_seconds=float(settings.session_ttl_seconds))


STREAM_NAME_IN_USE = 10058
# "No suitable peers for placement": a cluster that just formed places replicas only on
# servers whose statistics its meta leader has received, seconds after their routes connect.
NO_SUITABLE_PEERS = 10005


async def ensure_stream(js: JetStreamContext, config: StreamConfig, *,
                        placement_wait: float = 30.0) -> None:
    """Create or update ``config``; wait up to ``placement_wait`` for a forming cluster."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + placement_wait
    delay = 0.1
    while True:
        try:
            await _create_or_update(js, config)
            return
        except BadRequestError as exc:
            if exc.err_code != NO_SUITABLE_PEERS or loop.time() + delay >= give_up:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _create_or_update(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError as exc:
            # Another bootstrap created it between our look and our add: update instead.
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
    await js.update_stream(config)


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    for config in topology.all_streams():
        await ensure_stream(js, config)


async def wait_for_streams(js: JetStreamContext, names: list[str], *, timeout: float,
                           interval: float = 0.5) -> None:
    """Wait until bootstrap has created ``names``; services never create or update streams.

    Only bootstrap holds the rights to change the topology (deploy/nats/auth.conf), so a
    service started before it waits here rather than making streams with its own settings.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    for name in names:
        while True:
            try:
                await js.stream_info(name)
                break
            except NotFoundError:
                if loop.time() >= give_up:
                    raise TimeoutError(f"stream {name} does not exist: run bootstrap") from None
                await asyncio.sleep(interval)
