"""The JetStream streams and buckets Albatross needs, created or updated idempotently.

``bootstrap`` calls :func:`ensure_topology`; running it twice, or from two processes at once,
leaves one correct topology.
"""

from __future__ import annotations

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

    def all_streams(self) -> list[StreamConfig]:
        return [self.events_config(), self.changes_config(), self.snapshots_config()]


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError as exc:
            # Another bootstrap created it between our look and our add: update instead.
            if exc.err_code != 10058:
                raise
    await js.update_stream(config)


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    for config in topology.all_streams():
        await ensure_stream(js, config)
