"""One change, encoded for each recipient as that recipient's GET would show it.

The scope filter is :func:`albatross.application.policy.visible_resource`, the same rules the
queries apply: nothing here decides who sees what. What this module adds is economy: a change
is encoded once for everybody who sees it unredacted, and once per distinct redacted form
(e.g. a user without ``email``), however many sockets receive it; and what is cached is the
complete WebSocket frame, so a fan-out to thousands of sockets allocates nothing per socket.
"""

from __future__ import annotations

from typing import Any

import msgspec

from albatross.application.policy import visible_resource
from albatross.application.principal import Principal
from albatross.application.views import ChangeMessage, Resource

_ENCODER = msgspec.json.Encoder()


def text_frame(payload: bytes) -> bytes:
    """An unfragmented, unmasked (server-to-client) RFC 6455 text frame."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def encode(message: msgspec.Struct) -> bytes:
    """``message`` as one JSON text frame, ready for the transport."""
    return text_frame(_ENCODER.encode(message))


class Outgoing:
    """A change ready to fan out; :meth:`for_principal` is called once per socket."""

    __slots__ = ("_change", "_redacted", "_shared", "sequence")

    def __init__(self, change: ChangeMessage[Any]) -> None:
        self.sequence = change.sequence
        self._change = change
        self._shared: bytes | None = None
        self._redacted: dict[Resource, bytes] = {}

    def for_principal(self, principal: Principal) -> bytes | None:
        """The change as a frame for ``principal``, or None if it may not see it."""
        change = self._change
        visible = visible_resource(principal, change.data, change.tenant_id)
        if visible is None:
            return None
        if visible is change.data:
            if self._shared is None:
                self._shared = encode(change)
            return self._shared
        # Redacted views are frozen structs, hence hashable: equal redactions share bytes.
        try:
            cached = self._redacted.get(visible)
        except TypeError:  # a view with an unhashable field: encode it for this socket only
            return encode(msgspec.structs.replace(change, data=visible))
        if cached is None:
            cached = encode(msgspec.structs.replace(change, data=visible))
            self._redacted[visible] = cached
        return cached
