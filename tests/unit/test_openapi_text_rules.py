"""The OpenAPI document states the domain's text rules, and states them exactly."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from albatross.domain.rules import NAME_MAX, TEXT_MAX, WHITESPACE, text_errors
from albatross.services.gateway.openapi import build_openapi
from albatross.services.gateway.routes import OPERATIONS

SCHEMAS = build_openapi(OPERATIONS)["components"]["schemas"]

SAMPLES = ["Speedbird", "", " ", "   ", "\u3000", "\ufeff", "\x85", "\x1c", "a\tb", "a\nb",
           "\t", "\n", "a\x00b", "\x00", "a\x1fb", "x\x0b", "x\r", "\x7f", "é ü ß", "日本航空",
           "\u2028", "a\u2028b", "🛫", "x" * NAME_MAX, "x" * (NAME_MAX + 1)]


def property_schema(model: str, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = SCHEMAS[model]["properties"][name]
    if "anyOf" in schema:  # optional: the string branch
        schema = next(s for s in schema["anyOf"] if s.get("type") == "string")
    return schema


def schema_accepts(schema: dict[str, Any], value: str) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_the_whitespace_class_is_exactly_what_str_strip_removes() -> None:
    whitespace = re.compile(f"[{WHITESPACE}]")
    every = [chr(code) for code in range(0x110000)]
    assert [c for c in every if whitespace.fullmatch(c)] == [c for c in every if c.isspace()]


@pytest.mark.parametrize(("model", "field"), [
    ("TenantInput", "name"), ("UserInput", "display_name"), ("ApiKeyInput", "name")])
def test_a_name_schema_accepts_exactly_what_the_domain_accepts(model: str, field: str) -> None:
    schema = property_schema(model, field)
    for value in SAMPLES:
        domain_accepts = not text_errors(field, value, required=True, max_len=NAME_MAX)
        assert schema_accepts(schema, value) == domain_accepts, repr(value)


@pytest.mark.parametrize(("model", "field"), [
    ("PirepInput", "route"), ("PirepInput", "remarks"), ("ReviewInput", "comment")])
def test_a_free_text_schema_accepts_exactly_what_the_domain_accepts(model: str,
                                                                   field: str) -> None:
    schema = property_schema(model, field)
    for value in [*SAMPLES, "x" * TEXT_MAX, "x" * (TEXT_MAX + 1)]:
        domain_accepts = not text_errors(field, value, required=False, max_len=TEXT_MAX)
        assert schema_accepts(schema, value) == domain_accepts, repr(value)


def test_emails_are_declared_as_such() -> None:
    assert property_schema("UserInput", "email")["format"] == "email"
