"""The User aggregate: profile, role and tenant, plus the user's credentials.

Credentials (the password hash, API-key hashes, the session-revocation marker) are carried by
``secret`` events, which the event store keeps under ``albatross.secrets.>``; the public events
never hold them. Hashing happens outside the domain: commands carry hashes, not passwords.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from albatross.domain.errors import (
    Conflict,
    FieldError,
    InvalidState,
    NotFound,
    ValidationFailed,
    raise_if_any,
)
from albatross.domain.events import Event
from albatross.domain.rules import (
    NAME_MAX,
    ROLES,
    Role,
    email_errors,
    normalise_email,
    text_errors,
)

PLATFORM_ROLE: Role = "PlatformAdmin"


# Commands ---------------------------------------------------------------------------------

class RegisterUser(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    email: str
    display_name: str
    role: Role
    tenant_id: str | None
    password_hash: str
    must_change_password: bool = False


class SetPassword(msgspec.Struct, frozen=True, kw_only=True):
    """A new password hash; ``by_admin`` makes it temporary (changed at next login)."""

    password_hash: str
    by_admin: bool
    keep_session_id: str | None = None


class CreateApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    name: str
    prefix: str
    key_hash: str


class RevokeApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str


class RecordApiKeyUse(msgspec.Struct, frozen=True, kw_only=True):
    """The latest time a key authenticated a request, reported in batches, not per request."""

    key_id: str
    used_at: datetime


# Public events ----------------------------------------------------------------------------

class UserRegistered(Event, frozen=True, kw_only=True):
    event_type = "UserRegistered"
    user_id: str
    email: str
    display_name: str
    role: Role
    tenant_id: str | None
    must_change_password: bool


class PasswordChanged(Event, frozen=True, kw_only=True):
    event_type = "PasswordChanged"
    user_id: str
    must_change_password: bool


class ApiKeyCreated(Event, frozen=True, kw_only=True):
    event_type = "ApiKeyCreated"
    user_id: str
    key_id: str
    name: str
    prefix: str


class ApiKeyRevoked(Event, frozen=True, kw_only=True):
    event_type = "ApiKeyRevoked"
    user_id: str
    key_id: str


class ApiKeyUsed(Event, frozen=True, kw_only=True):
    event_type = "ApiKeyUsed"
    user_id: str
    key_id: str
    used_at: datetime


# Credential events (albatross.secrets.>) --------------------------------------------------

class PasswordHashSet(Event, frozen=True, kw_only=True):
    event_type = "PasswordHashSet"
    secret = True
    user_id: str
    password_hash: str


class ApiKeyHashIssued(Event, frozen=True, kw_only=True):
    event_type = "ApiKeyHashIssued"
    secret = True
    user_id: str
    key_id: str
    key_hash: str


class SessionsRevoked(Event, frozen=True, kw_only=True):
    """Every session of the user that started before ``occurred_at`` is void, but one."""

    event_type = "SessionsRevoked"
    secret = True
    user_id: str
    keep_session_id: str | None


# State ------------------------------------------------------------------------------------

class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class User(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    email: str
    display_name: str
    role: Role
    tenant_id: str | None
    must_change_password: bool
    password_hash: str
    created_at: datetime
    api_keys: dict[str, ApiKey] = msgspec.field(default_factory=dict)
    sessions_revoked_at: datetime | None = None
    kept_session_id: str | None = None
    # How many SessionsRevoked so far: a session remembers the count its login saw, since a
    # login that checked the old password may write its session after the revocation's time.
    sessions_revocations: int = 0


def register_errors(cmd: RegisterUser) -> list[FieldError]:
    errors = [
        *email_errors("email", cmd.email),
        *text_errors("display_name", cmd.display_name, required=True, max_len=NAME_MAX),
    ]
    if cmd.role not in ROLES:
        errors.append(FieldError("role", f"must be one of {', '.join(ROLES)}"))
    if cmd.role == PLATFORM_ROLE and cmd.tenant_id is not None:
        errors.append(FieldError("tenant_id", "a PlatformAdmin belongs to no tenant"))
    if cmd.role != PLATFORM_ROLE and not cmd.tenant_id:
        errors.append(FieldError("tenant_id", f"a {cmd.role} belongs to exactly one tenant"))
    if not cmd.password_hash:
        errors.append(FieldError("password", "is required"))
    return errors


def decide_register(state: User | None, cmd: RegisterUser) -> list[Event]:
    if state is not None:
        raise Conflict(f"user {cmd.user_id} already exists")
    raise_if_any(register_errors(cmd))
    return [
        UserRegistered(user_id=cmd.user_id, email=normalise_email(cmd.email),
                       display_name=cmd.display_name.strip(), role=cmd.role,
                       tenant_id=cmd.tenant_id, must_change_password=cmd.must_change_password),
        PasswordHashSet(user_id=cmd.user_id, password_hash=cmd.password_hash),
    ]


def _existing(state: User | None) -> User:
    if state is None:
        raise NotFound("no such user")
    return state


def decide_set_password(state: User | None, cmd: SetPassword) -> list[Event]:
    user = _existing(state)
    if not cmd.password_hash:
        raise ValidationFailed.single("new_password", "is required")
    return [
        PasswordChanged(user_id=user.user_id, must_change_password=cmd.by_admin),
        PasswordHashSet(user_id=user.user_id, password_hash=cmd.password_hash),
        SessionsRevoked(user_id=user.user_id, keep_session_id=cmd.keep_session_id),
    ]


def decide_create_api_key(state: User | None, cmd: CreateApiKey) -> list[Event]:
    user = _existing(state)
    raise_if_any(text_errors("name", cmd.name, required=True, max_len=NAME_MAX))
    if cmd.key_id in user.api_keys:
        raise Conflict(f"API key {cmd.key_id} already exists")
    return [
        ApiKeyCreated(user_id=user.user_id, key_id=cmd.key_id, name=cmd.name.strip(),
                      prefix=cmd.prefix),
        ApiKeyHashIssued(user_id=user.user_id, key_id=cmd.key_id, key_hash=cmd.key_hash),
    ]


def decide_revoke_api_key(state: User | None, cmd: RevokeApiKey) -> list[Event]:
    user = _existing(state)
    key = user.api_keys.get(cmd.key_id)
    if key is None:
        raise NotFound("no such API key")
    if key.revoked_at is not None:
        raise InvalidState("the API key is already revoked")
    return [ApiKeyRevoked(user_id=user.user_id, key_id=cmd.key_id)]


def decide_record_api_key_use(state: User | None, cmd: RecordApiKeyUse) -> list[Event]:
    """Nothing to record for a key that is gone, revoked, or already known used later."""
    user = _existing(state)
    key = user.api_keys.get(cmd.key_id)
    if key is None or key.revoked_at is not None:
        return []
    if key.last_used_at is not None and key.last_used_at >= cmd.used_at:
        return []
    return [ApiKeyUsed(user_id=user.user_id, key_id=cmd.key_id, used_at=cmd.used_at)]


def evolve(state: User | None, event: Event, occurred_at: datetime) -> User | None:
    if isinstance(event, UserRegistered):
        return User(user_id=event.user_id, email=event.email, display_name=event.display_name,
                    role=event.role, tenant_id=event.tenant_id,
                    must_change_password=event.must_change_password, password_hash="",
                    created_at=occurred_at)
    if state is None:
        return None
    if isinstance(event, PasswordHashSet):
        return msgspec.structs.replace(state, password_hash=event.password_hash)
    if isinstance(event, PasswordChanged):
        return msgspec.structs.replace(state, must_change_password=event.must_change_password)
    if isinstance(event, SessionsRevoked):
        return msgspec.structs.replace(state, sessions_revoked_at=occurred_at,
                                       kept_session_id=event.keep_session_id,
                                       sessions_revocations=state.sessions_revocations + 1)
    if isinstance(event, ApiKeyCreated):
        key = ApiKey(key_id=event.key_id, name=event.name, prefix=event.prefix, key_hash="",
                     created_at=occurred_at)
        return msgspec.structs.replace(state, api_keys={**state.api_keys, key.key_id: key})
    if isinstance(event, ApiKeyHashIssued):
        issued = state.api_keys[event.key_id]
        keys = {**state.api_keys,
                event.key_id: msgspec.structs.replace(issued, key_hash=event.key_hash)}
        return msgspec.structs.replace(state, api_keys=keys)
    if isinstance(event, ApiKeyUsed):
        used = msgspec.structs.replace(state.api_keys[event.key_id], last_used_at=event.used_at)
        return msgspec.structs.replace(state, api_keys={**state.api_keys, event.key_id: used})
    if isinstance(event, ApiKeyRevoked):
        revoked = msgspec.structs.replace(state.api_keys[event.key_id], revoked_at=occurred_at)
        return msgspec.structs.replace(state, api_keys={**state.api_keys, event.key_id: revoked})
    return state


USER_EVENTS: tuple[type[Event], ...] = (
    UserRegistered, PasswordChanged, ApiKeyCreated, ApiKeyRevoked, ApiKeyUsed,
    PasswordHashSet, ApiKeyHashIssued, SessionsRevoked,
)
