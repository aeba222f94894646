"""Format and range rules shared by the aggregates (pure functions, no I/O)."""

from __future__ import annotations

import re
from typing import Final, Literal

from albatross.domain.errors import FieldError

Role = Literal["PlatformAdmin", "TenantAdmin", "Pilot"]
ROLES: Final = ("PlatformAdmin", "TenantAdmin", "Pilot")

PirepStatus = Literal["pending", "accepted", "rejected"]
PirepSource = Literal["manual", "acars", "api"]
PIREP_SOURCES: Final = ("manual", "acars", "api")

PASSWORD_MIN: Final = 12
PASSWORD_MAX: Final = 256
NAME_MAX: Final = 100
TEXT_MAX: Final = 2000

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(
    rf"^(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
TENANT_ICAO: Final = re.compile(r"^[A-Z]{3}$")
TENANT_IATA: Final = re.compile(r"^[A-Z0-9]{2}$")
AIRPORT_ICAO: Final = re.compile(r"^[A-Z]{4}$")
AIRCRAFT_TYPE: Final = re.compile(r"^[A-Z0-9]{2,4}$")
FLIGHT_NUMBER: Final = re.compile(r"^[A-Z0-9]{1,10}$")
REGISTRATION: Final = re.compile(r"^[A-Z0-9](?:[A-Z0-9-]{0,8}[A-Z0-9])?$")
# Character classes written so that Python's re and JSON Schema's (ECMA-262) regular
# expressions read them alike: the OpenAPI document states these rules with them.
# C0 control characters other than tab and line feed, which free text may hold.
CONTROL_CHARACTERS: Final = r"\x00-\x08\x0b-\x1f"
# Exactly what ``str.isspace`` (so ``str.strip``) takes for white space, which a blank
# name consists of (ECMA-262's ``\s`` differs: no U+001C-U+001F or U+0085, but U+FEFF).
WHITESPACE: Final = (r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029"
                     r"\u202f\u205f\u3000")
_CONTROL: Final = re.compile(f"[{CONTROL_CHARACTERS}]")


def normalise_email(email: str) -> str:
    """Emails compare case-insensitively: this is the form stored and claimed."""
    return email.strip().lower()


def email_errors(field: str, email: str) -> list[FieldError]:
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        return [FieldError(field, "must be a valid email address")]
    return []


def password_errors(field: str, password: str) -> list[FieldError]:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return [FieldError(field, f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")]
    return []


def text_errors(field: str, value: str | None, *, required: bool, max_len: int) -> list[FieldError]:
    if value is None:
        return [FieldError(field, "is required")] if required else []
    if required and not value.strip():
        return [FieldError(field, "must not be blank")]
    if len(value) > max_len:
        return [FieldError(field, f"must be at most {max_len} characters long")]
    if _CONTROL.search(value):
        return [FieldError(field, "must not contain control characters")]
    return []


def pattern_errors(field: str, value: str | None, pattern: re.Pattern[str], message: str,
                   *, required: bool = True) -> list[FieldError]:
    if value is None:
        return [FieldError(field, "is required")] if required else []
    if not pattern.fullmatch(value):
        return [FieldError(field, message)]
    return []


def range_errors(field: str, value: float | None, low: float, high: float) -> list[FieldError]:
    if value is None:
        return []
    if not low <= value <= high:
        return [FieldError(field, f"must be between {low:g} and {high:g}")]
    return []
