"""Opaque keyset-pagination cursors shared by every ReadModels adapter.

A cursor names the list it belongs to (and a fingerprint of that list's filters) and the sort
key of the last item returned: ``(timestamp, id)``. It is msgpack, followed by a short keyed
BLAKE2b digest, in base64url. The digest makes a cursor tamper-evident (an edited or
truncated one is refused with :class:`~albatross.ports.InvalidCursor`); it is not a secret,
because a forged cursor can only move the page boundary: scoping is applied by the query itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import msgspec

from albatross.ports import InvalidCursor, is_valid_token

_KEY = b"albatross.cursor.v1"
_DIGEST = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Body(msgspec.Struct, array_like=True, frozen=True):
    list_name: str
    filters: str
    micros: int
    id: str


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, key=_KEY, digest_size=_DIGEST).digest()


def fingerprint(*filters: object) -> str:
    """A short, stable text for the filters a list was asked with."""
    return hashlib.blake2b(repr(filters).encode(), digest_size=6).hexdigest()


def encode_cursor(list_name: str, filters: str, moment: datetime, item_id: str) -> str:
    payload = msgspec.msgpack.encode(_Body(list_name, filters, _micros(moment), item_id))
    return base64.urlsafe_b64encode(payload + _digest(payload)).rstrip(b"=").decode()


def decode_cursor(cursor: str, list_name: str, filters: str) -> tuple[datetime, str]:
    """The ``(timestamp, id)`` after which the next page starts; InvalidCursor if foreign."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the cursor is not valid") from None
    payload, digest = raw[:-_DIGEST], raw[-_DIGEST:]
    if len(raw) <= _DIGEST or not hmac.compare_digest(digest, _digest(payload)):
        raise InvalidCursor("the cursor is not valid")
    try:
        body = msgspec.msgpack.decode(payload, type=_Body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidCursor("the cursor is not valid") from None
    if body.list_name != list_name or body.filters != filters:
        raise InvalidCursor("the cursor belongs to another list")
    if not is_valid_token(body.id):
        # The digest's key is public: a cursor can be forged, so what it holds is checked like
        # any other input before it reaches a query (a NUL would make PostgreSQL refuse it).
        raise InvalidCursor("the cursor is not valid")
    try:
        moment = _EPOCH + timedelta(microseconds=body.micros)
    except OverflowError:
        raise InvalidCursor("the cursor is not valid") from None
    return moment, body.id
