"""Generate the JSON Schemas and the AsyncAPI document of Albatross's NATS messages.

The files under ``schemas/`` are generated from the code's own message types (the event
structs and the codec's envelope), never written by hand::

    python -m albatross.schemas_cli            # (re)write schemas/
    python -m albatross.schemas_cli --check    # exit 1 when schemas/ is stale

Layout:

- ``events/<EventType>.json``: the full payload of one event message, i.e. the envelope with
  ``type`` and ``schema_version`` fixed and ``data`` the event's own schema;
- ``envelope.json``: the envelope shared by every event message;
- ``asyncapi.yaml``: an AsyncAPI 3 document of the subjects, referring to the files above.

Output is deterministic: JSON with sorted keys and a 2-space indent, YAML emitted by hand in a
fixed order, each file ending with a newline.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from albatross.adapters.codec import CHANGES, CLAIMS, EVENTS, SECRETS, Envelope
from albatross.application.views import RESOURCE_TYPES, ChangeMessage
from albatross.domain.aggregates import ALL_KINDS, default_registry
from albatross.domain.events import Event, EventRegistry

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
DEFAULT_OUT = "schemas"
# The contract's version: bump with the contract, not with every release of the code.
CONTRACT_VERSION = "1.0.0"
EVENTS_DIR = "events"
CHANGES_DIR = "changes"
WEBSOCKET_DIR = "websocket"
ENVELOPE_FILE = "envelope.json"
ASYNCAPI_FILE = "asyncapi.yaml"

_REF_TEMPLATE = "#/$defs/{name}"


# JSON Schemas -----------------------------------------------------------------------------

def _aggregate_of(event_type: type[Event]) -> str:
    for kind in ALL_KINDS:
        if event_type in kind.events:
            return kind.name
    raise ValueError(f"event type {event_type.event_type} belongs to no aggregate")


def _subject_pattern(event_type: type[Event]) -> str:
    root = SECRETS if event_type.secret else EVENTS
    return f"{root}.{{scope}}.{_aggregate_of(event_type)}.{{id}}"


def _envelope_component() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([Envelope], ref_template=_REF_TEMPLATE)
    component: dict[str, Any] = components[Envelope.__name__]
    return component


def envelope_schema() -> dict[str, Any]:
    """The envelope every event message has, whatever its type."""
    component = _envelope_component()
    properties = dict(component["properties"])
    properties["type"] = {**properties["type"],
                          "description": "The event type, also in the Albatross-Event-Type "
                                         "header; see events/<type>.json."}
    properties["schema_version"] = {**properties["schema_version"], "minimum": 1}
    properties["occurred_at"] = {**properties["occurred_at"],
                                 "description": "RFC 3339 UTC time the event occurred."}
    properties["data"] = {"type": "object",
                          "description": "The event's own fields, per events/<type>.json."}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "Envelope",
        "description": component.get("description", ""),
        "type": "object",
        "properties": properties,
        "required": list(component["required"]),
    }


def event_schema(event_type: type[Event]) -> dict[str, Any]:
    """The full payload of one event type's messages: the envelope around its data."""
    name = event_type.event_type
    (data_ref,), components = msgspec.json.schema_components(
        [event_type], ref_template=_REF_TEMPLATE)
    envelope = _envelope_component()
    properties = dict(envelope["properties"])
    properties["type"] = {"const": name}
    properties["schema_version"] = {"const": event_type.schema_version}
    properties["data"] = data_ref
    visibility = "credential (restricted)" if event_type.secret else "public"
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": name,
        "description": (f"A {visibility} {_aggregate_of(event_type)} event, published on "
                        f"{_subject_pattern(event_type)}."),
        "type": "object",
        "properties": properties,
        "required": list(envelope["required"]),
        "$defs": components,
        "x-albatross-aggregate": _aggregate_of(event_type),
        "x-albatross-secret": event_type.secret,
        "x-albatross-subject": _subject_pattern(event_type),
    }


def message_schema(message_type: Any, title: str, description: str) -> dict[str, Any]:
    """A self-contained schema of one message type (its components under ``$defs``)."""
    (root,), components = msgspec.json.schema_components([message_type],
                                                         ref_template=_REF_TEMPLATE)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": title, "description": description,
            **root, "$defs": components}


def change_schemas() -> dict[str, dict[str, Any]]:
    """One schema per entity of the messages on ``albatross.changes.>`` (and the WebSocket)."""
    return {
        entity: message_schema(
            ChangeMessage[view], f"{entity} change",  # type: ignore[valid-type]
            f"A {entity} changed, after projection: published on "
            f"{CHANGES}.<tenant_id|platform>.{entity}.<id> and pushed to WebSocket clients "
            f"that may see it. `data` is the resource as GET returns it; `sequence` is the "
            f"changes stream's sequence (0 on the stream itself).")
        for entity, view in sorted(RESOURCE_TYPES.items())
    }


def websocket_schemas() -> dict[str, dict[str, Any]]:
    # Imported here: the protocol lives with the notifier, which the event schemas do not need.
    from albatross.services.notifier.protocol import Auth, Ready, Resume

    return {
        "auth": message_schema(Auth, "auth", "Client, first message: a session token or API "
                                             "key, within 5 s."),
        "resume": message_schema(Resume, "resume", "Client, optional: replay every visible "
                                                   "change after `after`, then go on live."),
        "ready": message_schema(Ready, "ready", "Server: authenticated; `sequence` is the "
                                                "latest change sequence."),
    }


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# AsyncAPI ---------------------------------------------------------------------------------

def _scope_parameters() -> dict[str, Any]:
    return {
        "scope": {"description": "The owning tenant's id, or `platform` for what belongs to "
                                 "no tenant."},
        "aggregate": {"description": "The aggregate type.",
                      "enum": sorted(kind.name for kind in ALL_KINDS)},
        "id": {"description": "The aggregate's id (UUIDv7 or ULID)."},
    }


def _event_message(event_type: type[Event]) -> dict[str, Any]:
    name = event_type.event_type
    return {
        "name": name,
        "title": name,
        "summary": f"{name} ({_aggregate_of(event_type)} aggregate).",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                "Albatross-Event-Type": {"type": "string", "const": name},
                "Nats-Msg-Id": {"type": "string",
                                "description": "Deduplication id: `<append id>:<index>`."},
            },
            "required": ["Albatross-Event-Type", "Nats-Msg-Id"],
        },
        "payload": {"schemaFormat": ASYNCAPI_SCHEMA_FORMAT,
                    "schema": {"$ref": f"./{EVENTS_DIR}/{name}.json"}},
    }


def _claim_message() -> dict[str, Any]:
    return {
        "name": "ClaimHeld",
        "title": "ClaimHeld",
        "summary": "A platform-wide unique value (e.g. a normalised email or a tenant ICAO) is "
                   "held by one aggregate stream.",
        "contentType": "application/json",
        "payload": {
            "schemaFormat": ASYNCAPI_SCHEMA_FORMAT,
            "schema": {
                "type": "object",
                "properties": {"stream": {"type": "string",
                                          "description": "`<scope>.<aggregate>.<id>` of the "
                                                         "holder."}},
                "required": ["stream"],
            },
        },
    }


def asyncapi_document(registry: EventRegistry) -> dict[str, Any]:
    types = registry.types()
    public = [t for t in types if not t.secret]
    secret = [t for t in types if t.secret]

    def refs(group: list[type[Event]]) -> dict[str, Any]:
        return {t.event_type: {"$ref": f"#/components/messages/{t.event_type}"} for t in group}

    def operation(channel: str, group: list[str], summary: str) -> dict[str, Any]:
        return {
            "action": "send",
            "summary": summary,
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in group],
        }

    messages = {t.event_type: _event_message(t) for t in types}
    messages["ClaimHeld"] = _claim_message()
    entities = sorted(RESOURCE_TYPES)
    change_names = [f"{entity.capitalize()}Change" for entity in entities]
    for entity, name in zip(entities, change_names, strict=True):
        messages[name] = {
            "name": name, "title": name, "contentType": "application/json",
            "summary": f"A {entity} changed, after projection.",
            "headers": {"type": "object", "properties": {"Nats-Msg-Id": {
                "type": "string", "description": "Deduplication id of the change."}}},
            "payload": {"schemaFormat": ASYNCAPI_SCHEMA_FORMAT,
                        "schema": {"$ref": f"./{CHANGES_DIR}/{entity}.json"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Albatross NATS messages",
            "version": CONTRACT_VERSION,
            "description": "Domain events of the Albatross platform on NATS JetStream. "
                           "Generated by `python -m albatross.schemas_cli`; do not edit.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": f"{EVENTS}.{{scope}}.{{aggregate}}.{{id}}",
                "title": "Domain events",
                "description": "Public domain events, one subject per aggregate, in a "
                               "JetStream stream. They never hold credentials.",
                "parameters": _scope_parameters(),
                "messages": refs(public),
            },
            "secrets": {
                "address": f"{SECRETS}.{{scope}}.{{aggregate}}.{{id}}",
                "title": "Credential events (restricted)",
                "description": "Password, API-key and session hashes. Restricted: NATS "
                               "permissions grant these subjects to the Albatross services "
                               "only, never to other consumers.",
                "parameters": _scope_parameters(),
                "messages": refs(secret),
                "tags": [{"name": "restricted"}],
                "x-albatross-restricted": True,
            },
            "changes": {
                "address": f"{CHANGES}.{{scope}}.{{entity}}.{{id}}",
                "title": "Changes after projection",
                "description": "One message per changed resource, after the read models "
                               "committed it, in a JetStream stream kept at least 24 h. Same "
                               "shape as the WebSocket `change` message.",
                "parameters": {
                    "scope": {"description": "The resource's tenant id, or `platform`."},
                    "entity": {"description": "The resource type.", "enum": entities},
                    "id": {"description": "The resource's id."},
                },
                "messages": {name: {"$ref": f"#/components/messages/{name}"}
                             for name in change_names},
            },
            "claims": {
                "address": f"{CLAIMS}.{{kind}}.{{hash}}",
                "title": "Uniqueness claims (internal)",
                "description": "Internal to the event store: one message per unique value, "
                               "which keeps it unique platform-wide. Not for other services.",
                "parameters": {
                    "kind": {"description": "What is claimed (e.g. `email`, `icao`)."},
                    "hash": {"description": "Lower-case hex SHA-256 of the claimed value, so "
                                            "that no personal data appears in the subject."},
                },
                "messages": {"ClaimHeld": {"$ref": "#/components/messages/ClaimHeld"}},
                "tags": [{"name": "internal"}],
                "x-albatross-internal": True,
            },
        },
        "operations": {
            "publishChange": operation("changes", change_names,
                                       "The projector publishes a change after it committed."),
            "publishEvent": operation("events", [t.event_type for t in public],
                                      "The event store appends a public domain event."),
            "publishSecret": operation("secrets", [t.event_type for t in secret],
                                       "The event store appends a credential event."),
            "publishClaim": operation("claims", ["ClaimHeld"],
                                      "The event store records a uniqueness claim."),
        },
        "components": {"messages": messages},
    }


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _yaml_key(key: str) -> str:
    if _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS:
        return key
    return json.dumps(key)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # A JSON string (ASCII, escaped) is a valid YAML double-quoted scalar.
        return json.dumps(value)
    if value == {}:
        return "{}"
    if value == []:
        return "[]"
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def _is_block(value: Any) -> bool:
    return isinstance(value, dict | list) and bool(value)


def _yaml_lines(node: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if _is_block(value):
                lines.append(f"{pad}{_yaml_key(key)}:")
                lines.extend(_yaml_lines(value, indent + 2))
            else:
                lines.append(f"{pad}{_yaml_key(key)}: {_yaml_scalar(value)}")
    else:
        for item in node:
            if _is_block(item):
                nested = _yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def to_yaml(document: dict[str, Any]) -> str:
    """Block-style YAML of plain JSON values, in the mapping's own (deterministic) order."""
    return "\n".join(_yaml_lines(document, 0)) + "\n"


# Files ------------------------------------------------------------------------------------

def generate(registry: EventRegistry | None = None) -> dict[str, str]:
    """Every generated file: path relative to the output directory -> text."""
    registry = registry or default_registry()
    files = {f"{EVENTS_DIR}/{t.event_type}.json": _json_text(event_schema(t))
             for t in registry.types()}
    files[ENVELOPE_FILE] = _json_text(envelope_schema())
    files.update({f"{CHANGES_DIR}/{entity}.json": _json_text(schema)
                  for entity, schema in change_schemas().items()})
    files.update({f"{WEBSOCKET_DIR}/{name}.json": _json_text(schema)
                  for name, schema in websocket_schemas().items()})
    files[ASYNCAPI_FILE] = to_yaml(asyncapi_document(registry))
    return dict(sorted(files.items()))


def _owned(out: Path) -> set[str]:
    """The files in ``out`` that this generator owns (so may report as extra or remove)."""
    found = {name for name in (ENVELOPE_FILE, ASYNCAPI_FILE) if (out / name).is_file()}
    for folder in (EVENTS_DIR, CHANGES_DIR, WEBSOCKET_DIR):
        if (out / folder).is_dir():
            found |= {f"{folder}/{p.name}" for p in (out / folder).iterdir()
                      if p.is_file() and p.suffix == ".json"}
    return found


def differences(out: Path, files: dict[str, str]) -> list[tuple[str, str]]:
    """(state, path) for every file that is missing, differs, or should not be there."""
    found: list[tuple[str, str]] = []
    for path, text in files.items():
        target = out / path
        if not target.is_file():
            found.append(("missing", path))
        elif target.read_text(encoding="utf-8") != text:
            found.append(("differs", path))
    found.extend(("extra", path) for path in sorted(_owned(out) - files.keys()))
    return found


def write(out: Path, files: dict[str, str]) -> list[tuple[str, str]]:
    changes = differences(out, files)
    for state, path in changes:
        target = out / path
        if state == "extra":
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(files[path], encoding="utf-8", newline="\n")
    return changes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m albatross.schemas_cli",
        description="Generate the JSON Schemas and AsyncAPI document of the NATS messages.")
    parser.add_argument("--out", default=DEFAULT_OUT, type=Path,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the directory is not up to date")
    args = parser.parse_args(argv)
    out: Path = args.out
    files = generate()
    if args.check:
        stale = differences(out, files)
        if not stale:
            print(f"{out}: {len(files)} files up to date")
            return 0
        print(f"{out} is out of date; run `python -m albatross.schemas_cli --out {out}`:",
              file=sys.stderr)
        for state, path in stale:
            print(f"  {state}: {out / path}", file=sys.stderr)
        return 1
    changes = write(out, files)
    for state, path in changes:
        verb = "removed" if state == "extra" else "wrote"
        print(f"{verb} {out / path}")
    print(f"{out}: {len(files)} files, {len(changes)} changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
