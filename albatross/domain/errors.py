"""Errors the domain raises when a command cannot be carried out.

Each carries the contract's stable machine-readable ``code``; the HTTP edge maps codes to
statuses, so the domain knows nothing of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    """A command was refused; nothing was written."""

    code: str = "conflict"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    code = "validation_failed"

    def __init__(self, errors: list[FieldError], detail: str = "The request is not valid.") -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str) -> ValidationFailed:
        return cls([FieldError(field, message)])


class InvalidState(DomainError):
    code = "invalid_state"


class Conflict(DomainError):
    code = "conflict"


class NotFound(DomainError):
    code = "not_found"


class EmailTaken(DomainError):
    code = "email_taken"


class IcaoTaken(DomainError):
    code = "icao_taken"


def raise_if_any(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed(errors)
