"""Decoding requests and encoding responses: JSON bodies, query parameters, headers."""

from __future__ import annotations

import re
from typing import Any, TypeVar, get_args

import msgspec
from aiohttp import hdrs, web
from multidict import istr

from albatross.services.gateway.problems import ApiError
from albatross.services.gateway.schemas import FieldProblem

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
_PATH = re.compile(r"at `\$\.?([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
# One entity tag of ours: a version in quotes (bare digits are taken too). Weak tags (W/"3")
# are recognised to be refused: If-Match compares strongly (RFC 9110 13.1.1).
_ENTITY_TAG = re.compile(r'\s*(W/)?("?)([0-9]{1,18})\2\s*')
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


_TYPED_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


def _typed_decoder(struct: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _TYPED_DECODERS.get(struct)
    if decoder is None:
        config = getattr(struct, "__struct_config__", None)
        if config is None or not config.forbid_unknown_fields:
            raise TypeError(f"{struct.__name__} must forbid unknown fields")
        decoder = _TYPED_DECODERS[struct] = msgspec.json.Decoder(struct)
    return decoder


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json"))


async def decode_body(request: web.Request, struct: type[T]) -> T:
    """The request body as ``struct``: 400 for bad JSON / content type, 422 for bad values."""
    # The header exactly as nearly every client sends it is taken as it is: aiohttp's parsed
    # content_type (parameters, case) costs ~2 us per request and is needed only otherwise.
    if (request.headers.get("Content-Type") != "application/json"
            and not is_json(request.content_type)):
        raise ApiError("malformed_request", "the body must be application/json")
    raw = await request.read()
    try:
        # Bodies are overwhelmingly valid: one typed decode (the input structs forbid unknown
        # fields) answers them; anything it refuses is decoded again below for the details.
        return _typed_decoder(struct).decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        pass
    try:
        value: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise ApiError("malformed_request", "the body is not valid JSON") from None
    except UnicodeDecodeError:  # msgspec's error for a string that is not UTF-8
        raise ApiError("malformed_request", "the body is not valid UTF-8") from None
    except RecursionError:  # ~1,000 nested arrays or objects: 2 KB of brackets
        raise ApiError("malformed_request", "the body nests too deeply") from None
    if not isinstance(value, dict):
        raise ApiError("validation_failed", "the body must be a JSON object",
                       errors=[FieldProblem(field="", message="must be an object")])
    known = set(getattr(struct, "__struct_encode_fields__", ()))
    unknown = sorted(k for k in value if k not in known)
    if unknown:
        raise ApiError("validation_failed", "the body has unknown fields",
                       errors=[FieldProblem(field=k[:100], message="is not a known field")
                               for k in unknown[:20]])
    try:
        return msgspec.convert(value, struct)
    except msgspec.ValidationError as exc:
        raise ApiError("validation_failed", "the request is not valid",
                       errors=[field_problem(str(exc))]) from None


def field_problem(message: str) -> FieldProblem:
    """msgspec's "Expected `str`, got `int` - at `$.email`" as ``{field, message}``."""
    unknown = _UNKNOWN.search(message)
    if unknown:
        return FieldProblem(field=unknown.group(1), message="is not a known field")
    text, _, _where = message.partition(" - at `")
    match = _PATH.search(message)
    path = match.group(1) if match else ""
    if text.startswith("Object missing required field"):
        missing = re.search(r"`([^`]*)`", text)
        field = f"{path}.{missing.group(1)}" if path and missing else (
            missing.group(1) if missing else path)
        return FieldProblem(field=field, message="is required")
    return FieldProblem(field=path, message=text)


# An API answer holds one principal's view (emails, API keys, PIREPs) and was authorised for
# that request only: no browser or proxy may keep a copy (OWASP ASVS 8.2.1).
_NOT_STORED: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store"}
_JSON_NOT_STORED: dict[str, str] = {hdrs.CONTENT_TYPE: "application/json", **_NOT_STORED}
# Header names on the answers' hot path are multidict's istr, like aiohttp's hdrs constants:
# a response's case-insensitive headers then take a name without folding its case again
# (half the cost of building them from plain strings).
SEQUENCE = istr("Albatross-Sequence")


def json_response(value: object, *, status: int = 200, sequence: int | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {**_JSON_NOT_STORED, **headers} if headers else dict(_JSON_NOT_STORED)
    if sequence is not None:
        all_headers[SEQUENCE] = str(sequence)
    # Content-Type among the headers: aiohttp's content_type argument costs a parse per answer.
    return web.Response(body=_encode(value), status=status, headers=all_headers)


def none_match(request: web.Request, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag``: RFC 9110 compares weakly here (``W/"3"``
    matches ``"3"``) and ``*`` matches any current representation."""
    raw = request.headers.get("If-None-Match")
    if raw is None:
        return False
    return any(tag == "*" or tag.removeprefix("W/") == etag
               for tag in (part.strip() for part in raw.split(",")))


def not_modified(etag: str) -> web.Response:
    """304: the client's copy is current (RFC 9110 asks for the 200's ETag and caching
    headers on it, and no body)."""
    return web.Response(status=304, headers={hdrs.ETAG: etag, **_NOT_STORED})


def no_content(sequence: int) -> web.Response:
    return web.Response(status=204, headers={SEQUENCE: str(sequence)})


def path_id(request: web.Request, name: str) -> str:
    return request.match_info[name]


def query_str(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > 200:
        raise ApiError("validation_failed", f"{name} is too long",
                       errors=[FieldProblem(field=name, message="is too long")])
    return value


def query_choice(request: web.Request, name: str, literal: Any) -> Any:
    value = query_str(request, name)
    choices = get_args(literal)
    if value is not None and value not in choices:
        raise ApiError("validation_failed", f"{name} is not valid",
                       errors=[FieldProblem(field=name,
                                            message=f"must be one of {', '.join(choices)}")])
    return value


def ascii_number(raw: str, max_digits: int) -> int | None:
    """``raw`` as an integer if it is 1 to ``max_digits`` ASCII digits, else None.

    ``str.isdigit`` alone also accepts "²" (which ``int()`` refuses) and other scripts'
    digits (which it reads), and ``int()`` refuses more than 4,300 digits.
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= max_digits:
        return int(raw)
    return None


def page_params(request: web.Request) -> tuple[int, str | None]:
    raw = request.query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        number = ascii_number(raw, 6)
        if number is None or not 1 <= number <= MAX_LIMIT:
            raise ApiError("validation_failed", "limit must be 1..200",
                           errors=[FieldProblem(field="limit",
                                                message=f"must be an integer 1..{MAX_LIMIT}")])
        limit = number
    return limit, query_str(request, "cursor")


def if_match_versions(request: web.Request) -> frozenset[int] | None:
    """The versions ``If-Match`` accepts; None for no condition (absent, or ``*``: any
    current PIREP, and a missing one is 404 first). A weak tag, or one we never issued,
    matches nothing (so a header of only those fails with 412)."""
    fields = request.headers.getall(hdrs.IF_MATCH, ())
    if not fields:
        return None
    tags = [tag for field in fields for tag in field.split(",")]
    if [tag.strip() for tag in tags] == ["*"]:
        return None
    versions = set()
    for tag in tags:
        match = _ENTITY_TAG.fullmatch(tag)
        if match is not None and match.group(1) is None:
            versions.add(int(match.group(3)))
    return frozenset(versions)


def idempotency_key(request: web.Request) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not 1 <= len(raw) <= 255 or not raw.isprintable():
        raise ApiError("validation_failed", "Idempotency-Key is not valid",
                       errors=[FieldProblem(field="Idempotency-Key",
                                            message="must be 1 to 255 printable characters")])
    return raw
