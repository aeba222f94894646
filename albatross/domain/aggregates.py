"""Where each aggregate's events live and how its state folds, in one table.

``AggregateKind`` binds an aggregate name (the ``<aggregate>`` token of the contract's subjects)
to its state type and ``evolve`` function, so the application layer can load any aggregate the
same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from albatross.domain import pireps, tenants, users
from albatross.domain.events import Event, EventRegistry

S = TypeVar("S")


@dataclass(frozen=True)
class AggregateKind(Generic[S]):
    name: str
    state_type: type[S]
    evolve: Callable[[S | None, Event, datetime], S | None]
    events: tuple[type[Event], ...]

    def fold(self, state: S | None, history: Iterable[tuple[Event, datetime]]) -> S | None:
        for event, occurred_at in history:
            state = self.evolve(state, event, occurred_at)
        return state


TENANT = AggregateKind("tenant", tenants.Tenant, tenants.evolve, tenants.TENANT_EVENTS)
USER = AggregateKind("user", users.User, users.evolve, users.USER_EVENTS)
PIREP = AggregateKind("pirep", pireps.Pirep, pireps.evolve, pireps.PIREP_EVENTS)

ALL_KINDS: tuple[AggregateKind[object], ...] = (TENANT, USER, PIREP)  # type: ignore[assignment]


def default_registry() -> EventRegistry:
    return EventRegistry(*tenants.TENANT_EVENTS, *users.USER_EVENTS, *pireps.PIREP_EVENTS)
