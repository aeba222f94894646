"""The committed JSON Schemas / AsyncAPI document: generated from the code, and in step with it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml

from albatross import schemas_cli
from albatross.adapters.codec import EventCodec, event_subject
from albatross.domain.aggregates import default_registry
from albatross.domain.events import Event
from albatross.domain.pireps import FlightDetails, PirepAccepted, PirepRejected, PirepSubmitted
from albatross.domain.tenants import TenantCreated
from albatross.domain.users import (
    ApiKeyCreated,
    ApiKeyHashIssued,
    ApiKeyRevoked,
    ApiKeyUsed,
    PasswordChanged,
    PasswordHashSet,
    SessionsRevoked,
    UserRegistered,
)
from albatross.ports import StreamId

COMMITTED = Path(__file__).resolve().parents[2] / "schemas"
REGISTRY = default_registry()
CODEC = EventCodec(REGISTRY)
AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

SAMPLES: dict[str, Event] = {e.event_type: e for e in [
    TenantCreated(tenant_id="t1", name="Speedbird", icao="BAW", iata="BA"),
    UserRegistered(user_id="u1", email="p@example.com", display_name="P", role="Pilot",
                   tenant_id="t1", must_change_password=True),
    PasswordChanged(user_id="u1", must_change_password=False),
    ApiKeyCreated(user_id="u1", key_id="k1", name="ACARS", prefix="alb_ab12"),
    ApiKeyRevoked(user_id="u1", key_id="k1"),
    ApiKeyUsed(user_id="u1", key_id="k1", used_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
    PasswordHashSet(user_id="u1", password_hash="$argon2id$..."),
    ApiKeyHashIssued(user_id="u1", key_id="k1", key_hash="sha256:..."),
    SessionsRevoked(user_id="u1", keep_session_id="s1"),
    PirepSubmitted(pirep_id="p1", tenant_id="t1", pilot_id="u1", details=FlightDetails(
        flight_number="BAW1", departure="EGLL", arrival="KJFK", block_off_at=AT,
        block_on_at=AT + timedelta(hours=8), flight_time_minutes=450, aircraft_type="B77W",
        fuel_used_kg=60_000.0, source="acars")),
    PirepAccepted(pirep_id="p1", reviewed_by="a1", comment=None),
    PirepRejected(pirep_id="p1", reviewed_by="a1", comment="no"),
]}


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file()}


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((COMMITTED / "events" / f"{name}.json").read_text())
    return schema


def payload(event: Event, actor: str | None = "actor-1") -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(CODEC.encode(event, AT, actor))
    return decoded


# Drift ------------------------------------------------------------------------------------

def test_committed_schemas_are_what_the_code_generates(tmp_path: Path) -> None:
    assert schemas_cli.main(["--out", str(tmp_path)]) == 0
    generated = tree(tmp_path)
    committed = {k: v for k, v in tree(COMMITTED).items()
                 if k in generated or k.startswith("events/") or k in {
                     "envelope.json", "asyncapi.yaml"}}
    assert sorted(committed) == sorted(generated), (
        "schemas/ is stale: run `python -m albatross.schemas_cli`")
    for path, text in generated.items():
        assert committed[path] == text, (
            f"schemas/{path} is stale: run `python -m albatross.schemas_cli`")


def test_check_passes_on_the_committed_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas_cli.main(["--check", "--out", str(COMMITTED)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_every_registered_event_type_has_a_schema_file() -> None:
    names = {t.event_type for t in REGISTRY.types()}
    files = {p.stem for p in (COMMITTED / "events").glob("*.json")}
    assert files == names
    assert set(SAMPLES) == names, "add a sample of the new event type to SAMPLES"


def test_output_is_deterministic_sorted_and_indented(tmp_path: Path) -> None:
    first = schemas_cli.generate()
    assert schemas_cli.generate() == first
    for path, text in first.items():
        assert text.endswith("\n")
        assert not text.endswith("\n\n")
        if path.endswith(".json"):
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True,
                                      ensure_ascii=False) + "\n", path


# --check ----------------------------------------------------------------------------------

def test_check_reports_differing_missing_and_extra_files_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas_cli.main(["--out", str(tmp_path)]) == 0
    capsys.readouterr()
    changed = tmp_path / "events" / "TenantCreated.json"
    changed.write_text(changed.read_text().replace('"icao"', '"icao_code"'))
    (tmp_path / "envelope.json").unlink()
    stray = tmp_path / "events" / "GoneEvent.json"
    stray.write_text("{}\n")
    before = tree(tmp_path)

    assert schemas_cli.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"differs: {tmp_path / 'events' / 'TenantCreated.json'}" in err
    assert f"missing: {tmp_path / 'envelope.json'}" in err
    assert f"extra: {tmp_path / 'events' / 'GoneEvent.json'}" in err
    assert "UserRegistered" not in err
    assert tree(tmp_path) == before  # --check wrote nothing

    assert schemas_cli.main(["--out", str(tmp_path)]) == 0  # regenerating repairs all three
    assert not stray.exists()
    assert schemas_cli.main(["--check", "--out", str(tmp_path)]) == 0


def test_check_of_an_empty_directory_lists_every_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas_cli.main(["--check", "--out", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    # events, envelope + asyncapi, 4 change entities, 3 WebSocket messages
    assert err.count("missing:") == len(REGISTRY.types()) + 2 + 4 + 3
    assert not (tmp_path / "nothing").exists()


def test_check_leaves_files_it_does_not_own_alone(tmp_path: Path) -> None:
    assert schemas_cli.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "README.md").write_text("hand-written\n")
    assert schemas_cli.main(["--check", "--out", str(tmp_path)]) == 0
    assert schemas_cli.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").exists()


# The schemas describe real messages --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_schema_is_valid_json_schema_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("actor", ["actor-1", None])
def test_schema_validates_a_real_encoded_event(name: str, actor: str | None) -> None:
    validator = jsonschema.Draft202012Validator(load_schema(name))
    message = payload(SAMPLES[name], actor)
    validator.validate(message)
    envelope = json.loads((COMMITTED / "envelope.json").read_text())
    jsonschema.Draft202012Validator(envelope).validate(message)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_schema_rejects_what_the_codec_rejects(name: str) -> None:
    validator = jsonschema.Draft202012Validator(load_schema(name))
    good = payload(SAMPLES[name])

    def refused(message: dict[str, Any]) -> bool:
        return not validator.is_valid(message)

    unknown_field = copy.deepcopy(good)
    unknown_field["data"]["password"] = "hunter2hunter2"
    assert refused(unknown_field)

    other = "UserRegistered" if name != "UserRegistered" else "TenantCreated"
    assert refused({**good, "type": other})
    assert refused({**good, "schema_version": SAMPLES[name].schema_version + 1})
    assert refused({k: v for k, v in good.items() if k != "data"})
    assert refused({**good, "data": None})
    first_field = next(iter(good["data"]))
    assert refused({**good, "data": {k: v for k, v in good["data"].items()
                                     if k != first_field}})


def test_nested_details_follow_the_pirep_input() -> None:
    validator = jsonschema.Draft202012Validator(load_schema("PirepSubmitted"))
    good = payload(SAMPLES["PirepSubmitted"])
    bad = copy.deepcopy(good)
    bad["data"]["details"]["source"] = "telepathy"
    assert not validator.is_valid(bad)
    bad = copy.deepcopy(good)
    bad["data"]["details"]["flight_time_minutes"] = "long"
    assert not validator.is_valid(bad)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_schema_names_the_subject_the_event_is_published_on(name: str) -> None:
    schema = load_schema(name)
    stream = StreamId(schema["x-albatross-aggregate"], "ID", "SCOPE")
    subject = event_subject(stream, SAMPLES[name])
    assert schema["x-albatross-subject"].format(scope="SCOPE", id="ID") == subject
    assert schema["x-albatross-secret"] is SAMPLES[name].secret


def _property_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        properties = node.get("properties")
        names = set(properties) if isinstance(properties, dict) else set()
        return names | {n for v in node.values() for n in _property_names(v)}
    if isinstance(node, list):
        return {n for v in node for n in _property_names(v)}
    return set()


def test_no_public_schema_has_a_hash_or_password_field() -> None:
    for event_type in REGISTRY.types():
        names = _property_names(load_schema(event_type.event_type)) - {"must_change_password"}
        leaks = any("hash" in n or "password" in n for n in names)
        if event_type.event_type in {"PasswordHashSet", "ApiKeyHashIssued"}:
            assert leaks
        elif not event_type.secret:
            assert not leaks, event_type.event_type


# AsyncAPI ---------------------------------------------------------------------------------

def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMMITTED / "asyncapi.yaml").read_text())
    return document


def test_asyncapi_yaml_parses_to_the_generated_document() -> None:
    assert _asyncapi() == json.loads(json.dumps(schemas_cli.asyncapi_document(REGISTRY)))


def test_yaml_emitter_quotes_what_needs_quoting() -> None:
    document = {"plain": "yes", "no": ["on", "#x", "a: b", "- c", "ü\n\"q\"", 3, True, None],
                "$ref": {}, "empty": [], "nested": [{"a": 1, "b": [{"c": "d"}]}, [1, [2]]]}
    assert yaml.safe_load(schemas_cli.to_yaml(document)) == document


def test_asyncapi_channels_follow_the_contract() -> None:
    document = _asyncapi()
    assert document["asyncapi"].startswith("3.")
    channels = document["channels"]
    assert channels["events"]["address"] == "albatross.events.{scope}.{aggregate}.{id}"
    assert channels["secrets"]["address"] == "albatross.secrets.{scope}.{aggregate}.{id}"
    assert channels["claims"]["address"] == "albatross.claims.{kind}.{hash}"
    for channel in channels.values():
        params = set(channel["parameters"])
        assert params == {p.strip("{}") for p in channel["address"].split(".") if "{" in p}
    public = {t.event_type for t in REGISTRY.types() if not t.secret}
    secret = {t.event_type for t in REGISTRY.types() if t.secret}
    assert set(channels["events"]["messages"]) == public
    assert set(channels["secrets"]["messages"]) == secret
    assert {"name": "restricted"} in channels["secrets"]["tags"]
    assert channels["secrets"]["x-albatross-restricted"] is True
    assert {"name": "internal"} in channels["claims"]["tags"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_asyncapi_references_resolve() -> None:
    document = _asyncapi()
    refs = _refs(document)
    files = {r for r in refs if not r.startswith("#")}
    assert files == ({f"./events/{t.event_type}.json" for t in REGISTRY.types()}
                     | {f"./changes/{e}.json" for e in ("apikey", "pirep", "tenant", "user")})
    for ref in files:
        assert (COMMITTED / ref).is_file(), ref
    for ref in refs:
        if ref.startswith("#/"):
            node: Any = document
            for part in ref[2:].split("/"):
                node = node[part]
            assert isinstance(node, dict), ref
    for name, message in document["components"]["messages"].items():
        if name in SAMPLES:
            headers = message["headers"]["properties"]
            assert headers["Albatross-Event-Type"]["const"] == name
            assert "Nats-Msg-Id" in headers


def test_change_schemas_validate_real_change_messages_and_refuse_a_wrong_shape() -> None:
    from albatross.application.views import ChangeMessage, TenantView

    schema = json.loads((COMMITTED / "changes" / "tenant.json").read_text(encoding="utf-8"))
    view = TenantView(id="t1", name="Speedbird", icao="BAW", iata="BA",
                      created_at=datetime(2026, 11, 26, tzinfo=UTC), pilot_count=2)
    message = json.loads(msgspec.json.encode(ChangeMessage(
        sequence=7, entity="tenant", id="t1", tenant_id="t1", event="TenantCreated", data=view)))
    jsonschema.validate(message, schema)
    assert message["type"] == "change"
    broken = {**message, "data": {**message["data"], "pilot_count": "two"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_websocket_schemas_describe_the_client_messages() -> None:
    auth = json.loads((COMMITTED / "websocket" / "auth.json").read_text(encoding="utf-8"))
    jsonschema.validate({"type": "auth", "token": "albs_x"}, auth)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "auth"}, auth)


def test_a_pirep_body_goes_to_the_domain_as_it_is_and_is_stored_like_flight_details() -> None:
    from albatross.services.gateway.schemas import PirepInput

    body = {"flight_number": "BAW123", "departure": "EGLL", "arrival": "LFPG",
            "block_off_at": "2026-11-26T08:00:00Z", "block_on_at": "2026-11-26T09:30:00Z",
            "flight_time_minutes": 75, "fuel_used_kg": 2500.5, "remarks": "smooth"}
    decoded = msgspec.json.decode(msgspec.json.encode(body), type=PirepInput)
    assert isinstance(decoded, FlightDetails)  # the handler passes it on without a copy
    assert ([f.name for f in msgspec.structs.fields(PirepInput)]
            == [f.name for f in msgspec.structs.fields(FlightDetails)])
    copied = FlightDetails(**msgspec.structs.asdict(decoded))
    stored = [CODEC.encode(PirepSubmitted(pirep_id="p1", tenant_id="t1", pilot_id="u1",
                                          details=details), AT, "u1")
              for details in (decoded, copied)]
    assert stored[0] == stored[1]
