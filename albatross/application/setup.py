"""The platform's first PlatformAdmin, created once however many bootstraps run at once.

The registration appends, in one atomic write, the admin's events, the claim on the email and
the platform-wide claim ``setup/platform-admin``: of two concurrent bootstraps exactly one
succeeds, and ``GET /api/setup`` answers from that claim without PostgreSQL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from albatross.application.auth_ports import ClaimLookup, PasswordHasher
from albatross.application.repository import AggregateRepository, Loaded
from albatross.domain.errors import EmailTaken, raise_if_any
from albatross.domain.rules import email_errors, normalise_email, password_errors
from albatross.domain.users import RegisterUser, User, decide_register
from albatross.ports import PLATFORM_SCOPE, Claim, ClaimTaken, Clock, IdGenerator

SETUP_CLAIM = Claim("setup", "platform-admin")


@dataclass(frozen=True)
class FirstAdmin:
    user_id: str
    email: str
    # Set only when generated here: the caller shows it once, then forgets it.
    one_time_password: str | None = field(repr=False)


async def is_initialized(claims: ClaimLookup) -> bool:
    return await claims.holder(SETUP_CLAIM) is not None


def generate_password() -> str:
    return secrets.token_urlsafe(18)  # 144 bits, 24 characters


async def create_first_admin(users: AggregateRepository[User], claims: ClaimLookup,
                             hasher: PasswordHasher, clock: Clock, ids: IdGenerator, *,
                             email: str, password: str | None) -> FirstAdmin | None:
    """The admin created now, or None when a PlatformAdmin already exists."""
    raise_if_any(email_errors("email", email))
    if password is not None:
        raise_if_any(password_errors("password", password))
    if await is_initialized(claims):
        return None
    generated = password is None
    secret = generate_password() if password is None else password
    user_id = ids.new_id()
    cmd = RegisterUser(user_id=user_id, email=email, display_name="Platform admin",
                       role="PlatformAdmin", tenant_id=None,
                       password_hash=await hasher.hash(secret), must_change_password=generated)
    stream = users.stream(user_id, PLATFORM_SCOPE)
    email_claim = Claim("email", normalise_email(email))
    try:
        await users.append(Loaded(stream, None, 0), decide_register(None, cmd),
                           occurred_at=clock.now(), actor_id=None,
                           claims=[email_claim, SETUP_CLAIM])
    except ClaimTaken:
        if await is_initialized(claims):
            return None  # another bootstrap won the race
        raise EmailTaken(f"{email} belongs to a user who is not a PlatformAdmin") from None
    return FirstAdmin(user_id=user_id, email=normalise_email(email),
                      one_time_password=secret if generated else None)
