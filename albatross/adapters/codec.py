"""Wire format of events: subjects, JSON envelopes, and upcasting of old schema versions.

An event message's payload is the envelope
``{"type", "schema_version", "occurred_at", "actor_id", "data"}``; ``data`` is the event's own
fields. Subjects follow the contract:
``albatross.<events|secrets>.<tenant_id|platform>.<aggregate>.<aggregate_id>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec

from albatross.domain.events import Event, EventRegistry
from albatross.ports import Claim, StreamId

PREFIX = "albatross"
EVENTS = f"{PREFIX}.events"
SECRETS = f"{PREFIX}.secrets"
CLAIMS = f"{PREFIX}.claims"
CHANGES = f"{PREFIX}.changes"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON payload of every message under ``albatross.events.>`` / ``secrets.>``."""

    type: str
    schema_version: int
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    actor_id: str | None
    data: msgspec.Raw


class DecodeError(ValueError):
    pass


def event_subject(stream: StreamId, event: Event) -> str:
    root = SECRETS if event.secret else EVENTS
    return f"{root}.{stream.key}"


def stream_filter(stream: StreamId) -> str:
    """One filter for both the public and the credential subjects of one aggregate."""
    return f"{PREFIX}.*.{stream.key}"


def claim_subject(claim: Claim) -> str:
    # Hashed so that the subject holds no personal data and any value fits in one token.
    digest = hashlib.sha256(claim.value.encode()).hexdigest()
    return f"{CLAIMS}.{claim.kind}.{digest}"


def stream_of(subject: str) -> StreamId:
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != PREFIX or parts[1] not in {"events", "secrets"}:
        raise DecodeError(f"not an event subject: {subject!r}")
    return StreamId(aggregate=parts[3], aggregate_id=parts[4], scope=parts[2])


class EventCodec:
    """Encodes events into envelopes and back, upcasting old schema versions on read."""

    def __init__(self, registry: EventRegistry,
                 upcasters: Mapping[tuple[str, int], Upcaster] | None = None) -> None:
        self._registry = registry
        self._upcasters = dict(upcasters or {})
        self._encoder = msgspec.json.Encoder()
        self._envelope = msgspec.json.Decoder(Envelope)
        self._data_decoders = {t.event_type: msgspec.json.Decoder(t) for t in registry.types()}

    def encode(self, event: Event, occurred_at: datetime, actor_id: str | None) -> bytes:
        envelope = Envelope(type=event.event_type, schema_version=event.schema_version,
                            occurred_at=occurred_at, actor_id=actor_id,
                            data=msgspec.Raw(self._encoder.encode(event)))
        return self._encoder.encode(envelope)

    def decode(self, payload: bytes) -> tuple[Event, datetime, str | None]:
        try:
            envelope = self._envelope.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"bad envelope: {exc}") from None
        event_type = self._registry.get(envelope.type)
        if event_type is None:
            raise DecodeError(f"unknown event type {envelope.type!r}")
        try:
            if envelope.schema_version == event_type.schema_version:
                event = self._data_decoders[envelope.type].decode(envelope.data)
            else:
                data = self._upcast(envelope.type, envelope.schema_version,
                                    event_type.schema_version, msgspec.json.decode(envelope.data))
                event = msgspec.convert(data, event_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"bad {envelope.type} data: {exc}") from None
        return event, envelope.occurred_at, envelope.actor_id

    def data_of(self, payload: bytes) -> tuple[str, datetime, str | None, Any]:
        """The envelope's parts with ``data`` as plain JSON values (for history views)."""
        event, occurred_at, actor_id = self.decode(payload)
        return event.event_type, occurred_at, actor_id, msgspec.to_builtins(event)

    def _upcast(self, name: str, version: int, target: int, data: Any) -> Any:
        while version < target:
            step = self._upcasters.get((name, version))
            if step is None:
                raise DecodeError(f"no upcaster for {name} v{version}")
            try:
                data = step(data)
            except Exception as exc:
                # Old data an upcaster cannot read is a poison message, not a crash.
                raise DecodeError(f"upcasting {name} v{version} failed: {exc!r}") from exc
            version += 1
        if version != target:
            raise DecodeError(f"{name} v{version} is newer than this code (v{target})")
        return data
