"""Strongly consistent credential lookups on the event stream, without PostgreSQL.

* A uniqueness claim (``albatross.claims.<kind>.<sha256>``) is one message whose payload names
  the stream that holds it (``{"stream": "<scope>.<aggregate>.<id>"}``): a Direct Get of the
  last message on that subject answers "who has this email / API key" in one round trip.
* An aggregate known only by its id is found with a Direct Get of the last message on
  ``albatross.events.*.<aggregate>.<id>``: its subject names the scope.
"""

from __future__ import annotations

import asyncio

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from albatross.adapters.codec import EVENTS, claim_subject, stream_of
from albatross.adapters.jetstream.direct import DirectGet, DirectGetError
from albatross.adapters.jetstream.requests import NotConnected, Requests
from albatross.application.auth import parse_stream_key
from albatross.ports import Claim, StoreUnavailable, StreamId, is_valid_token

UNAVAILABLE = (NoRespondersError, NatsTimeoutError, asyncio.TimeoutError, ConnectionClosedError,
               NotConnected, DirectGetError)


class _ClaimPayload(msgspec.Struct):
    stream: str


class JetStreamClaimLookup:
    """Implements :class:`albatross.application.auth_ports.ClaimLookup`."""

    def __init__(self, nc: NATS, events_stream: str, *, timeout: float = 2.0) -> None:
        self._direct = DirectGet(Requests(nc), events_stream, timeout=timeout)
        self._decode = msgspec.json.Decoder(_ClaimPayload).decode

    async def holder(self, claim: Claim) -> StreamId | None:
        try:
            message = await self._direct.last_on(claim_subject(claim))
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"claim lookup failed: {exc!r}") from exc
        if message is None or not message.data:
            return None
        try:
            return parse_stream_key(self._decode(message.data).stream)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def locate(self, aggregate: str, aggregate_id: str) -> StreamId | None:
        if not (is_valid_token(aggregate) and is_valid_token(aggregate_id)):
            return None
        try:
            message = await self._direct.last_on(f"{EVENTS}.*.{aggregate}.{aggregate_id}")
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"stream lookup failed: {exc!r}") from exc
        if message is None:
            return None
        try:
            return stream_of(message.subject)
        except ValueError:
            return None
