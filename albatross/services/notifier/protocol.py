"""The WebSocket protocol of ``GET /api/ws`` (contract, "WebSocket"): messages and close codes.

Client → server: ``{"type": "auth", "token": ...}`` first (within the auth timeout), then
optionally ``{"type": "resume", "after": N}``. Server → client: ``{"type": "ready", "user_id",
"sequence"}`` once, then ``{"type": "change", ...}`` (:class:`ChangeMessage`) in sequence order.
Every message is one JSON text frame.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from albatross.application.credentials import MAX_SECRET_LEN

# Close codes. 4401/4008 are the contract's; the others are RFC 6455's.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # graceful shutdown: resume on another replica
CLOSE_UNSUPPORTED = 1003  # a binary frame where JSON text was expected
CLOSE_POLICY = 1008  # a malformed message after authentication
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013  # the credential store is unreachable: nothing is known about the secret
CLOSE_UNAUTHORIZED = 4401  # auth failed, timed out, or the credential was revoked
CLOSE_FORBIDDEN = 4403  # authenticated, but the user must change their password first
CLOSE_TOO_SLOW = 4008  # the client could not keep up; it may reconnect and resume

# The largest client message we accept: an auth message with the longest secret fits easily.
MAX_CLIENT_MESSAGE_BYTES = 4096


def aiohttp_max_msg_size(max_message_bytes: int) -> int:
    """aiohttp's ``max_msg_size`` that admits messages of up to ``max_message_bytes``: it
    refuses a message of exactly ``max_msg_size`` bytes (found by tests/fuzz)."""
    return max_message_bytes + 1


class Auth(msgspec.Struct, frozen=True, tag_field="type", tag="auth", forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SECRET_LEN)]


class Resume(msgspec.Struct, frozen=True, tag_field="type", tag="resume",
             forbid_unknown_fields=True):
    after: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


ClientMessage = Auth | Resume


class Ready(msgspec.Struct, frozen=True, tag_field="type", tag="ready"):
    user_id: str
    sequence: int


class ProtocolError(ValueError):
    """A client message that is not valid JSON of one of the client message types."""


class ClientDecoder:
    """Decodes client frames; one per process (msgspec decoders are reusable)."""

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(ClientMessage)

    def decode(self, data: str | bytes) -> ClientMessage:
        try:
            message: ClientMessage = self._decoder.decode(data)
            return message
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ProtocolError(str(exc)) from None
