"""Who is calling: the authenticated identity every use case and query is scoped by."""

from __future__ import annotations

from dataclasses import dataclass

from albatross.domain.rules import Role


@dataclass(frozen=True)
class Principal:
    """An authenticated user; the tenant always comes from here, never from input.

    Exactly one of ``session_id`` (a login session) and ``api_key_id`` is set.
    """

    user_id: str
    role: Role
    tenant_id: str | None
    session_id: str | None = None
    api_key_id: str | None = None
    must_change_password: bool = False

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "PlatformAdmin"
