"""The notifier's NATS adapters: the changes feed and the revocation signals.

* :class:`JetStreamChangeFeed`: live changes through an ordered push consumer (ephemeral, in
  memory, one per replica, from a given sequence), replays through an ephemeral pull consumer
  that ends at a given sequence. A change's ``sequence`` is its stream sequence (contract:
  change sequences number the changes stream), whatever the stored payload says.
* :class:`JetStreamRevocationSignals`: deletes in the sessions bucket (logout) and public
  events of user aggregates (``ApiKeyRevoked``, ``PasswordChanged``, ...). Nothing under
  ``albatross.secrets.>`` is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from albatross.adapters.codec import CHANGES, EVENTS
from albatross.application.views import RESOURCE_TYPES, ChangeMessage
from albatross.observability import get_logger
from albatross.services.notifier.ports import Change, SessionRemoved, UserChanged

_log = get_logger("albatross.notifier.jetstream")

KV_OPERATION = "KV-Operation"
KV_MARKER_REASON = "Nats-Marker-Reason"  # server-placed delete markers (TTL, purge)
_REMOVALS = frozenset({"DEL", "PURGE"})
_REPLAY_BATCH = 256
_HEARTBEAT = 2.0  # ordered consumers reset themselves after two missed heartbeats


class ChangeDecoder:
    """Decodes ``albatross.changes.<scope>.<entity>.<id>`` payloads into ChangeMessages."""

    def __init__(self) -> None:
        generic: Any = ChangeMessage  # parametrised at run time, per entity
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {
            entity: msgspec.json.Decoder(generic[view]) for entity, view in RESOURCE_TYPES.items()}

    def decode(self, subject: str, data: bytes, sequence: int) -> Change:
        parts = subject.split(".")
        decoder = self._decoders.get(parts[3]) if len(parts) == 5 else None
        if decoder is None:
            return Change(sequence, None)
        try:
            message: ChangeMessage[Any] = decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Change(sequence, None)
        if message.entity != parts[3]:
            return Change(sequence, None)
        return Change(sequence, msgspec.structs.replace(message, sequence=sequence))


class _OrderedSubscription:
    """An ordered push consumer's messages as an async iterator of Changes."""

    def __init__(self, sub: JetStreamContext.PushSubscription, decoder: ChangeDecoder) -> None:
        self._sub = sub
        self._decoder = decoder

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        async for msg in self._sub.messages:
            yield self._decoder.decode(msg.subject, msg.data, msg.metadata.sequence.stream)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


class JetStreamChangeFeed:
    """Implements :class:`albatross.services.notifier.ports.ChangeFeed`."""

    def __init__(self, js: JetStreamContext, stream: str, *,
                 replay_timeout: float = 5.0) -> None:
        self._js = js
        self._stream = stream
        self._decoder = ChangeDecoder()
        self._replay_timeout = replay_timeout

    async def head(self) -> int:
        info = await self._js.stream_info(self._stream)
        return int(info.state.last_seq)

    async def subscribe(self, after: int) -> _OrderedSubscription:
        sub = await self._js.subscribe(
            f"{CHANGES}.>", stream=self._stream, ordered_consumer=True,
            idle_heartbeat=_HEARTBEAT, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=after + 1))
        return _OrderedSubscription(sub, self._decoder)

    async def replay(self, after: int, until: int) -> AsyncGenerator[Change, None]:
        if until <= after:
            return
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE, mem_storage=True, num_replicas=1,
            inactive_threshold=30.0)
        sub = await self._js.pull_subscribe(f"{CHANGES}.>", stream=self._stream, config=config)
        try:
            while True:
                try:
                    messages = await sub.fetch(_REPLAY_BATCH, timeout=self._replay_timeout)
                except (TimeoutError, NatsTimeoutError):
                    if await self._aged_out(until):
                        _log.warning("replay ended early: the rest aged out",
                                     after=after, until=until)
                        return
                    raise ReplayStalled(after, until) from None
                for msg in messages:
                    change = self._decoder.decode(msg.subject, msg.data,
                                                  msg.metadata.sequence.stream)
                    if change.sequence > until:
                        return
                    yield change
                    if change.sequence >= until:
                        return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            consumer = config.name
            if consumer:
                with contextlib.suppress(Exception):
                    await self._js.delete_consumer(self._stream, consumer)


    async def _aged_out(self, until: int) -> bool:
        """Whether the stream holds nothing at or below ``until`` any more (max age)."""
        state = (await self._js.stream_info(self._stream)).state
        return state.messages == 0 or state.first_seq > until


class ReplayStalled(Exception):
    """The stream holds changes a replay needs, but its consumer delivered none of them.

    Seen in a cluster right after a node's restart, when the consumer was placed on the
    restarted node while its replica of the stream was still catching up.
    """

    def __init__(self, after: int, until: int) -> None:
        super().__init__(f"replay of changes {after + 1}..{until} stalled")


class JetStreamRevocationSignals:
    """Implements :class:`albatross.services.notifier.ports.RevocationSignals`.

    Sessions: an ordered consumer of the sessions bucket (new messages, headers only); a
    delete, purge or server marker is a removed session. Users: a core subscription to
    ``albatross.events.*.user.*`` (the NATS user of the notifier may not create an unnamed
    consumer on the event stream, since its filter could name credentials). A core
    subscriber sees a message when it is published, which for an atomic batch is before the
    batch commits (or is refused): the watcher re-checks a few times (see ``recheck_delays``).
    """

    def __init__(self, nc: NATS, *, sessions_bucket: str) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._sessions_bucket = sessions_bucket
        self._subs: list[Subscription] = []

    async def start(self, on_session_removed: SessionRemoved,
                    on_user_changed: UserChanged) -> None:
        prefix = f"$KV.{self._sessions_bucket}."

        async def session_msg(msg: Msg) -> None:
            headers = msg.headers or {}
            if headers.get(KV_OPERATION) in _REMOVALS or KV_MARKER_REASON in headers:
                await on_session_removed(msg.subject.removeprefix(prefix))

        async def user_msg(msg: Msg) -> None:
            parts = msg.subject.split(".")
            if len(parts) == 5:
                await on_user_changed(parts[4])

        try:
            self._subs.append(await self._nc.subscribe(f"{EVENTS}.*.user.*", cb=user_msg))
            self._subs.append(await self._js.subscribe(
                f"{prefix}>", stream=f"KV_{self._sessions_bucket}", cb=session_msg,
                ordered_consumer=True, headers_only=True, idle_heartbeat=_HEARTBEAT,
                deliver_policy=DeliverPolicy.NEW))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
