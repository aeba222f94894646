"""The web UI's files at ``/``, with a single-page-app fallback to ``index.html``.

Only when the folder exists (the UI is built separately). Paths under ``/api/`` never fall
back: an unknown API path is a 404 problem, not the UI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from albatross.services.gateway.problems import problem_response

StaticHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Vite names everything under assets/ by its content hash: a changed file gets a new name.
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
REVALIDATE = {"Cache-Control": "no-cache"}


def spa_handler(root: Path) -> StaticHandler:
    base = root.resolve()
    index = base / "index.html"

    async def serve(request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        candidate = _file_under(base, tail) if tail else None
        if candidate is not None:
            hashed = tail.startswith("assets/")
            return web.FileResponse(candidate, headers=IMMUTABLE if hashed else REVALIDATE)
        if index.is_file():
            return web.FileResponse(index, headers=REVALIDATE)
        return problem_response("not_found", "no such resource")

    return serve


def _file_under(base: Path, tail: str) -> Path | None:
    """The file ``tail`` names inside ``base``, or None: resolve() + is_relative_to let no
    "../" or symlink escape the UI folder."""
    try:
        candidate = (base / tail).resolve()
        return candidate if candidate.is_relative_to(base) and candidate.is_file() else None
    except (OSError, ValueError):  # a NUL (ValueError), a name too long for the filesystem
        return None


def add_static_routes(app: web.Application, root: Path | None) -> None:
    if root is None or not root.is_dir():
        return
    # Everything but /api and below: an unknown API path stays aiohttp's 404 (a problem, by
    # the middleware), and an API route's 405 lists only its own methods in Allow, not this
    # route's GET and HEAD.
    app.router.add_get(r"/{tail:(?!api(?:/|$)).*}", spa_handler(root))
