"""The OpenAPI 3.1 document, generated from the route table and the handlers' msgspec types."""

from __future__ import annotations

import re
import typing
from typing import Any

import msgspec

from albatross.services.gateway.problems import STATUS_OF, TITLES
from albatross.services.gateway.routes import API, Operation
from albatross.services.gateway.schemas import Problem

REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{([a-z_]+)}")
_ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 64}

_SEQUENCE_HEADER = {"description": "Event-store sequence of the last event appended (0: none). "
                    "Send it back as Albatross-Min-Sequence to read your writes.",
                    "schema": {"type": "integer", "minimum": 0}}
_ETAG_HEADER = {"description": 'The resource\'s version as an entity tag, e.g. "3"',
                "schema": {"type": "string"}}
_RETRY_HEADER = {"description": "Seconds to wait before trying again",
                 "schema": {"type": "integer", "minimum": 1}}
_MIN_SEQUENCE = {"name": "Albatross-Min-Sequence", "in": "header", "required": False,
                 "description": "Answer only once the read models reflect this event-store "
                                "sequence (waits at most 5 s, then 503)",
                 "schema": {"type": "integer", "minimum": 0}}


def build_openapi(operations: tuple[Operation, ...], *, version: str = "1.0.0") -> dict[str, Any]:
    types: list[Any] = [Problem]
    for op in operations:
        types.extend(t for t in (op.response, op.body) if t is not None)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(map(id, types), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        operation = _operation(op, schema_of, operations)
        paths.setdefault(API + op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Albatross API", "version": version,
                 "description": "Multi-tenant platform for virtual airlines. Errors are RFC "
                                "9457 problem+json with a stable `code`; see /api/docs."},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("auth", "tenants", "users", "apikeys", "pireps")],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A session token from /api/auth/login, or an API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def _operation(op: Operation, schema_of: dict[int, Any],
               operations: tuple[Operation, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                           "tags": [op.tag]}
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _ID_SCHEMA}
        for name in _PATH_PARAM.findall(op.path)]
    parameters += [{"name": p.name, "in": "query", "required": False,
                    "description": p.description, "schema": p.schema} for p in op.query]
    if op.method == "GET" and op.auth:
        parameters.append(_MIN_SEQUENCE)
    if op.idempotency_key:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "description": "A retry with the same key by the same user within "
                                          "10 min returns the first result",
                           "schema": {"type": "string", "minLength": 1, "maxLength": 255}})
    if op.cached:
        parameters.append({"name": "Cache-Control", "in": "header", "required": False,
                           "description": "`no-cache` reads the read models now instead of the "
                                          "gateway's copy (kept until the read models change, "
                                          "1 s at most by default; never older than what "
                                          "Albatross-Min-Sequence waits for)",
                           "schema": {"type": "string"}})
    if op.conditional:
        parameters.append({"name": "If-None-Match", "in": "header", "required": False,
                           "description": 'ETags of copies the client holds, e.g. "3": one '
                                          "that is current is answered 304 without a body",
                           "schema": {"type": "string"}})
    if op.if_match:
        parameters.append({"name": "If-Match", "in": "header", "required": False,
                           "description": 'The PIREP versions (ETags) the review applies '
                                          'to, e.g. "3"; compared strongly (a weak tag '
                                          'matches nothing); * for any',
                           "schema": {"type": "string"}})
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": schema_of[id(op.body)]}}}
    out["security"] = [{"bearer": []}, {"apiKey": []}] if op.auth else []
    out["responses"] = _responses(op, schema_of, operations)
    return out


def _responses(op: Operation, schema_of: dict[int, Any],
               operations: tuple[Operation, ...]) -> dict[str, Any]:
    headers: dict[str, Any] = {"Albatross-Sequence": _SEQUENCE_HEADER} if op.is_command else {}
    if op.conditional:
        headers["ETag"] = _ETAG_HEADER
    success: dict[str, Any] = {"description": "Success"}
    if headers:
        success["headers"] = headers
    if op.response is not None:
        success["content"] = {"application/json": {"schema": schema_of[id(op.response)]}}
    links = _links(op, operations)
    if links:
        success["links"] = links
    responses: dict[str, Any] = {str(op.status): success}
    if op.conditional:
        responses["304"] = {"description": "Not modified: If-None-Match names the current "
                                           "version", "headers": {"ETag": _ETAG_HEADER}}
    by_status: dict[int, list[str]] = {}
    implied = ["internal"]
    if op.auth:
        implied += ["unauthorized", "unavailable"]
    if op.auth and op.method != "GET" and op.tag != "auth":
        implied.append("outcome_unknown")  # a command the event store never confirmed
    if op.auth and op.method == "GET":
        implied.append("malformed_request")  # a bad Albatross-Min-Sequence header
    if "{" in op.path:
        implied.append("not_found")
    for code in dict.fromkeys((*op.errors, *implied)):
        by_status.setdefault(STATUS_OF[code], []).append(code)
    if op.method != "GET" or op.body is not None:
        by_status.setdefault(413, ["payload_too_large"])
    for status, codes in sorted(by_status.items()):
        entry: dict[str, Any] = {
            "description": "; ".join(f"`{c}`: {TITLES[c]}" for c in codes),
            "content": {"application/problem+json": {"schema": schema_of[id(Problem)]}}}
        if status in (429, 503, 504):
            entry["headers"] = {"Retry-After": _RETRY_HEADER}
        responses[str(status)] = entry
    return responses


def _fields(struct: Any) -> tuple[str, ...]:
    # A parametrised generic (PageOf[TenantView]) keeps its fields on its origin class.
    return tuple(getattr(typing.get_origin(struct) or struct, "__struct_fields__", ()))


def _produced_id(op: Operation, operations: tuple[Operation, ...]) -> tuple[str, str] | None:
    """The path parameter that ``op``'s success response names, with its runtime expression:
    a create (``POST /tenants`` -> ``tenant_id`` = the body's ``id``) or a list (its first
    item's ``id``). Read off the route table: the parameter right below ``op``'s path."""
    below = re.compile(re.escape(op.path) + r"/{([a-z_]+)}")
    names = {m.group(1) for t in operations if (m := below.match(t.path)) is not None}
    if len(names) != 1:
        return None
    fields = _fields(op.response)
    if op.method == "POST" and op.status == 201 and "id" in fields:
        return names.pop(), "$response.body#/id"
    if op.method == "GET" and "items" in fields:
        return names.pop(), "$response.body#/items/0/id"
    return None


def _links(op: Operation, operations: tuple[Operation, ...]) -> dict[str, Any]:
    """OpenAPI links from ``op``'s success to every operation whose path parameters it knows
    (its own, plus the id it creates or lists), and to request bodies and query filters that
    take the created id (``POST /tenants`` -> ``POST /users`` with ``tenant_id``). Derived
    from the route table, so stateful clients (schemathesis) chain a new endpoint at once."""
    known = {name: f"$request.path.{name}" for name in _PATH_PARAM.findall(op.path)}
    produced = _produced_id(op, operations)
    if produced is not None:
        known[produced[0]] = produced[1]
    links: dict[str, Any] = {}
    for target in operations:
        if target is op:
            continue
        wanted = _PATH_PARAM.findall(target.path)
        link: dict[str, Any] = {"operationId": target.operation_id}
        if wanted and set(wanted) <= known.keys():
            link["parameters"] = {f"path.{name}": known[name] for name in wanted}
        elif produced is not None and not wanted:
            name, expression = produced
            if name in _fields(target.body):
                link["requestBody"] = {name: expression}
            elif any(p.name == name for p in target.query):
                link["parameters"] = {f"query.{name}": expression}
        if len(link) > 1:
            links[target.operation_id] = link
    return links
