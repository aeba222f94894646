"""Authentication: login, sessions, API keys, and turning a secret into a :class:`Principal`.

Independent of HTTP: the gateway and the notifier both call :meth:`Authenticator.authenticate`.

Everything a decision needs is read strongly consistently from NATS, never from PostgreSQL:
an email or API-key hash leads to the user's stream through the event store's uniqueness
claims; the User aggregate then gives the password hash, role, tenant, API keys and the
session-revocation marker; sessions live in a KV bucket under the SHA-256 of their token.

Revocation reaches every replica within a second because nothing is cached longer than
``cache_ttl`` (default 0.5 s), counted from when the answer was read; a replica that revokes
something itself forgets it at once. Concurrent requests with the same secret share one
lookup (a busy API key would otherwise send every in-flight request to NATS each time its
cache entry expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from albatross.application.auth_ports import ClaimLookup, KeyValue, PasswordHasher
from albatross.application.credentials import (
    MAX_SECRET_LEN,
    SessionRecord,
    is_api_key,
    is_session_token,
    new_session_token,
    secret_hash,
)
from albatross.application.errors import Unauthorized
from albatross.application.principal import Principal
from albatross.application.repository import AggregateRepository, Loaded
from albatross.application.throttle import LoginThrottle
from albatross.domain.errors import Conflict
from albatross.domain.rules import PASSWORD_MAX, normalise_email
from albatross.domain.users import PasswordHashSet, User
from albatross.ports import (
    Claim,
    Clock,
    EventStoreError,
    IdGenerator,
    InvalidStreamId,
    StreamId,
)

BAD_CREDENTIALS = "The email or password is not correct."
DEFAULT_CACHE_TTL = 0.5


def parse_stream_key(key: str) -> StreamId | None:
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        return StreamId(aggregate=parts[1], aggregate_id=parts[2], scope=parts[0])
    except InvalidStreamId:
        return None


def session_alive(record: SessionRecord, user: User, now: datetime) -> bool:
    """Pure: whether a session may still be used (not expired, not revoked)."""
    if now >= record.expires_at or record.user_id != user.user_id:
        return False
    if record.session_id == user.kept_session_id:
        return True
    revoked_at = user.sessions_revoked_at
    if revoked_at is not None and record.created_at < revoked_at:
        return False
    # A login that read the user before a password change commits can write its session after
    # the change's time: the revocations it saw tell it apart, whatever the clocks say.
    return record.revocations_seen is None or record.revocations_seen == user.sessions_revocations


@dataclass
class _Cached:
    until: float
    principal: Principal | None


class Authenticator:
    """Turns a session token or an API key into a Principal (or None: 401 / WebSocket 4401)."""

    def __init__(self, users: AggregateRepository[User], sessions: KeyValue,
                 claims: ClaimLookup, clock: Clock, *, cache_ttl: float = DEFAULT_CACHE_TTL,
                 cache_size: int = 10_000,
                 on_api_key_used: Callable[[Principal], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= cache_ttl < 1:
            raise ValueError("cache_ttl must be below one second (revocation promise)")
        self._users = users
        self._sessions = sessions
        self._claims = claims
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._cache: dict[str, _Cached] = {}
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}
        self._generation = 0
        self._on_api_key_used = on_api_key_used
        self._monotonic = monotonic
        self._decode_session = msgspec.json.Decoder(SessionRecord).decode

    async def authenticate(self, secret: str) -> Principal | None:
        if not secret or len(secret) > MAX_SECRET_LEN or not secret.isascii():
            return None  # every secret issued is ASCII; a header may carry any bytes
        digest = secret_hash(secret)
        cached = self._cache.get(digest)
        if cached is not None and cached.until > self._monotonic():
            principal = cached.principal
        else:
            lookup = self._pending.get(digest) or self._start_lookup(secret, digest)
            # shield: one caller giving up (a client gone) must not cancel the others' lookup.
            principal = await asyncio.shield(lookup)
        if principal is not None and principal.api_key_id and self._on_api_key_used:
            self._on_api_key_used(principal)
        return principal

    def forget(self, secret: str | None = None, *, user_id: str | None = None) -> None:
        """Drop cached answers for a secret or for every secret of a user."""
        # Lookups already under way may have read the old state: they must not be cached.
        self._generation += 1
        self._pending.clear()
        if secret is not None:
            self._cache.pop(secret_hash(secret), None)
        if user_id is not None:
            for digest in [d for d, c in self._cache.items()
                           if c.principal is not None and c.principal.user_id == user_id]:
                self._cache.pop(digest, None)

    def _start_lookup(self, secret: str, digest: str) -> asyncio.Future[Principal | None]:
        started, generation = self._monotonic(), self._generation
        lookup = asyncio.ensure_future(self._resolve(secret, digest))
        self._pending[digest] = lookup

        def settle(done: asyncio.Future[Principal | None]) -> None:
            if self._pending.get(digest) is done:
                del self._pending[digest]
            if (not done.cancelled() and done.exception() is None
                    and generation == self._generation):
                self._remember(digest, done.result(), started)

        lookup.add_done_callback(settle)
        return lookup

    async def _resolve(self, secret: str, digest: str) -> Principal | None:
        if is_session_token(secret):
            return await self._from_session(digest)
        if is_api_key(secret):
            return await self._from_api_key(digest)
        return None

    async def _from_session(self, digest: str) -> Principal | None:
        entry = await self._sessions.get(digest)
        if entry is None:
            return None
        try:
            record = self._decode_session(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        stream = parse_stream_key(record.user_stream)
        if stream is None:
            return None
        user = (await self._users.load(stream)).state
        if user is None or not session_alive(record, user, self._clock.now()):
            return None
        return Principal(user_id=user.user_id, role=user.role, tenant_id=user.tenant_id,
                         session_id=record.session_id,
                         must_change_password=user.must_change_password)

    async def _from_api_key(self, digest: str) -> Principal | None:
        stream = await self._claims.holder(Claim("apikey", digest))
        if stream is None:
            return None
        user = (await self._users.load(stream)).state
        if user is None:
            return None
        for key in user.api_keys.values():
            if key.key_hash == digest and key.revoked_at is None:
                return Principal(user_id=user.user_id, role=user.role,
                                 tenant_id=user.tenant_id, api_key_id=key.key_id,
                                 must_change_password=user.must_change_password)
        return None

    def _remember(self, digest: str, principal: Principal | None, now: float) -> None:
        if self._cache_ttl <= 0:
            return
        if len(self._cache) >= self._cache_size:
            for stale in [d for d, c in self._cache.items() if c.until <= now]:
                del self._cache[stale]
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
        self._cache[digest] = _Cached(now + self._cache_ttl, principal)


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_at: datetime
    user: User
    version: int


class LoginService:
    """Password login (throttled per email, and per client address when configured)."""

    def __init__(self, users: AggregateRepository[User], claims: ClaimLookup,
                 sessions: KeyValue, hasher: PasswordHasher, clock: Clock, ids: IdGenerator,
                 *, session_ttl: timedelta, email_throttle: LoginThrottle,
                 address_throttle: LoginThrottle | None = None) -> None:
        self._users = users
        self._claims = claims
        self._sessions = sessions
        self._hasher = hasher
        self._clock = clock
        self._ids = ids
        self._ttl = session_ttl
        self._email_throttle = email_throttle
        self._address_throttle = address_throttle
        self._encode = msgspec.json.Encoder().encode

    async def login(self, email: str, password: str, *, address: str | None = None) -> LoginResult:
        normalised = normalise_email(email)
        origin = address or ""
        by_address = self._address_throttle if origin else None
        attempt = await by_address.begin(origin) if by_address else 0.0
        await self._email_throttle.begin(normalised)
        loaded = await self._check_password(normalised, password)
        if loaded is None or loaded.state is None:
            raise Unauthorized(BAD_CREDENTIALS)
        await self._email_throttle.succeeded(normalised)
        if by_address:
            # One account's success says nothing of the guesses at other emails from there.
            await by_address.withdraw(origin, attempt)
        await self._rehash_if_needed(loaded, password)
        token, expires_at = await self.start_session(loaded.stream, loaded.state)
        return LoginResult(token=token, expires_at=expires_at, user=loaded.state,
                           version=loaded.version)

    async def start_session(self, stream: StreamId, user: User) -> tuple[str, datetime]:
        now = self._clock.now()
        token = new_session_token()
        record = SessionRecord(session_id=self._ids.new_id(), user_id=user.user_id,
                               user_stream=stream.key, created_at=now,
                               expires_at=now + self._ttl,
                               revocations_seen=user.sessions_revocations)
        if await self._sessions.create(secret_hash(token), self._encode(record)) is None:
            raise Conflict("session collision; try again")  # 256 random bits: never
        return token, record.expires_at

    async def logout(self, token: str) -> None:
        if is_session_token(token):
            await self._sessions.delete(secret_hash(token))

    async def _check_password(self, email: str, password: str) -> Loaded[User] | None:
        # Every path costs one argon2 verification, so timing does not tell whether the
        # email exists.
        stream = await self._claims.holder(Claim("email", email))
        loaded = await self._users.load(stream) if stream is not None else None
        user = loaded.state if loaded is not None else None
        if user is None or not user.password_hash or len(password) > PASSWORD_MAX:
            await self._hasher.verify_dummy(password[:PASSWORD_MAX])
            return None
        if not await self._hasher.verify(user.password_hash, password):
            return None
        return loaded

    async def _rehash_if_needed(self, loaded: Loaded[User], password: str) -> None:
        user = loaded.state
        if user is None or not self._hasher.needs_rehash(user.password_hash):
            return
        new_hash = await self._hasher.hash(password)
        # Best effort: if this append loses a race, the next login tries again.
        with contextlib.suppress(EventStoreError):
            await self._users.append(loaded, [PasswordHashSet(user_id=user.user_id,
                                                              password_hash=new_hash)],
                                     occurred_at=self._clock.now(), actor_id=user.user_id)
