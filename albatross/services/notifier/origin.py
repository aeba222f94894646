"""The WebSocket ``Origin`` allow-list: same-origin always, plus configured origins.

Browsers send ``Origin`` on every WebSocket handshake and let any page open a socket to any
host, so the check is what stops another site from riding a user's credentials. Clients that
are not browsers (ACARS clients, scripts) send no ``Origin``; they cannot be tricked that way
and are allowed. Same-origin compares the Origin's ``host[:port]`` with the ``Host`` header
(as gorilla/websocket does), so it holds behind a proxy that keeps ``Host``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default ports dropped; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in {"http", "https"} or not host or parts.path not in {"", "/"}:
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None
    if port is None or (scheme, port) in {("http", 80), ("https", 443)}:
        netloc = f"[{host}]" if ":" in host else host
    else:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}"


class OriginPolicy:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        extra = {normalise_origin(origin) for origin in allowed}
        self._allowed = frozenset(o for o in extra if o is not None)

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser
        normalised = normalise_origin(origin)
        if normalised is None:
            return False  # "null" (sandboxed pages, file://) and garbage
        if normalised in self._allowed:
            return True
        if not host:
            return False
        # The Host header read as if it were served under the Origin's scheme, so that
        # default ports compare equal ("example.com" and "example.com:443" for https).
        scheme = normalised.split("://", 1)[0]
        return normalise_origin(f"{scheme}://{host.strip()}") == normalised
