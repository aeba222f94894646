"""The one WebSocket handshake check aiohttp gets wrong."""

from __future__ import annotations

from aiohttp import web


def refuse_malformed_key(request: web.Request) -> None:
    """400 for a ``Sec-WebSocket-Key`` outside ASCII, before ``WebSocketResponse.prepare``.

    aiohttp answers a malformed key 400 but lets the ``ValueError`` of ``base64.b64decode``
    escape for one with non-ASCII characters (a header may carry any bytes), which would be
    answered 500. Every valid key is 24 base64 characters, so nothing valid is refused here.
    """
    key = request.headers.get("Sec-WebSocket-Key")
    if key is not None and not key.isascii():
        raise web.HTTPBadRequest(text="Handshake error: Sec-WebSocket-Key is not base64\n")
