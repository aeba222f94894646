"""``create_app(deps)``: the gateway's aiohttp application, everything injected."""

from __future__ import annotations

import msgspec
from aiohttp import web

from albatross.services.gateway.deps import DEPS, GatewayDeps
from albatross.services.gateway.docs_page import DOCS_HTML
from albatross.services.gateway.middlewares import (
    DEFAULT_BODY_TIMEOUT,
    GatewayMetrics,
    context_middleware,
    operation_handler,
)
from albatross.services.gateway.openapi import build_openapi
from albatross.services.gateway.routes import API, OPERATIONS
from albatross.services.gateway.security_headers import add_security_headers
from albatross.services.gateway.static import add_static_routes
from albatross.services.notifier.proxy import mount_ws_proxy


def create_app(deps: GatewayDeps, *,
               body_timeout: float = DEFAULT_BODY_TIMEOUT) -> web.Application:
    metrics = GatewayMetrics(deps.registry)
    app = web.Application(
        client_max_size=deps.body_limit,
        middlewares=[context_middleware(metrics, deps.body_limit, body_timeout)],
    )
    app[DEPS] = deps
    add_security_headers(app, docs_html=DOCS_HTML)
    for operation in OPERATIONS:
        handler = operation_handler(operation)
        app.router.add_route(operation.method, API + operation.path, handler)
        if operation.method == "GET":
            # RFC 9110 asks every server for HEAD wherever it serves GET (link checkers and
            # caches use it); aiohttp answers it with GET's headers and no body.
            app.router.add_route("HEAD", API + operation.path, handler)

    spec = msgspec.json.encode(build_openapi(OPERATIONS))

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    async def docs(_request: web.Request) -> web.Response:
        return web.Response(text=DOCS_HTML, content_type="text/html")

    app.router.add_get(f"{API}/openapi.json", openapi)
    app.router.add_get(f"{API}/docs", docs)
    deps.ops.add_routes(app)
    if deps.ws_upstream is not None:
        # The notifier's own relay (frames both ways, close codes, backpressure, Host/Origin).
        mount_ws_proxy(app, deps.ws_upstream)
    add_static_routes(app, deps.web_dir)
    for resource in deps.resources:
        app.cleanup_ctx.append(resource)
    return app
