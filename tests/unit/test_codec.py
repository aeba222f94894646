"""The wire format: subjects, envelopes, decoding failures and upcasting."""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albatross.adapters.codec import (
    DecodeError,
    Envelope,
    EventCodec,
    claim_subject,
    event_subject,
    stream_filter,
    stream_of,
)
from albatross.domain.aggregates import default_registry
from albatross.domain.events import Event, EventRegistry
from albatross.domain.pireps import FlightDetails, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyHashIssued,
    PasswordChanged,
    PasswordHashSet,
    SessionsRevoked,
    UserRegistered,
)
from albatross.ports import PLATFORM_SCOPE, Claim, InvalidStreamId, StreamId

AT = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
CODEC = EventCodec(default_registry())

USER_STREAM = StreamId("user", "01JDXYZ-u1", "tenant_1")
REGISTERED = UserRegistered(user_id="01JDXYZ-u1", email="pilot@example.com", display_name="P",
                            role="Pilot", tenant_id="tenant_1", must_change_password=False)


def envelope(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {"type": "UserRegistered", "schema_version": 1,
                              "occurred_at": "2026-11-26T10:00:00Z", "actor_id": "a1",
                              "data": msgspec.to_builtins(REGISTERED)}
    fields.update(overrides)
    return json.dumps(fields).encode()


# Subjects ---------------------------------------------------------------------------------

def test_public_event_subject() -> None:
    assert event_subject(USER_STREAM, REGISTERED) == (
        "albatross.events.tenant_1.user.01JDXYZ-u1")


def test_platform_scope_subject() -> None:
    stream = StreamId("tenant", "t9")
    assert stream.scope == PLATFORM_SCOPE == "platform"
    event = TenantCreated(tenant_id="t9", name="n", icao="BAW", iata=None)
    assert event_subject(stream, event) == "albatross.events.platform.tenant.t9"


@pytest.mark.parametrize("event", [
    PasswordHashSet(user_id="u", password_hash="h"),
    ApiKeyHashIssued(user_id="u", key_id="k", key_hash="h"),
    SessionsRevoked(user_id="u", keep_session_id=None),
])
def test_secret_events_go_under_albatross_secrets(event: Event) -> None:
    subject = event_subject(USER_STREAM, event)
    assert subject == "albatross.secrets.tenant_1.user.01JDXYZ-u1"
    assert not subject.startswith("albatross.events.")


def test_stream_filter_covers_both_roots() -> None:
    assert stream_filter(USER_STREAM) == "albatross.*.tenant_1.user.01JDXYZ-u1"


@pytest.mark.parametrize("event", [REGISTERED, PasswordHashSet(user_id="u", password_hash="h")])
def test_stream_of_parses_back(event: Event) -> None:
    assert stream_of(event_subject(USER_STREAM, event)) == USER_STREAM


@pytest.mark.parametrize("subject", [
    "",
    "albatross",
    "albatross.events.t1.user",
    "albatross.events.t1.user.u1.extra",
    "other.events.t1.user.u1",
    "albatross.changes.t1.user.u1",
    "albatross.claims.email.abcdef",
    "albatross.claims.email.abc.def",
    "Albatross.events.t1.user.u1",
])
def test_stream_of_refuses_non_event_subjects(subject: str) -> None:
    with pytest.raises(DecodeError):
        stream_of(subject)


@pytest.mark.parametrize("subject", [
    "albatross.events.t1.user.*",
    "albatross.events.t1.user.>",
    "albatross.events.*.user.u1",
    "albatross.events.t1.>.u1",
    "albatross.events..user.u1",
    "albatross.events.t1.user.",
    "albatross.events.t1.user.u 1",
    "albatross.secrets.t1.us%er.u1",
])
def test_stream_of_refuses_bad_tokens(subject: str) -> None:
    with pytest.raises(InvalidStreamId):
        stream_of(subject)


def test_claim_subject_hashes_the_value() -> None:
    email = "pilot+va@example.com"
    subject = claim_subject(Claim("email", email))
    assert subject == "albatross.claims.email." + hashlib.sha256(email.encode()).hexdigest()
    assert email not in subject
    assert "pilot" not in subject
    assert "example" not in subject
    assert claim_subject(Claim("email", email)) == subject
    assert claim_subject(Claim("email", "other@example.com")) != subject
    assert claim_subject(Claim("icao", email)) != subject


@pytest.mark.parametrize("value", ["a.b.c", "*", ">", "with space", "ünïcödé", "x" * 1000, ""])
def test_claim_subject_is_one_safe_token_whatever_the_value(value: str) -> None:
    prefix, kind, digest = claim_subject(Claim("email", value)).rsplit(".", 2)
    assert (prefix, kind) == ("albatross.claims", "email")
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


# Stream ids -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "a.b", "a*", "*", ">", "a>", "a b", " a", "\na", "a\rb",
                                 "é", "a/b", "a\x00", "x" * 65])
@pytest.mark.parametrize("field", ["aggregate", "aggregate_id", "scope"])
def test_stream_id_refuses_what_is_not_one_subject_token(field: str, bad: str) -> None:
    fields = {"aggregate": "user", "aggregate_id": "u1", "scope": "t1", field: bad}
    with pytest.raises(InvalidStreamId):
        StreamId(**fields)


@pytest.mark.parametrize("field", ["aggregate", "aggregate_id", "scope"])
def test_stream_id_refuses_a_trailing_newline(field: str) -> None:
    fields = {"aggregate": "user", "aggregate_id": "u1", "scope": "t1"}
    fields[field] += "\n"
    with pytest.raises(InvalidStreamId):
        StreamId(**fields)


@pytest.mark.parametrize("good", ["a", "01JDXYZ", "0192f1e0-7b1c-7cc3-9d2a-2f1d0a6c1b2e",
                                  "with_underscore", "x" * 64])
def test_stream_id_accepts_uuids_and_ulids(good: str) -> None:
    assert StreamId("user", good, good).key == f"{good}.user.{good}"


@pytest.mark.parametrize("field", ["aggregate", "aggregate_id", "scope"])
@pytest.mark.parametrize("bad", [None, 5])
def test_stream_id_refuses_a_part_that_is_not_a_string(field: str, bad: object) -> None:
    # "5" and "None" are valid tokens: the check must not read them through str().
    fields: dict[str, object] = {"aggregate": "user", "aggregate_id": "u1", "scope": "t1"}
    fields[field] = bad
    with pytest.raises(TypeError):
        StreamId(**fields)  # type: ignore[arg-type]


def test_invalid_stream_id_is_a_value_error() -> None:
    assert issubclass(InvalidStreamId, ValueError)


# Round trips ------------------------------------------------------------------------------

def test_encode_writes_the_envelope() -> None:
    payload = json.loads(CODEC.encode(REGISTERED, AT, "actor-1"))
    assert payload == {"type": "UserRegistered", "schema_version": 1,
                       "occurred_at": "2026-11-26T10:00:00.123456Z", "actor_id": "actor-1",
                       "data": msgspec.to_builtins(REGISTERED)}


@pytest.mark.parametrize("actor", [None, "actor-1"])
def test_round_trip(actor: str | None) -> None:
    details = FlightDetails(flight_number="BAW1", departure="EGLL", arrival="KJFK",
                            block_off_at=AT - timedelta(hours=8),
                            block_on_at=(AT - timedelta(minutes=1)).astimezone(
                                timezone(timedelta(hours=-5))),
                            flight_time_minutes=400, fuel_used_kg=61234.5, remarks="é\n✈")
    for event in (REGISTERED, PirepSubmitted(pirep_id="p", tenant_id="t", pilot_id="u",
                                             details=details),
                  PasswordChanged(user_id="u", must_change_password=True)):
        assert CODEC.decode(CODEC.encode(event, AT, actor)) == (event, AT, actor)


def test_data_of_gives_plain_json_values() -> None:
    name, at, actor, data = CODEC.data_of(CODEC.encode(REGISTERED, AT, None))
    assert (name, at, actor) == ("UserRegistered", AT, None)
    assert data == msgspec.to_builtins(REGISTERED)


# Decoding failures ------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"not json", b"{", b"[]", b"null", b"42", b'"x"',
                                     b"\xff\xfe", b'{"type": "UserRegistered"}'])
def test_bad_json_or_envelope_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(payload)


@pytest.mark.parametrize("overrides", [
    {"type": 1},
    {"schema_version": "1"},
    {"occurred_at": "yesterday"},
    {"occurred_at": None},
    {"actor_id": 5},
])
def test_wrong_envelope_fields_are_a_decode_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(envelope(**overrides))


def test_unknown_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="unknown event type"):
        CODEC.decode(envelope(type="SomethingElse"))


@pytest.mark.parametrize("data", [
    None,
    [],
    "x",
    {},
    {**msgspec.to_builtins(REGISTERED), "role": "Captain"},
    {**msgspec.to_builtins(REGISTERED), "must_change_password": "no"},
    {**msgspec.to_builtins(REGISTERED), "password_hash": "smuggled"},
    {k: v for k, v in msgspec.to_builtins(REGISTERED).items() if k != "email"},
])
def test_wrong_data_is_a_decode_error(data: Any) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(envelope(data=data))


def test_data_of_another_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(envelope(type="PasswordChanged"))


def test_occurred_at_without_offset_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(envelope(occurred_at="2026-11-26T10:00:00"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(payload)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([t.event_type for t in default_registry().types()]), st.integers(0, 3),
       _json)
def test_arbitrary_data_decodes_or_raises_decode_error(name: str, version: int, data: Any) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(envelope(type=name, schema_version=version, data=data))


# Upcasting (a test-only event type and registry) ------------------------------------------

class FlightLogged(Event, frozen=True, kw_only=True):
    """v1 had ``distance_nm`` and ``tail``; v2 stores kilometres and renames the tail."""

    event_type = "TestFlightLogged"
    schema_version = 2
    flight_id: str
    distance_km: float
    registration: str
    logged_at: datetime


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"flight_id": data["flight_id"], "distance_km": data["distance_nm"] * 1.852,
            "registration": data["tail"], "logged_at": data["logged_at"]}


V1_DATA = {"flight_id": "f1", "distance_nm": 100.0, "tail": "G-EUPT",
           "logged_at": "2026-11-26T09:00:00Z"}


def _v(version: int, data: Any = None, name: str = "TestFlightLogged") -> bytes:
    return json.dumps({"type": name, "schema_version": version,
                       "occurred_at": "2026-11-26T10:00:00+00:00", "actor_id": None,
                       "data": V1_DATA if data is None else data}).encode()


def upcasting_codec(**upcasters: Any) -> EventCodec:
    steps = {("TestFlightLogged", 1): _v1_to_v2, **{
        ("TestFlightLogged", int(k[1:])): v for k, v in upcasters.items()}}
    return EventCodec(EventRegistry(FlightLogged), steps)


def test_upcaster_turns_v1_into_v2() -> None:
    event, at, actor = upcasting_codec().decode(_v(1))
    assert event == FlightLogged(flight_id="f1", distance_km=100.0 * 1.852,
                                 registration="G-EUPT",
                                 logged_at=datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    assert at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert actor is None


def test_current_version_needs_no_upcaster() -> None:
    event = FlightLogged(flight_id="f", distance_km=1.5, registration="D-AIMA", logged_at=AT)
    codec = EventCodec(EventRegistry(FlightLogged))  # no upcasters at all
    payload = codec.encode(event, AT, "x")
    assert json.loads(payload)["schema_version"] == 2
    assert codec.decode(payload) == (event, AT, "x")


def test_upcasters_chain_over_several_versions() -> None:
    class FlightLoggedV3(Event, frozen=True, kw_only=True):
        event_type = "TestFlightLogged"
        schema_version = 3
        flight_id: str
        distance_km: float
        registration: str
        logged_at: datetime
        source: str

    codec = EventCodec(EventRegistry(FlightLoggedV3), {
        ("TestFlightLogged", 1): _v1_to_v2,
        ("TestFlightLogged", 2): lambda d: {**d, "source": "migrated"},
    })
    event, _, _ = codec.decode(_v(1))
    assert isinstance(event, FlightLoggedV3)
    assert (event.distance_km, event.source) == (pytest.approx(185.2), "migrated")
    v2 = {"flight_id": "f2", "distance_km": 3.0, "registration": "N1", "logged_at": V1_DATA[
        "logged_at"]}
    event, _, _ = codec.decode(_v(2, v2))
    assert isinstance(event, FlightLoggedV3)
    assert (event.flight_id, event.source) == ("f2", "migrated")


def test_missing_upcaster_is_a_decode_error() -> None:
    codec = EventCodec(EventRegistry(FlightLogged))
    with pytest.raises(DecodeError, match="no upcaster"):
        codec.decode(_v(1))
    with pytest.raises(DecodeError):
        upcasting_codec().decode(_v(0))


@pytest.mark.parametrize("version", [3, 99])
def test_event_newer_than_the_code_is_a_decode_error(version: int) -> None:
    with pytest.raises(DecodeError, match="newer"):
        upcasting_codec().decode(_v(version, {"flight_id": "f", "distance_km": 1.0,
                                              "registration": "R", "logged_at": V1_DATA[
                                                  "logged_at"]}))


def test_upcaster_output_is_validated() -> None:
    codec = upcasting_codec()
    with pytest.raises(DecodeError):  # the upcast registration is not a string
        codec.decode(_v(1, {**V1_DATA, "tail": 7}))
    leaky = EventCodec(EventRegistry(FlightLogged),
                       {("TestFlightLogged", 1): lambda d: {**_v1_to_v2(d), "extra": 1}})
    with pytest.raises(DecodeError):
        leaky.decode(_v(1))


def test_upcaster_is_not_applied_to_current_versions() -> None:
    calls: list[Any] = []

    def spy(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(data)
        return _v1_to_v2(data)

    codec = EventCodec(EventRegistry(FlightLogged), {("TestFlightLogged", 1): spy})
    event = FlightLogged(flight_id="f", distance_km=1.0, registration="R", logged_at=AT)
    assert codec.decode(codec.encode(event, AT, None))[0] == event
    assert calls == []
    codec.decode(_v(1))
    assert calls == [V1_DATA]


@pytest.mark.parametrize("data", [42, [], {}, {"flight_id": "f"}])
def test_malformed_old_data_is_a_decode_error(data: Any) -> None:
    with pytest.raises(DecodeError):
        upcasting_codec().decode(_v(1, data))


def test_registry_refuses_two_classes_with_one_name() -> None:
    class Impostor(Event, frozen=True, kw_only=True):
        event_type = "TestFlightLogged"

    registry = EventRegistry(FlightLogged)
    registry.register(FlightLogged)  # the same class again is fine
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Impostor)


def test_envelope_is_the_contract_shape() -> None:
    assert [f.name for f in msgspec.structs.fields(Envelope)] == [
        "type", "schema_version", "occurred_at", "actor_id", "data"]
