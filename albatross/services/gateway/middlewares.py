"""The gateway's one middleware (``context``) and the wrapper of every API operation.

``context``: request id (``X-Request-Id``, echoed), the request's log fields, the body-size
limit and the body deadline, one access-log line and the metrics per request, and the error mapper
(every exception becomes problem+json; an unexpected one is logged with its traceback and
answered 500 without internals). ``operation_handler``: the principal for operations that need
one, the ``password_change_required`` gate and the ``Albatross-Min-Sequence`` wait of GET
requests. It wraps each operation's handler when its route is added, rather than being a second
middleware, so that no request pays a middleware layer and a route lookup for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from albatross.application.errors import PasswordChangeRequired
from albatross.application.principal import Principal
from albatross.observability import (
    add_log_fields,
    close_log_fields,
    get_logger,
    open_log_fields,
)
from albatross.services.gateway.deps import DEPS, PRINCIPAL, REQUEST_ID, SECRET
from albatross.services.gateway.http import ascii_number
from albatross.services.gateway.problems import ApiError, known_problem, problem_response
from albatross.services.gateway.routes import Operation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_HTTP_CODES = {400: "malformed_request", 401: "unauthorized", 403: "forbidden",
               404: "not_found", 405: "method_not_allowed", 409: "conflict",
               412: "precondition_failed", 413: "payload_too_large", 415: "malformed_request",
               422: "validation_failed", 429: "rate_limited", 503: "unavailable"}


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("albatross_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.duration = Histogram("albatross_http_request_duration_seconds",
                                  "Time to answer an HTTP request", ["method", "route"],
                                  registry=registry,
                                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                           2.5, 5, 10))
        self.unhandled = Counter("albatross_http_unhandled_errors",
                                 "Requests answered 500 (bugs)", registry=registry)
        # Label children looked up once, both in one entry: ``labels()`` takes a lock and
        # builds a key per call.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # The HTTP parser passes dozens of methods (WebDAV's and more): uncommon ones share a
        # label, so clients cannot multiply the metric series (nor this dict).
        method = method if method in _METHODS else "OTHER"
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route))
        answered, timed = children
        answered.inc()
        timed.observe(seconds)


def _route_label(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _aiohttp_problem(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        return exc  # redirects and the like are real responses
    code = _HTTP_CODES.get(exc.status, "malformed_request" if exc.status < 500 else "internal")
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    detail = {404: "no such resource", 405: "this method is not allowed here",
              413: "the request body is larger than 64 KiB"}.get(exc.status, exc.reason)
    return problem_response(code, detail, headers=headers)


DEFAULT_BODY_TIMEOUT = 10.0


async def _read_body_within(request: web.Request, seconds: float) -> None:
    """Read the body (aiohttp caches it for the handler) or drop the connection.

    aiohttp waits for a body as long as the client keeps the connection open, so a client
    that trickles its body (slow loris) would hold a handler forever.
    """
    try:
        async with asyncio.timeout(seconds):
            await request.read()
    except TimeoutError:
        if request.transport is not None:
            request.transport.close()
        raise ApiError("malformed_request",
                       f"the request body did not arrive within {seconds:g} s") from None


def _abandon_body(request: web.Request, answer: web.StreamResponse) -> None:
    """A body that failed to decode cannot be read to its end, so the connection cannot carry
    another request: close it after the answer, and tell aiohttp not to read the rest (it
    would meet the same error and log it as unhandled)."""
    request.content.feed_eof()
    answer.force_close()


def context_middleware(metrics: GatewayMetrics, body_limit: int,
                       body_timeout: float = DEFAULT_BODY_TIMEOUT) -> Middleware:
    # Bound now, under the configuration of the app's creation: the lazy proxy get_logger
    # returns would build a logger on every call, ~5 us per request even when filtered out.
    log = get_logger("gateway.http").bind()
    # The access line's fields (the path among them) cost ~2 us to gather even when the level
    # drops the line: gathered only when it is written.
    log_requests = log.is_enabled_for(logging.INFO)

    @web.middleware
    async def context(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id")
        request_id = (incoming if incoming and _REQUEST_ID.match(incoming)
                      else os.urandom(16).hex())
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        log_fields = open_log_fields(request_id=request_id)
        try:
            try:
                if (request.content_length or 0) > body_limit:
                    raise ApiError("payload_too_large", "the request body is larger than 64 KiB")
                if request.body_exists and not request.content.is_eof():
                    await _read_body_within(request, body_timeout)
                response = await handler(request)
            except web.HTTPException as exc:
                response = _aiohttp_problem(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                answer = known_problem(exc)
                if answer is None:
                    metrics.unhandled.inc()
                    log.exception("unhandled error", method=request.method, path=request.path)
                    answer = problem_response("internal", "an unexpected error occurred")
                elif answer.status == 503:
                    log.warning("dependency unavailable", error=type(exc).__name__,
                                path=request.path)
                elif isinstance(exc, web.RequestPayloadError):
                    _abandon_body(request, answer)
                response = answer
            response.headers[hdrs.X_REQUEST_ID] = request_id
            elapsed = time.perf_counter() - started
            route = _route_label(request)
            metrics.observe(request.method, route, response.status, elapsed)
            if log_requests:
                log.info("request", method=request.method, path=request.path,
                         status=response.status, ms=round(elapsed * 1000, 2))
        finally:
            close_log_fields(log_fields)
        return response

    return context


def _secret_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = request.headers.get("X-API-Key")
    return key.strip() if key else None


def _unauthorized(detail: str) -> ApiError:
    return ApiError("unauthorized", detail,
                    headers={"WWW-Authenticate": 'Bearer realm="albatross"'})


def _may_act_before_password_change(operation: Operation, request: web.Request,
                                    principal: Principal) -> bool:
    if not operation.before_password_change:
        return False
    user_id = request.match_info.get("user_id")
    return user_id is None or user_id == principal.user_id


def _min_sequence(request: web.Request) -> int | None:
    raw = request.headers.get("Albatross-Min-Sequence")
    if raw is None:
        return None
    sequence = ascii_number(raw.strip(), 18)
    if sequence is None:
        raise ApiError("malformed_request", "Albatross-Min-Sequence must be a non-negative integer")
    return sequence


def operation_handler(operation: Operation) -> Handler:
    """``operation.handler`` behind its authentication and the checks every operation shares."""
    if not operation.auth:
        async def public(request: web.Request) -> web.StreamResponse:
            return await _after_auth(request, operation)
        return public

    async def authenticated(request: web.Request) -> web.StreamResponse:
        secret = _secret_of(request)
        if not secret:
            raise _unauthorized("send a session token or API key: Authorization: Bearer <secret>")
        deps = request.app[DEPS]
        principal = await deps.authenticator.authenticate(secret)
        if principal is None:
            raise _unauthorized("the session token or API key is not valid (expired or revoked?)")
        request[PRINCIPAL] = principal
        request[SECRET] = secret
        if deps.api_key_usage is not None:
            deps.api_key_usage.note(principal, deps.clock.now())
        add_log_fields(user_id=principal.user_id, tenant_id=principal.tenant_id)
        if principal.must_change_password and not _may_act_before_password_change(
                operation, request, principal):
            raise PasswordChangeRequired("change your password first: "
                                         f"POST /api/users/{principal.user_id}/password")
        return await _after_auth(request, operation)
    return authenticated


async def _after_auth(request: web.Request, operation: Operation) -> web.StreamResponse:
    if operation.method == "GET":
        wanted = _min_sequence(request)
        if wanted:
            deps = request.app[DEPS]
            if not await deps.read_models.wait_for(wanted, deps.min_sequence_wait):
                raise ApiError("unavailable",
                               f"the read models have not reached sequence {wanted} yet",
                               headers={"Retry-After": "1"})
    return await operation.handler(request)
