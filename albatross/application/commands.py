"""The command side's use cases: every write the API offers, authorised by the policy module.

Each use case returns what it produced (a view built from the new state) and the event-store
sequence a reader must wait for (``Albatross-Sequence``). Tenants are always taken from the
principal (or, for a PlatformAdmin, from the resource), never trusted from input.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from albatross.application import policy
from albatross.application.auth_ports import ClaimLookup, KeyValue, PasswordHasher
from albatross.application.credentials import (
    key_display_prefix,
    new_api_key,
    scoped_hash,
    secret_hash,
)
from albatross.application.errors import Forbidden, PreconditionFailed
from albatross.application.policy import Verdict
from albatross.application.present import pirep_view, tenant_view, user_view
from albatross.application.principal import Principal
from albatross.application.repository import AggregateRepository, Loaded
from albatross.application.throttle import LoginThrottle
from albatross.application.views import PirepView, TenantView, UserView
from albatross.domain import pireps, tenants, users
from albatross.domain.aggregates import PIREP, TENANT, USER, AggregateKind
from albatross.domain.errors import (
    Conflict,
    EmailTaken,
    FieldError,
    IcaoTaken,
    NotFound,
    ValidationFailed,
    raise_if_any,
)
from albatross.domain.events import Event
from albatross.domain.pireps import Decision, FlightDetails, Pirep
from albatross.domain.rules import Role, normalise_email, password_errors
from albatross.domain.users import User
from albatross.ports import (
    PLATFORM_SCOPE,
    AppendResult,
    Claim,
    ClaimTaken,
    Clock,
    EventStore,
    IdGenerator,
    SnapshotStore,
    StreamId,
    WrongExpectedVersion,
    is_valid_token,
)

V = TypeVar("V")
S = TypeVar("S")
_RETRIES = 5


class Done(msgspec.Struct, Generic[V], frozen=True):
    value: V
    sequence: int
    replayed: bool = False


@dataclass(frozen=True)
class NewApiKey:
    id: str
    name: str
    prefix: str
    key: str = field(repr=False)
    created_at: datetime


class Appended(msgspec.Struct, Generic[S], frozen=True):
    state: S | None
    result: AppendResult


def require(verdict: Verdict, what: str) -> None:
    """HIDDEN answers 404 (the caller may not know it exists), FORBIDDEN 403."""
    if verdict is Verdict.HIDDEN:
        raise NotFound(f"no such {what}")
    if verdict is Verdict.FORBIDDEN:
        raise Forbidden(f"you may not do this to this {what}")


def sequence_of(result: AppendResult) -> int:
    return result.public_sequence if result.public_sequence is not None else result.sequence


class Repositories:
    """One repository per aggregate, shared by the command, login and auth services."""

    def __init__(self, store: EventStore, snapshots: SnapshotStore) -> None:
        self.tenants = AggregateRepository(TENANT, store, snapshots)
        self.users = AggregateRepository(USER, store, snapshots)
        self.pireps = AggregateRepository(PIREP, store, snapshots)
        self._kinds: dict[int, AggregateKind[Any]] = {
            id(self.tenants): TENANT, id(self.users): USER, id(self.pireps): PIREP}

    def fold(self, repo: AggregateRepository[S], state: S | None, events: Sequence[Event],
             occurred_at: datetime) -> S | None:
        kind: AggregateKind[S] = self._kinds[id(repo)]
        return kind.fold(state, ((e, occurred_at) for e in events))


class CommandService:
    def __init__(self, repos: Repositories, claims: ClaimLookup, hasher: PasswordHasher,
                 clock: Clock, ids: IdGenerator, idempotency: KeyValue, *,
                 password_throttle: LoginThrottle,
                 on_credentials_changed: Callable[[str], None] | None = None) -> None:
        self._repos = repos
        self._claims = claims
        self._hasher = hasher
        self._clock = clock
        self._ids = ids
        self._idempotency = idempotency
        # Wrong current passwords are failures like a login's: without a limit, any session
        # or API key of the user could guess the password here past the login throttle.
        self._password_throttle = password_throttle
        self._credentials_changed = on_credentials_changed or (lambda _user_id: None)

    # Tenants ------------------------------------------------------------------------------

    async def create_tenant(self, principal: Principal, *, name: str, icao: str,
                            iata: str | None) -> Done[TenantView]:
        require(policy.create_tenant(principal), "tenant")
        tenant_id = self._ids.new_id()
        cmd = tenants.CreateTenant(tenant_id=tenant_id, name=name, icao=icao, iata=iata)
        events = tenants.decide_create(None, cmd)
        # A tenant's own record lives in its scope, like everything else of the tenant.
        stream = self._repos.tenants.stream(tenant_id, tenant_id)
        try:
            appended = await self._append_new(self._repos.tenants, stream, events, principal,
                                              claims=[Claim("icao", icao)])
        except ClaimTaken:
            raise IcaoTaken(f"the ICAO code {icao} is taken") from None
        assert appended.state is not None
        return Done(tenant_view(appended.state), sequence_of(appended.result))

    # Users --------------------------------------------------------------------------------

    async def register_user(self, principal: Principal, *, email: str, display_name: str,
                            password: str, role: Role, tenant_id: str | None,
                            must_change_password: bool) -> Done[UserView]:
        if not principal.is_platform_admin and tenant_id is None and role != "PlatformAdmin":
            tenant_id = principal.tenant_id
        require(policy.register_user(principal, role, tenant_id), "tenant")
        user_id = self._ids.new_id()
        cmd = users.RegisterUser(user_id=user_id, email=email, display_name=display_name,
                                 role=role, tenant_id=tenant_id, password_hash="(pending)",  # noqa: S106 - placeholder
                                 must_change_password=must_change_password)
        # Every cheap check runs before the (deliberately slow) password hash.
        raise_if_any([*users.register_errors(cmd), *password_errors("password", password)])
        if tenant_id is not None and not await self._tenant_exists(tenant_id):
            raise ValidationFailed.single("tenant_id", "no such tenant")
        email_claim = Claim("email", normalise_email(email))
        if await self._claims.holder(email_claim) is not None:
            raise EmailTaken("a user with this email exists")
        cmd = users.RegisterUser(user_id=user_id, email=email, display_name=display_name,
                                 role=role, tenant_id=tenant_id,
                                 password_hash=await self._hasher.hash(password),
                                 must_change_password=must_change_password)
        stream = self._repos.users.stream(user_id, tenant_id or PLATFORM_SCOPE)
        try:
            appended = await self._append_new(self._repos.users, stream,
                                              users.decide_register(None, cmd), principal,
                                              claims=[email_claim])
        except ClaimTaken:
            raise EmailTaken("a user with this email exists") from None
        assert appended.state is not None
        return Done(user_view(appended.state), sequence_of(appended.result))

    async def change_password(self, principal: Principal, user_id: str, *, new_password: str,
                              current_password: str | None) -> int:
        if principal.user_id != user_id:
            return await self._reset_password(principal, user_id, new_password)
        errors = password_errors("new_password", new_password)
        if current_password is None:
            errors.append(FieldError("current_password", "is required"))
        raise_if_any(errors)
        assert current_password is not None
        await self._password_throttle.begin(user_id)
        new_hash: str | None = None
        verified: str | None = None
        for attempt in range(_RETRIES):
            loaded = await self._load_user(user_id)
            assert loaded.state is not None
            if loaded.state.must_change_password and new_password == current_password:
                raise ValidationFailed.single("new_password",
                                              "must differ from the temporary password")
            # The change is appended at the version whose password was checked: a reset or
            # another change landing meanwhile fails the append, and the current password is
            # checked again against what they stored.
            if loaded.state.password_hash != verified:
                if not await self._hasher.verify(loaded.state.password_hash, current_password):
                    raise ValidationFailed.single("current_password", "is not correct")
                verified = loaded.state.password_hash
                await self._password_throttle.succeeded(user_id)
            new_hash = new_hash or await self._hasher.hash(new_password)
            cmd = users.SetPassword(password_hash=new_hash, by_admin=False,
                                    keep_session_id=principal.session_id)
            try:
                result = await self._repos.users.append(
                    loaded, users.decide_set_password(loaded.state, cmd),
                    occurred_at=self._clock.now(), actor_id=principal.user_id)
            except WrongExpectedVersion:
                if attempt == _RETRIES - 1:
                    raise
                continue
            self._credentials_changed(user_id)
            return sequence_of(result)
        raise AssertionError("unreachable")

    async def _reset_password(self, principal: Principal, user_id: str,
                              new_password: str) -> int:
        loaded = await self._load_user(user_id)
        user = loaded.state
        assert user is not None
        require(policy.reset_password(principal, user_id, user.role, user.tenant_id), "user")
        raise_if_any(password_errors("new_password", new_password))
        cmd = users.SetPassword(password_hash=await self._hasher.hash(new_password),
                                by_admin=True, keep_session_id=None)
        result = (await self._decide_and_append(
            self._repos.users, loaded.stream, lambda s: users.decide_set_password(s, cmd),
            principal)).result
        self._credentials_changed(user_id)
        return sequence_of(result)

    async def create_api_key(self, principal: Principal, user_id: str, *,
                             name: str) -> Done[NewApiKey]:
        loaded = await self._load_user(user_id)
        assert loaded.state is not None
        require(policy.manage_api_keys(principal, user_id, loaded.state.tenant_id), "user")
        key = new_api_key()
        digest = secret_hash(key)
        cmd = users.CreateApiKey(key_id=self._ids.new_id(), name=name,
                                 prefix=key_display_prefix(key), key_hash=digest)
        now = self._clock.now()
        result = (await self._decide_and_append(
            self._repos.users, loaded.stream, lambda s: users.decide_create_api_key(s, cmd),
            principal, claims=[Claim("apikey", digest)], now=now)).result
        return Done(NewApiKey(id=cmd.key_id, name=name.strip(), prefix=cmd.prefix, key=key,
                              created_at=now), sequence_of(result))

    async def revoke_api_key(self, principal: Principal, user_id: str, key_id: str) -> int:
        loaded = await self._load_user(user_id)
        assert loaded.state is not None
        require(policy.manage_api_keys(principal, user_id, loaded.state.tenant_id), "user")
        cmd = users.RevokeApiKey(key_id=key_id)
        result = (await self._decide_and_append(
            self._repos.users, loaded.stream, lambda s: users.decide_revoke_api_key(s, cmd),
            principal)).result
        self._credentials_changed(user_id)
        return sequence_of(result)

    async def stored_user(self, user_id: str) -> UserView:
        """A user as the event store has it now (for a read model that lags behind)."""
        loaded = await self._load_user(user_id)
        assert loaded.state is not None
        return user_view(loaded.state)

    # PIREPs -------------------------------------------------------------------------------

    async def submit_pirep(self, principal: Principal, details: FlightDetails, *,
                           idempotency_key: str | None) -> Done[PirepView]:
        require(policy.submit_pirep(principal), "PIREP")
        tenant_id = principal.tenant_id
        assert tenant_id is not None
        append_key: str | None = None
        if idempotency_key is None:
            pirep_id = self._ids.new_id()
        else:
            append_key = scoped_hash("pirep", principal.user_id, idempotency_key)
            pirep_id = await self._pirep_id_for(append_key)
            earlier = await self._repos.pireps.load(self._repos.pireps.stream(pirep_id,
                                                                              tenant_id))
            if earlier.state is not None:
                return Done(pirep_view(earlier.state, earlier.version), earlier.version, True)
        stream = self._repos.pireps.stream(pirep_id, tenant_id)
        cmd = pireps.SubmitPirep(pirep_id=pirep_id, tenant_id=tenant_id,
                                 pilot_id=principal.user_id, details=details,
                                 now=self._clock.now())
        events = pireps.decide_submit(None, cmd)
        try:
            # Submitted when decided: one reading of the clock for both.
            appended = await self._append_new(self._repos.pireps, stream, events, principal,
                                              idempotency_key=append_key, now=cmd.now)
        except WrongExpectedVersion:
            if append_key is None:
                raise Conflict("the PIREP already exists") from None
            return await self._replay(stream)  # a concurrent retry with the same key won
        if appended.state is None or appended.result.duplicate:
            return await self._replay(stream)
        return Done(pirep_view(appended.state, appended.result.sequence),
                    sequence_of(appended.result))

    async def _replay(self, stream: StreamId) -> Done[PirepView]:
        loaded = await self._repos.pireps.load(stream)
        if loaded.state is None:
            raise Conflict("the PIREP could not be stored; try again")
        return Done(pirep_view(loaded.state, loaded.version), loaded.version, True)

    async def review_pirep(self, principal: Principal, pirep_id: str, *, decision: Decision,
                           comment: str | None,
                           if_match: Collection[int] | None) -> Done[PirepView]:
        stream = await self._locate("pirep", pirep_id, "PIREP")
        loaded = await self._repos.pireps.load(stream)
        if loaded.state is None:
            raise NotFound("no such PIREP")
        require(policy.review_pirep(principal, loaded.state.tenant_id), "PIREP")
        cmd = pireps.ReviewPirep(decision=decision, reviewer_id=principal.user_id,
                                 comment=comment)
        if if_match is not None:
            if loaded.version not in if_match:
                raise PreconditionFailed(f"the PIREP is at version {loaded.version}")
            events = pireps.decide_review(loaded.state, cmd)
            now = self._clock.now()
            try:
                result = await self._repos.pireps.append(loaded, events, occurred_at=now,
                                                         actor_id=principal.user_id)
            except WrongExpectedVersion:
                raise PreconditionFailed("the PIREP changed meanwhile") from None
            state: Pirep | None = PIREP.fold(loaded.state, ((e, now) for e in events))
        else:
            appended = await self._decide_and_append(
                self._repos.pireps, stream, lambda s: pireps.decide_review(s, cmd), principal)
            state, result = appended.state, appended.result
        assert state is not None
        return Done(pirep_view(state, result.sequence), sequence_of(result))

    # Helpers ------------------------------------------------------------------------------

    async def _tenant_exists(self, tenant_id: str) -> bool:
        if not is_valid_token(tenant_id):
            return False
        loaded = await self._repos.tenants.load(self._repos.tenants.stream(tenant_id, tenant_id))
        return loaded.state is not None

    async def _locate(self, aggregate: str, aggregate_id: str, what: str) -> StreamId:
        stream = None
        if is_valid_token(aggregate_id):
            stream = await self._claims.locate(aggregate, aggregate_id)
        if stream is None:
            raise NotFound(f"no such {what}")
        return stream

    async def _load_user(self, user_id: str) -> Loaded[User]:
        loaded = await self._repos.users.load(await self._locate("user", user_id, "user"))
        if loaded.state is None:
            raise NotFound("no such user")
        return loaded

    async def _pirep_id_for(self, append_key: str) -> str:
        """The PIREP id bound to an idempotency key for 10 min (the bucket's TTL)."""
        entry = await self._idempotency.get(append_key)
        if entry is None:
            candidate = self._ids.new_id()
            if await self._idempotency.create(append_key, candidate.encode()) is not None:
                return candidate
            entry = await self._idempotency.get(append_key)
            if entry is None:
                return candidate
        return entry.value.decode()

    async def _append_new(self, repo: AggregateRepository[S], stream: StreamId,
                          events: Sequence[Event], principal: Principal, *,
                          claims: Sequence[Claim] = (),
                          idempotency_key: str | None = None,
                          now: datetime | None = None) -> Appended[S]:
        now = now or self._clock.now()
        result = await repo.append(Loaded(stream, None, 0), events, occurred_at=now,
                                   actor_id=principal.user_id, claims=claims,
                                   idempotency_key=idempotency_key)
        return Appended(self._repos.fold(repo, None, events, now), result)

    async def _decide_and_append(self, repo: AggregateRepository[S], stream: StreamId,
                                 decide: Callable[[S | None], Sequence[Event]],
                                 principal: Principal, *, claims: Sequence[Claim] = (),
                                 now: datetime | None = None) -> Appended[S]:
        """Load, decide, append; on a concurrent write decide again on the fresh state."""
        for attempt in range(_RETRIES):
            loaded = await repo.load(stream)
            events = decide(loaded.state)
            occurred_at = now or self._clock.now()
            try:
                result = await repo.append(loaded, events, occurred_at=occurred_at,
                                           actor_id=principal.user_id, claims=claims)
            except WrongExpectedVersion:
                if attempt == _RETRIES - 1:
                    raise
                continue
            return Appended(self._repos.fold(repo, loaded.state, events, occurred_at), result)
        raise AssertionError("unreachable")


