"""Security headers on every response of every Albatross HTTP server (gateway, notifier, ops).

``add_security_headers(app)`` registers one ``on_response_prepare`` hook. It runs before
aiohttp fills in its defaults, so setting ``Server`` replaces aiohttp's version banner
(``Python/3.11 aiohttp/x.y``). Every response gets ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer`` and a ``Content-Security-Policy``:

* HTML (the web UI's ``index.html`` and its SPA fallback): the UI's own policy. The built UI
  (Vite + React) loads only same-origin module scripts and one stylesheet, uses a ``data:``
  favicon, no inline script or style, no ``eval``, and talks to ``/api`` and ``/api/ws`` on
  its own origin. ``connect-src`` names ``ws(s)://<host>`` explicitly because browsers that
  predate CSP 3 do not let ``'self'`` match WebSocket schemes.
* ``/api/docs``: a self-contained page with one inline ``<style>`` and one inline
  ``<script>``, allowed by their SHA-256 hashes (computed here, so editing the page cannot
  silently break its policy), never by ``'unsafe-inline'``.
* Anything else (JSON, problem+json, metrics, assets, WebSocket upgrades): ``default-src
  'none'`` with ``frame-ancestors 'none'``: an API answer is never a document to render.
  Except a ``304 Not Modified``: browsers merge its headers into the cached response, so it
  carries no policy that could replace the cached page's.

The per-request cost is a content-type check and one ``update`` with a precomputed dict; only
HTML responses (rare: the UI shell) build a string, cached per host.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from aiohttp import hdrs, web, web_response

SERVER = "albatross"
# The names as aiohttp's istr constants: a response's headers take them without folding
# their case again.
_COMMON: dict[str, str] = {hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
                           hdrs.REFERRER_POLICY: "no-referrer", hdrs.SERVER: SERVER}

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
API_HEADERS: Mapping[str, str] = {**_COMMON, hdrs.CONTENT_SECURITY_POLICY: API_POLICY}

_DOCUMENT: dict[str, str] = {**_COMMON, hdrs.X_FRAME_OPTIONS: "DENY",
                             "Cross-Origin-Opener-Policy": "same-origin"}
_UI_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "font-src 'self'; connect-src 'self'{ws}; object-src 'none'; base-uri 'self'; "
              "form-action 'self'; frame-ancestors 'none'")
# A Host header is reflected into the policy only when it is a plain host[:port].
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?$")
_MAX_CACHED_HOSTS = 64
DOCS_PATH = "/api/docs"


def ui_policy(host: str | None) -> str:
    """The web UI's policy for a page served to ``host`` (the request's ``Host``)."""
    ws = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return _UI_POLICY.format(ws=ws)


def _inline_hashes(html: str, tag: str) -> list[str]:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
            for b in blocks]


def docs_policy(html: str) -> str:
    """A policy for ``html`` allowing exactly its inline ``<script>`` and ``<style>`` blocks."""
    scripts = " ".join(_inline_hashes(html, "script")) or "'none'"
    styles = " ".join(_inline_hashes(html, "style")) or "'none'"
    return (f"default-src 'none'; script-src {scripts}; style-src {styles}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class SecurityHeaders:
    """The ``on_response_prepare`` hook; ``docs_html`` is the ``/api/docs`` page, if served."""

    def __init__(self, docs_html: str | None = None) -> None:
        self._docs: Mapping[str, str] | None = None
        if docs_html is not None:
            self._docs = {**_DOCUMENT, "Content-Security-Policy": docs_policy(docs_html)}
        self._ui: dict[str, Mapping[str, str]] = {}

    def _ui_headers(self, host: str | None) -> Mapping[str, str]:
        key = host or ""
        headers = self._ui.get(key)
        if headers is None:
            headers = {**_DOCUMENT, "Content-Security-Policy": ui_policy(host)}
            if len(self._ui) < _MAX_CACHED_HOSTS:  # bounded: Host is the client's to choose
                self._ui[key] = headers
        return headers

    async def __call__(self, request: web.Request, response: web.StreamResponse) -> None:
        if not response.headers.get(hdrs.CONTENT_TYPE, "").startswith("text/html"):
            # A 304 carries no type, and browsers merge its headers into the cached response:
            # a policy here would replace the cached page's own.
            response.headers.update(_COMMON if response.status == 304 else API_HEADERS)
        elif self._docs is not None and request.path == DOCS_PATH:
            response.headers.update(self._docs)
        else:
            response.headers.update(self._ui_headers(request.host))


def add_security_headers(app: web.Application, *, docs_html: str | None = None) -> None:
    """Give every response of ``app`` the security headers (see the module docstring)."""
    app.on_response_prepare.append(SecurityHeaders(docs_html))
    _hide_version_banner()


def _hide_version_banner() -> None:
    # A request aiohttp cannot even parse is answered 400 before routing, so no hook of ours
    # runs: its Server header is aiohttp's process-wide default, which names the versions.
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
