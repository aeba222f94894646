"""The base of every domain event and the registry of event types.

Events are frozen msgspec Structs. Each concrete type declares a stable ``event_type`` (the
name on the wire and in ``Albatross-Event-Type``), a ``schema_version`` (bumped with an upcaster
when its shape changes) and whether it is a credential (``secret``): credential events live on
``albatross.secrets.>`` subjects, never on ``albatross.events.>``.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    secret: ClassVar[bool] = False


class EventRegistry:
    """Maps wire names to event classes; refuses two classes with one name."""

    def __init__(self, *types: type[Event]) -> None:
        self._by_name: dict[str, type[Event]] = {}
        for event_type in types:
            self.register(event_type)

    def register(self, event_type: type[Event]) -> None:
        name = event_type.event_type
        if name in self._by_name and self._by_name[name] is not event_type:
            raise ValueError(f"event type {name!r} registered twice")
        self._by_name[name] = event_type

    def get(self, name: str) -> type[Event] | None:
        return self._by_name.get(name)

    def __iter__(self) -> object:
        return iter(self._by_name.values())

    def types(self) -> list[type[Event]]:
        return sorted(self._by_name.values(), key=lambda t: t.event_type)
