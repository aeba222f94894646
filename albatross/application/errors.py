"""Refusals of the application layer that are not domain rules: authentication and access.

They extend :class:`albatross.domain.errors.DomainError` so that one error mapper (the
gateway's, the notifier's) turns every refusal into the contract's ``code``.
"""

from __future__ import annotations

from albatross.domain.errors import DomainError


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class PasswordChangeRequired(DomainError):
    code = "password_change_required"


class PreconditionFailed(DomainError):
    code = "precondition_failed"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
