"""JetStream's answer to a publish (``{"stream", "seq", "duplicate"}`` or ``{"error"}``).

Decoded with msgspec by the event store and the projector's outbox publisher, which both
publish with plain requests rather than ``js.publish`` (its stdlib-json and dataclass decoding
of every ack is a visible share of a command's CPU).
"""

from __future__ import annotations

import msgspec
from nats.js.errors import APIError


class ApiErrorBody(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiErrorBody | None = None


decode_ack = msgspec.json.Decoder(PubAck).decode


def api_error(body: ApiErrorBody) -> APIError:
    return APIError(code=body.code, err_code=body.err_code, description=body.description)
