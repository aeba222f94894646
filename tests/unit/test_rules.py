"""The shared format and range rules (albatross.domain.rules): pure functions, no I/O."""

from __future__ import annotations

import math

import pytest

from albatross.domain.errors import FieldError, ValidationFailed, raise_if_any
from albatross.domain.rules import (
    AIRCRAFT_TYPE,
    AIRPORT_ICAO,
    FLIGHT_NUMBER,
    NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    REGISTRATION,
    ROLES,
    TENANT_IATA,
    TENANT_ICAO,
    TEXT_MAX,
    email_errors,
    normalise_email,
    password_errors,
    pattern_errors,
    range_errors,
    text_errors,
)


def _email_ok(email: str) -> bool:
    return email_errors("email", email) == []


def _long_email(total: int) -> str:
    """A well-formed address of exactly ``total`` characters (labels of at most 63)."""
    local = "a" * 64
    remaining = total - len(local) - 1 - len(".com")
    labels = []
    while remaining > 0:
        size = min(63, remaining)
        if remaining - size == 1:  # never leave a single char that needs a dot of its own
            size -= 2
        labels.append("b" * size)
        remaining -= size + 1
    domain = ".".join(labels) + ".com"
    email = f"{local}@{domain}"
    assert len(email) == total, (len(email), total)
    return email


# Emails -----------------------------------------------------------------------------------

@pytest.mark.parametrize("email", [
    "pilot@example.com",
    "Pilot.Name@Example.COM",
    "first.last@mail.example.co.uk",
    "pilot+albatross@example.com",
    "pilot+tag+more@sub.domain.example.org",
    "a@b.io",
    "o'brien@example.ie",
    "user_name-1@my-airline.aero",
    "1234567890@example.com",
])
def test_email_accepts_normal_addresses(email: str) -> None:
    assert _email_ok(email)


@pytest.mark.parametrize("email", [
    "",
    "pilot",
    "pilot.example.com",
    "pilot@",
    "@example.com",
    "pilot@@example.com",
    "pi@lot@example.com",
    "pilot @example.com",
    "pilot@ example.com",
    " pilot@example.com",
    "pilot@example.com ",
    "pi lot@example.com",
    "pilot@exa mple.com",
    "pilot\t@example.com",
    "pilot..name@example.com",
    "pilot@example..com",
    "pilot@.example.com",
    "pilot@example.com.",
    "pilot@example",
    "pilot@-example.com",
    "pilot@example-.com",
    "pilot@exam_ple.com",
    "pilot@[127.0.0.1]",
    "pilot(comment)@example.com",
    "pilot,x@example.com",
    "pilöt@example.com",
    "a" * 65 + "@example.com",
])
def test_email_refuses_malformed_addresses(email: str) -> None:
    assert email_errors("email", email) == [FieldError("email", "must be a valid email address")]


def test_email_length_limit_is_254_characters() -> None:
    assert _email_ok(_long_email(254))
    assert not _email_ok(_long_email(255))
    assert not _email_ok(_long_email(300))


def test_email_error_names_the_field() -> None:
    assert [e.field for e in email_errors("contact", "nope")] == ["contact"]


@pytest.mark.parametrize("email", [".pilot@example.com", "pilot.@example.com"])
def test_email_refuses_a_dot_at_either_end_of_the_local_part(email: str) -> None:
    assert not _email_ok(email)


def test_normalise_email_lowercases_and_strips() -> None:
    assert normalise_email("  Pilot+X@Example.COM ") == "pilot+x@example.com"
    assert normalise_email("pilot@example.com") == "pilot@example.com"


# Passwords --------------------------------------------------------------------------------

def test_password_bounds_are_12_and_256() -> None:
    assert (PASSWORD_MIN, PASSWORD_MAX) == (12, 256)


@pytest.mark.parametrize("length", [12, 13, 100, 255, 256])
def test_password_within_bounds_is_accepted(length: int) -> None:
    assert password_errors("password", "x" * length) == []


@pytest.mark.parametrize("length", [0, 1, 11, 257, 1000])
def test_password_out_of_bounds_is_refused(length: int) -> None:
    errors = password_errors("new_password", "x" * length)
    assert [e.field for e in errors] == ["new_password"]
    assert "12" in errors[0].message
    assert "256" in errors[0].message


def test_password_length_counts_characters_not_bytes() -> None:
    assert password_errors("password", "é" * 12) == []  # 24 bytes in UTF-8, 12 characters
    assert password_errors("password", "✈" * 11) != []


# Free text --------------------------------------------------------------------------------

def test_text_required_refuses_missing_and_blank() -> None:
    assert text_errors("name", None, required=True, max_len=10) == [
        FieldError("name", "is required")]
    assert [e.field for e in text_errors("name", "   ", required=True, max_len=10)] == ["name"]
    assert [e.field for e in text_errors("name", "", required=True, max_len=10)] == ["name"]


def test_text_optional_accepts_missing_and_empty() -> None:
    assert text_errors("route", None, required=False, max_len=10) == []
    assert text_errors("route", "", required=False, max_len=10) == []


def test_text_max_length_is_inclusive() -> None:
    assert text_errors("name", "x" * NAME_MAX, required=True, max_len=NAME_MAX) == []
    assert text_errors("name", "x" * (NAME_MAX + 1), required=True, max_len=NAME_MAX) != []


@pytest.mark.parametrize("value", ["a\x00b", "a\rb", "\x1b[31m", "a\x07"])
def test_text_refuses_control_characters(value: str) -> None:
    assert [e.field for e in text_errors("remarks", value, required=False, max_len=99)] == [
        "remarks"]


def test_text_accepts_newlines_tabs_and_unicode() -> None:
    assert text_errors("remarks", "line 1\n\tline 2 ✈ Zürich", required=False, max_len=99) == []


def test_text_refuses_exactly_the_c0_controls_but_tab_and_line_feed() -> None:
    refused = {code for code in range(0x250)
               if text_errors("remarks", f"a{chr(code)}b", required=False, max_len=99)}
    assert refused == set(range(32)) - {ord("\t"), ord("\n")}


def test_text_check_scans_a_long_text_anywhere() -> None:
    # One regular-expression search over the whole text (a loop per character took ~100 us
    # for a 2,000-character remark): a control character at either end is found.
    text = "x" * (TEXT_MAX - 1)
    assert text_errors("remarks", text + "\n", required=False, max_len=TEXT_MAX) == []
    assert text_errors("remarks", text + "\x1f", required=False, max_len=TEXT_MAX) != []
    assert text_errors("remarks", "\x1f" + text, required=False, max_len=TEXT_MAX) != []


# Patterns ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "good", "bad"), [
    (TENANT_ICAO, ["BAW", "DLH", "AAA", "ZZZ"], ["", "BA", "BAWX", "baw", "Baw", "B4W", "BA ",
                                                 "ÄBC", "B-W"]),
    (TENANT_IATA, ["BA", "LH", "U2", "9W", "00"], ["", "B", "BAW", "b2", "B-", "B ", "²2"]),
    (AIRPORT_ICAO, ["EGLL", "KJFK", "LFPG"], ["", "EGL", "EGLLX", "egll", "EG1L", "EG L"]),
    (AIRCRAFT_TYPE, ["A320", "B77W", "C1", "A38", "DH8D"], ["", "A", "A3201", "a320", "A-20",
                                                            "A 20"]),
    (FLIGHT_NUMBER, ["BAW123", "1", "ABCDEFGHIJ", "U21234", "123"], ["", "ABCDEFGHIJK",
                                                                      "BA 123", "BA-1",
                                                                      "baw123", "BA/1"]),
    (REGISTRATION, ["G-EUPT", "N12345", "D-AIMA", "JA8089", "A"], ["", "-GEUPT", "GEUPT-",
                                                                   "g-eupt", "G EUPT",
                                                                   "ABCDEFGHIJK"]),
])
def test_patterns(pattern, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert pattern_errors("f", value, pattern, "msg") == [], value
    for value in bad:
        assert pattern_errors("f", value, pattern, "msg") == [FieldError("f", "msg")], value


@pytest.mark.parametrize(("pattern", "value"), [
    (TENANT_ICAO, "BAW\n"),
    (TENANT_IATA, "BA\n"),
    (AIRPORT_ICAO, "EGLL\n"),
    (AIRCRAFT_TYPE, "A320\n"),
    (FLIGHT_NUMBER, "BAW1\n"),
    (REGISTRATION, "G-EUPT\n"),
    (None, "pilot@example.com\n"),
])
def test_patterns_refuse_a_trailing_newline(pattern, value: str) -> None:
    if pattern is None:
        assert not _email_ok(value)
    else:
        assert pattern_errors("f", value, pattern, "msg") != []


def test_pattern_required_and_optional_absent_values() -> None:
    assert pattern_errors("icao", None, TENANT_ICAO, "msg") == [FieldError("icao", "is required")]
    assert pattern_errors("iata", None, TENANT_IATA, "msg", required=False) == []


# Ranges -----------------------------------------------------------------------------------

def test_range_is_inclusive_and_skips_missing() -> None:
    assert range_errors("x", None, 0, 10) == []
    assert range_errors("x", 0, 0, 10) == []
    assert range_errors("x", 10, 0, 10) == []
    assert range_errors("x", 5.5, 0, 10) == []
    assert [e.field for e in range_errors("x", -0.001, 0, 10)] == ["x"]
    assert [e.field for e in range_errors("x", 10.001, 0, 10)] == ["x"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_range_refuses_non_finite_numbers(value: float) -> None:
    assert range_errors("x", value, -1e9, 1e9) != []


# Errors -----------------------------------------------------------------------------------

def test_raise_if_any_carries_every_error() -> None:
    raise_if_any([])
    errors = [FieldError("a", "bad"), FieldError("b", "worse")]
    with pytest.raises(ValidationFailed) as caught:
        raise_if_any(errors)
    assert caught.value.errors == errors
    assert caught.value.code == "validation_failed"


def test_roles_are_the_contract_strings() -> None:
    assert ROLES == ("PlatformAdmin", "TenantAdmin", "Pilot")
