"""The Tenant aggregate: creation rules and state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from albatross.domain.aggregates import TENANT
from albatross.domain.errors import Conflict, ValidationFailed
from albatross.domain.pireps import PirepAccepted
from albatross.domain.tenants import CreateTenant, Tenant, TenantCreated, decide_create, evolve

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def create(**overrides: object) -> CreateTenant:
    fields: dict[str, object] = {"tenant_id": "t1", "name": "Speedbird Virtual", "icao": "BAW",
                                 "iata": "BA"}
    fields.update(overrides)
    return CreateTenant(**fields)  # type: ignore[arg-type]


def refused_fields(cmd: CreateTenant) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        decide_create(None, cmd)
    return [e.field for e in caught.value.errors]


def test_create_produces_one_public_event() -> None:
    events = decide_create(None, create())
    assert events == [TenantCreated(tenant_id="t1", name="Speedbird Virtual", icao="BAW",
                                    iata="BA")]
    assert not events[0].secret


def test_create_state_has_created_at_from_the_event_time() -> None:
    state = TENANT.fold(None, [(e, NOW) for e in decide_create(None, create())])
    assert state == Tenant(tenant_id="t1", name="Speedbird Virtual", icao="BAW", iata="BA",
                           created_at=NOW)


def test_iata_is_optional() -> None:
    (event,) = decide_create(None, create(iata=None))
    assert isinstance(event, TenantCreated)
    assert event.iata is None


def test_name_is_stripped() -> None:
    (event,) = decide_create(None, create(name="  Speedbird  "))
    assert isinstance(event, TenantCreated)
    assert event.name == "Speedbird"


@pytest.mark.parametrize("icao", ["BAW", "DLH", "ZZZ"])
def test_icao_three_capital_letters_accepted(icao: str) -> None:
    assert decide_create(None, create(icao=icao))


@pytest.mark.parametrize("icao", ["", "BA", "BAWX", "baw", "B4W", "B W", "BÄW", "123"])
def test_icao_other_than_three_letters_refused(icao: str) -> None:
    assert refused_fields(create(icao=icao)) == ["icao"]


@pytest.mark.parametrize("iata", ["BA", "U2", "9W", "00"])
def test_iata_two_alphanumerics_accepted(iata: str) -> None:
    assert decide_create(None, create(iata=iata))


@pytest.mark.parametrize("iata", ["", "B", "BAW", "B-", "B ", "--"])
def test_iata_other_than_two_alphanumerics_refused(iata: str) -> None:
    assert refused_fields(create(iata=iata)) == ["iata"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bad\x00name"])
def test_bad_name_refused(name: str) -> None:
    assert refused_fields(create(name=name)) == ["name"]


def test_name_of_100_characters_accepted() -> None:
    assert decide_create(None, create(name="x" * 100))


def test_every_invalid_field_is_reported_at_once() -> None:
    assert sorted(refused_fields(create(name="", icao="b", iata="???"))) == [
        "iata", "icao", "name"]


def test_create_twice_is_a_conflict() -> None:
    state = TENANT.fold(None, [(e, NOW) for e in decide_create(None, create())])
    with pytest.raises(Conflict):
        decide_create(state, create())
    with pytest.raises(Conflict):
        decide_create(state, create(name="Other", icao="DLH"))


def test_evolve_ignores_foreign_events() -> None:
    state = Tenant(tenant_id="t1", name="n", icao="BAW", iata=None, created_at=NOW)
    other = PirepAccepted(pirep_id="p", reviewed_by="u", comment=None)
    assert evolve(state, other, NOW) is state
    assert evolve(None, other, NOW) is None
