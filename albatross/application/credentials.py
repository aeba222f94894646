"""Secrets handed to clients (session tokens, API keys) and the only form we store: a hash.

Session tokens and API keys are high-entropy random strings (256 and 192 bits), so a plain
SHA-256 is the right storage hash (a slow hash protects low-entropy passwords only). Their
prefixes tell them apart without a lookup: ``albs_`` for sessions, ``alb_`` for API keys.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import msgspec

API_KEY_PREFIX = "alb_"
SESSION_PREFIX = "albs_"
API_KEY_DISPLAY_LEN = 12  # "alb_" + 8 characters: enough to recognise a key, useless to guess
MAX_SECRET_LEN = 200


def new_session_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(24)


def secret_hash(secret: str) -> str:
    """The stored form of a token or key: hex SHA-256 (a valid KV key and claim value)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_display_prefix(key: str) -> str:
    return key[:API_KEY_DISPLAY_LEN]


def is_api_key(secret: str) -> bool:
    return secret.startswith(API_KEY_PREFIX)


def is_session_token(secret: str) -> bool:
    return secret.startswith(SESSION_PREFIX)


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the sessions bucket holds under the token's hash."""

    session_id: str
    user_id: str
    user_stream: str
    created_at: datetime
    expires_at: datetime
    # The user's ``sessions_revocations`` when the password was checked (None: an older record).
    revocations_seen: int | None = None


def scoped_hash(*parts: str) -> str:
    """A key derived from several values (e.g. user id + idempotency key) without collisions."""
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return digest.hexdigest()
