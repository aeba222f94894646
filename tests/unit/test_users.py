"""The User aggregate: registration, passwords, API keys, and what stays secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from albatross.adapters.codec import EventCodec, event_subject
from albatross.domain.aggregates import ALL_KINDS, USER, default_registry
from albatross.domain.errors import Conflict, InvalidState, NotFound, ValidationFailed
from albatross.domain.events import Event
from albatross.domain.users import (
    ApiKey,
    ApiKeyCreated,
    ApiKeyHashIssued,
    ApiKeyRevoked,
    CreateApiKey,
    PasswordChanged,
    PasswordHashSet,
    RegisterUser,
    RevokeApiKey,
    SessionsRevoked,
    SetPassword,
    User,
    UserRegistered,
    decide_create_api_key,
    decide_register,
    decide_revoke_api_key,
    decide_set_password,
)
from albatross.ports import StreamId

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SECRET_TYPES = {"PasswordHashSet", "ApiKeyHashIssued", "SessionsRevoked"}


def register(**overrides: Any) -> RegisterUser:
    fields: dict[str, Any] = {"user_id": "u1", "email": "pilot@example.com",
                              "display_name": "Jane Pilot", "role": "Pilot", "tenant_id": "t1",
                              "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}
    fields.update(overrides)
    return RegisterUser(**fields)


def refused_fields(cmd: RegisterUser) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        decide_register(None, cmd)
    return [e.field for e in caught.value.errors]


def apply(state: User | None, events: list[Event], at: datetime) -> User | None:
    return USER.fold(state, [(e, at) for e in events])


def registered(**overrides: Any) -> User:
    state = apply(None, decide_register(None, register(**overrides)), T0)
    assert state is not None
    return state


def with_key(state: User, key_id: str = "k1", at: datetime = T0) -> User:
    events = decide_create_api_key(state, CreateApiKey(key_id=key_id, name="ACARS",
                                                       prefix="alb_ab12", key_hash="kh-" + key_id))
    new = apply(state, events, at)
    assert new is not None
    return new


# Registration: roles and tenants ----------------------------------------------------------

def test_platform_admin_without_tenant_is_accepted() -> None:
    user = registered(role="PlatformAdmin", tenant_id=None)
    assert user.role == "PlatformAdmin"
    assert user.tenant_id is None


@pytest.mark.parametrize("tenant_id", ["t1", ""])
def test_platform_admin_with_a_tenant_is_refused(tenant_id: str) -> None:
    assert refused_fields(register(role="PlatformAdmin", tenant_id=tenant_id)) == ["tenant_id"]


@pytest.mark.parametrize("role", ["TenantAdmin", "Pilot"])
def test_tenant_roles_need_exactly_one_tenant(role: str) -> None:
    assert registered(role=role, tenant_id="t1").tenant_id == "t1"
    assert refused_fields(register(role=role, tenant_id=None)) == ["tenant_id"]
    assert refused_fields(register(role=role, tenant_id="")) == ["tenant_id"]


# Registration: fields ---------------------------------------------------------------------

def test_register_produces_a_public_profile_and_a_secret_hash() -> None:
    events = decide_register(None, register(must_change_password=True))
    assert events == [
        UserRegistered(user_id="u1", email="pilot@example.com", display_name="Jane Pilot",
                       role="Pilot", tenant_id="t1", must_change_password=True),
        PasswordHashSet(user_id="u1", password_hash=register().password_hash),
    ]
    assert [e.secret for e in events] == [False, True]


def test_register_state() -> None:
    user = registered()
    assert user == User(user_id="u1", email="pilot@example.com", display_name="Jane Pilot",
                        role="Pilot", tenant_id="t1", must_change_password=False,
                        password_hash=register().password_hash, created_at=T0)


def test_email_is_stored_lowercase() -> None:
    assert registered(email="Jane.Pilot+VA@Example.COM").email == "jane.pilot+va@example.com"


@pytest.mark.parametrize("email", ["pilot", "pilot@", "pi lot@example.com", "a..b@example.com",
                                   "x" * 250 + "@example.com", ""])
def test_bad_email_refused(email: str) -> None:
    assert refused_fields(register(email=email)) == ["email"]


@pytest.mark.parametrize("name", ["", "  ", "x" * 101, "a\x00"])
def test_bad_display_name_refused(name: str) -> None:
    assert refused_fields(register(display_name=name)) == ["display_name"]


def test_display_name_is_stripped() -> None:
    assert registered(display_name="  Jane  ").display_name == "Jane"


def test_missing_password_hash_refused() -> None:
    assert refused_fields(register(password_hash="")) == ["password"]


def test_all_errors_reported_together() -> None:
    assert sorted(refused_fields(register(email="x", display_name="", tenant_id=None,
                                          password_hash=""))) == [
        "display_name", "email", "password", "tenant_id"]


def test_register_twice_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        decide_register(registered(), register(email="other@example.com"))


# Passwords --------------------------------------------------------------------------------

def test_set_password_of_a_missing_user_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide_set_password(None, SetPassword(password_hash="h2", by_admin=False))


def test_set_password_needs_a_hash() -> None:
    with pytest.raises(ValidationFailed):
        decide_set_password(registered(), SetPassword(password_hash="", by_admin=False))


@pytest.mark.parametrize("by_admin", [False, True])
def test_set_password_events_and_state(by_admin: bool) -> None:
    user = with_key(registered(must_change_password=not by_admin))
    events = decide_set_password(user, SetPassword(password_hash="h2", by_admin=by_admin,
                                                   keep_session_id="s1"))
    assert events == [
        PasswordChanged(user_id="u1", must_change_password=by_admin),
        PasswordHashSet(user_id="u1", password_hash="h2"),
        SessionsRevoked(user_id="u1", keep_session_id="s1"),
    ]
    later = T0 + timedelta(hours=1)
    after = apply(user, events, later)
    assert after is not None
    assert after.password_hash == "h2"
    # An admin reset makes the password temporary; a change by the user clears the flag.
    assert after.must_change_password is by_admin
    assert after.sessions_revoked_at == later
    assert after.kept_session_id == "s1"
    # A password change revokes sessions, never API keys.
    assert after.api_keys == user.api_keys
    assert after.api_keys["k1"].revoked_at is None


# API keys ---------------------------------------------------------------------------------

def test_create_api_key() -> None:
    user = registered()
    events = decide_create_api_key(user, CreateApiKey(key_id="k1", name="  ACARS  ",
                                                      prefix="alb_ab12", key_hash="kh"))
    assert events == [
        ApiKeyCreated(user_id="u1", key_id="k1", name="ACARS", prefix="alb_ab12"),
        ApiKeyHashIssued(user_id="u1", key_id="k1", key_hash="kh"),
    ]
    assert [e.secret for e in events] == [False, True]
    after = apply(user, events, T0 + timedelta(minutes=1))
    assert after is not None
    assert after.api_keys == {"k1": ApiKey(key_id="k1", name="ACARS", prefix="alb_ab12",
                                           key_hash="kh", created_at=T0 + timedelta(minutes=1))}


def test_create_api_key_for_a_missing_user_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide_create_api_key(None, CreateApiKey(key_id="k1", name="n", prefix="p",
                                                 key_hash="h"))


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_create_api_key_needs_a_name(name: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decide_create_api_key(registered(), CreateApiKey(key_id="k1", name=name, prefix="p",
                                                         key_hash="h"))
    assert [e.field for e in caught.value.errors] == ["name"]


def test_create_api_key_with_a_used_id_is_a_conflict() -> None:
    user = with_key(registered())
    with pytest.raises(Conflict):
        decide_create_api_key(user, CreateApiKey(key_id="k1", name="again", prefix="p",
                                                 key_hash="h"))


def test_revoke_api_key_keeps_it_listed_with_revoked_at() -> None:
    user = with_key(with_key(registered()), "k2")
    events = decide_revoke_api_key(user, RevokeApiKey(key_id="k1"))
    assert events == [ApiKeyRevoked(user_id="u1", key_id="k1")]
    assert not events[0].secret
    at = T0 + timedelta(days=1)
    after = apply(user, events, at)
    assert after is not None
    assert after.api_keys["k1"].revoked_at == at
    assert after.api_keys["k1"].key_hash == "kh-k1"
    assert after.api_keys["k2"].revoked_at is None


def test_revoke_api_key_twice_is_invalid_state() -> None:
    user = with_key(registered())
    user = apply(user, decide_revoke_api_key(user, RevokeApiKey(key_id="k1")), T0)
    with pytest.raises(InvalidState) as caught:
        decide_revoke_api_key(user, RevokeApiKey(key_id="k1"))
    assert caught.value.code == "invalid_state"


def test_revoke_unknown_api_key_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide_revoke_api_key(with_key(registered()), RevokeApiKey(key_id="nope"))
    with pytest.raises(NotFound):
        decide_revoke_api_key(None, RevokeApiKey(key_id="k1"))


# What is secret ---------------------------------------------------------------------------

def test_credential_events_are_secret_and_the_others_are_not() -> None:
    registry = default_registry()
    assert {t.event_type for t in registry.types() if t.secret} == SECRET_TYPES
    for event_type in registry.types():
        assert event_type.secret is (event_type.event_type in SECRET_TYPES), event_type


def test_credential_events_go_under_albatross_secrets() -> None:
    stream = StreamId("user", "u1", "t1")
    samples: list[Event] = [
        PasswordHashSet(user_id="u1", password_hash="h"),
        ApiKeyHashIssued(user_id="u1", key_id="k", key_hash="h"),
        SessionsRevoked(user_id="u1", keep_session_id=None),
    ]
    for event in samples:
        assert event_subject(stream, event) == "albatross.secrets.t1.user.u1"
    public = UserRegistered(user_id="u1", email="e@x.io", display_name="d", role="Pilot",
                            tenant_id="t1", must_change_password=False)
    assert event_subject(stream, public) == "albatross.events.t1.user.u1"


def _field_names(event_type: type[Event]) -> list[tuple[str, dict[str, Any]]]:
    """Every property of the event, nested structs included, with its schema."""
    _, components = msgspec.json.schema_components([event_type])
    return [(name, prop) for component in components.values()
            for name, prop in component.get("properties", {}).items()]


def test_no_public_event_carries_a_hash_or_a_password() -> None:
    public = [t for t in default_registry().types() if not t.secret]
    assert len(public) >= 7
    for event_type in public:
        for name, prop in _field_names(event_type):
            assert "hash" not in name.lower(), (event_type.event_type, name)
            assert "secret" not in name.lower(), (event_type.event_type, name)
            assert name.lower() != "key", (event_type.event_type, name)
            if "password" in name.lower():
                # The contract's `must_change_password` flag is the one allowed: a boolean.
                assert name == "must_change_password", (event_type.event_type, name)
                assert prop == {"type": "boolean"}, (event_type.event_type, name)


def test_no_public_event_holds_a_credential_value() -> None:
    """Encode real events of a user's life: no hash string reaches a public payload."""
    codec = EventCodec(default_registry())
    user = registered(password_hash="PWHASH-1")
    history = decide_register(None, register(password_hash="PWHASH-1"))
    history += decide_create_api_key(user, CreateApiKey(key_id="k1", name="n", prefix="alb_",
                                                        key_hash="KEYHASH-1"))
    history += decide_set_password(user, SetPassword(password_hash="PWHASH-2", by_admin=True))
    for event in history:
        payload = codec.encode(event, T0, "u1")
        leaked = any(s in payload for s in (b"PWHASH", b"KEYHASH"))
        assert not (leaked and not event.secret), event
        if isinstance(event, PasswordHashSet | ApiKeyHashIssued):
            assert leaked  # the hashes are there, on the secret events


def test_registry_holds_exactly_the_aggregates_events() -> None:
    registry = default_registry()
    by_kind = [t for kind in ALL_KINDS for t in kind.events]
    assert len(by_kind) == len(set(by_kind))
    assert set(registry.types()) == set(by_kind)
    for event_type in registry.types():
        assert registry.get(event_type.event_type) is event_type


def test_unknown_role_is_refused() -> None:
    # Today the command is decided, and its UserRegistered then fails to decode.
    with pytest.raises(ValidationFailed) as caught:
        decide_register(None, register(role="Captain"))
    assert [e.field for e in caught.value.errors] == ["role"]


def test_api_key_use_is_recorded_once_per_newer_time_and_never_for_revoked_keys() -> None:
    from albatross.domain import users as u

    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    register = u.RegisterUser(user_id="u1", email="u1@example.com", display_name="U",
                              role="Pilot", tenant_id="t1", password_hash="h")
    state = USER.fold(None, ((e, t0) for e in u.decide_register(None, register)))
    create = u.CreateApiKey(key_id="k1", name="acars", prefix="alb_x", key_hash="kh")
    state = USER.fold(state, ((e, t0) for e in u.decide_create_api_key(state, create)))
    used = u.decide_record_api_key_use(state, u.RecordApiKeyUse(
        key_id="k1", used_at=t0 + timedelta(minutes=1)))
    assert used == [u.ApiKeyUsed(user_id="u1", key_id="k1", used_at=t0 + timedelta(minutes=1))]
    state = USER.fold(state, ((e, t0) for e in used))
    assert state is not None
    assert state.api_keys["k1"].last_used_at == t0 + timedelta(minutes=1)
    # An older or equal report changes nothing; an unknown key records nothing.
    for when in (t0, t0 + timedelta(minutes=1)):
        assert u.decide_record_api_key_use(state, u.RecordApiKeyUse(key_id="k1",
                                                                     used_at=when)) == []
    assert u.decide_record_api_key_use(state, u.RecordApiKeyUse(
        key_id="nope", used_at=t0 + timedelta(hours=1))) == []
    revoked = USER.fold(state, ((e, t0) for e in u.decide_revoke_api_key(
        state, u.RevokeApiKey(key_id="k1"))))
    assert u.decide_record_api_key_use(revoked, u.RecordApiKeyUse(
        key_id="k1", used_at=t0 + timedelta(hours=1))) == []
    assert not u.ApiKeyUsed.secret
