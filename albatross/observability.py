"""Logging set-up in one place: structlog JSON lines with bound context.

Each process calls :func:`configure_logging` once from ``main()``. Request or message ids are
bound with ``structlog.contextvars`` so that every line of one unit of work carries them; the
gateway's per-request fields use :func:`open_log_fields` instead (one context variable holding
a dict: ``bound_contextvars`` copies the whole context twice per use, a measurable share of a
request's CPU).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar, Token
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}

# Keys whose values must never reach a log line, whatever a caller binds by mistake.
_SECRET_KEYS = frozenset({"password", "new_password", "current_password", "token", "key",
                          "secret", "password_hash", "key_hash", "authorization",
                          "x-api-key", "api_key"})


_LOG_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("albatross_log_fields", default=None)


def open_log_fields(**fields: Any) -> Token[dict[str, Any] | None]:
    """Start a unit of work whose log lines carry ``fields``; close with :func:`close_log_fields`.

    A fresh dict per unit: tasks it starts copy the context and so share the dict, while the
    next unit (the next request on a kept-alive connection) gets its own.
    """
    return _LOG_FIELDS.set(fields)


def add_log_fields(**fields: Any) -> None:
    """Add ``fields`` to the current unit of work's log lines (no-op outside one)."""
    current = _LOG_FIELDS.get()
    if current is not None:
        current.update(fields)


def close_log_fields(token: Token[dict[str, Any] | None]) -> None:
    _LOG_FIELDS.reset(token)


def _merge_log_fields(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    fields = _LOG_FIELDS.get()
    if fields:
        for name, value in fields.items():
            event_dict.setdefault(name, value)
    return event_dict


def _redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for name in list(event_dict):
        if name.lower() in _SECRET_KEYS:
            event_dict[name] = "[redacted]"
    return event_dict


class _UnparsableRequests(logging.Filter):
    """aiohttp logs a request it could not parse with a traceback whose message quotes the
    request's bytes, an ``Authorization`` header's among them: keep what kind of error it was
    and drop the bytes. A client's malformed request is a warning, not a server error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "refused an unparsable HTTP request (%s, %s)", (
                type(error).__name__, error.code)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(service: str, level: str = "info", *, human: bool = False,
                      stream: TextIO | None = None) -> None:
    """Route structlog and the stdlib ``logging`` module to one JSON-lines stream."""
    out = stream or sys.stdout
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _merge_log_fields,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer() if human
                     else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)

    # Libraries (aiohttp, asyncpg, nats) log through the stdlib: render them the same way.
    handler = logging.StreamHandler(out)
    handler.addFilter(_UnparsableRequests())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
