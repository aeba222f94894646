"""Every refusal as RFC 9457 ``application/problem+json``, with the contract's stable codes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec
from aiohttp import web
from nats.errors import Error as NatsError

from albatross.adapters.jetstream.direct import DirectGetError
from albatross.application.errors import RateLimited
from albatross.domain.errors import DomainError, ValidationFailed
from albatross.ports import ClaimTaken, OutcomeUnknown, StoreUnavailable, WrongExpectedVersion
from albatross.services.gateway.schemas import FieldProblem, Problem

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_UNAVAILABLE = "2"

STATUS_OF: Mapping[str, int] = {
    "malformed_request": 400,
    "unauthorized": 401,
    "password_change_required": 403,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "email_taken": 409,
    "icao_taken": 409,
    "invalid_state": 409,
    "precondition_failed": 412,
    "payload_too_large": 413,
    "validation_failed": 422,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
    "outcome_unknown": 504,
}

TITLES: Mapping[str, str] = {
    "malformed_request": "Malformed request",
    "unauthorized": "Authentication required",
    "password_change_required": "Password change required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflict",
    "email_taken": "Email taken",
    "icao_taken": "ICAO code taken",
    "invalid_state": "Invalid state",
    "precondition_failed": "Precondition failed",
    "payload_too_large": "Payload too large",
    "validation_failed": "Validation failed",
    "rate_limited": "Too many requests",
    "internal": "Internal server error",
    "unavailable": "Service unavailable",
    "outcome_unknown": "Outcome unknown",
}

# Failures of a dependency (NATS, PostgreSQL): the request did not happen, try again later.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    StoreUnavailable, NatsError, DirectGetError, asyncio.TimeoutError, ConnectionError,
)
try:  # asyncpg is a dependency of the read models only; the gateway does not need it to run.
    import asyncpg  # type: ignore[import-untyped, unused-ignore]

    DEPENDENCY_ERRORS = (*DEPENDENCY_ERRORS, asyncpg.PostgresConnectionError,
                         asyncpg.InterfaceError, asyncpg.exceptions.CannotConnectNowError,
                         asyncpg.exceptions.TooManyConnectionsError,
                         asyncpg.exceptions.QueryCanceledError,
                         # PostgreSQL shutting down or restarting ("terminating connection
                         # due to administrator command", "the database system is starting up")
                         asyncpg.exceptions.OperatorInterventionError,
                         # asyncpg's answer for a pooled connection whose server went away in
                         # the middle of an operation (seen when PostgreSQL restarts under load)
                         asyncpg.exceptions.InternalClientError)
except ImportError:  # pragma: no cover
    pass


class ApiError(Exception):
    """A refusal raised by the HTTP layer itself (bad JSON, missing header, ...)."""

    def __init__(self, code: str, detail: str, *, errors: list[FieldProblem] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})


_encode = msgspec.json.Encoder().encode


def problem_response(code: str, detail: str, *, errors: list[FieldProblem] | None = None,
                     headers: Mapping[str, str] | None = None) -> web.Response:
    status = STATUS_OF[code]
    body = Problem(type=f"/api/docs#problem-{code}", title=TITLES[code], status=status,
                   detail=detail, code=code, errors=errors)
    return web.Response(body=_encode(body), status=status, content_type=PROBLEM_JSON,
                        headers=headers)


def known_problem(exc: BaseException) -> web.Response | None:
    """The problem response for an expected refusal; None for a bug (answered 500)."""
    if isinstance(exc, ApiError):
        return problem_response(exc.code, exc.detail, errors=exc.errors, headers=exc.headers)
    if isinstance(exc, web.RequestPayloadError):
        # A body its Content-Encoding (gzip, deflate) does not decode, or cut short.
        return problem_response("malformed_request", "the request body could not be read "
                                "(is its Content-Encoding right?)")
    if isinstance(exc, ValidationFailed):
        errors = [FieldProblem(field=e.field, message=e.message) for e in exc.errors]
        return problem_response("validation_failed", exc.detail, errors=errors)
    if isinstance(exc, RateLimited):
        return problem_response("rate_limited", exc.detail,
                                headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, DomainError):
        code = exc.code if exc.code in STATUS_OF else "conflict"
        return problem_response(code, exc.detail)
    if isinstance(exc, ClaimTaken):
        code = {"email": "email_taken", "icao": "icao_taken"}.get(exc.claim.kind, "conflict")
        return problem_response(code, f"this {exc.claim.kind} is already taken")
    if isinstance(exc, WrongExpectedVersion):
        return problem_response("conflict", "the resource changed meanwhile; try again")
    if isinstance(exc, OutcomeUnknown):
        # Not 503: that promises nothing was written, and this command may have been.
        return problem_response(
            "outcome_unknown", "the event store took the command but never confirmed it; "
            "read the resource before repeating the command (a PIREP submission may be "
            "repeated with the same Idempotency-Key)",
            headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})
    if isinstance(exc, DEPENDENCY_ERRORS):
        return problem_response("unavailable", "a dependency is unavailable; nothing was done",
                                headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})
    return None
