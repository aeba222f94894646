"""The ReadModels port in memory, for unit tests of the gateway: no PostgreSQL needed.

Feed it every record of the in-memory event store through :meth:`InMemoryReadModels.apply`
(or :meth:`catch_up`); it runs the same projection as the PostgreSQL projector and answers the
same queries, with the same scoping and the same cursors (one contract suite runs against
both). Changes it would publish are kept in :attr:`InMemoryReadModels.changes`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

import msgspec

from albatross.adapters.postgres.cursors import decode_cursor, encode_cursor, fingerprint
from albatross.application import policy
from albatross.application.principal import Principal
from albatross.application.projections import (
    Change,
    ProjectionState,
    project,
)
from albatross.application.views import ApiKeyView, PirepView, TenantView, UserView
from albatross.domain.rules import PirepStatus, Role
from albatross.ports import (
    EventStore,
    HistoryItem,
    Page,
    RecordedEvent,
    UnreadableEvent,
)

T = TypeVar("T")


class InMemoryReadModels:
    """Implements :class:`~albatross.ports.ReadModels`; single event loop, not thread-safe."""

    def __init__(self) -> None:
        self._state = ProjectionState()
        self._history: dict[str, list[HistoryItem]] = {}
        self._checkpoint = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.changes: list[Change] = []
        self.poison: list[tuple[int, str]] = []

    # Writing ------------------------------------------------------------------------------

    def apply(self, record: RecordedEvent | UnreadableEvent) -> None:
        """Project one record; records at or below the checkpoint are ignored (idempotent)."""
        if record.sequence <= self._checkpoint:
            return
        if isinstance(record, UnreadableEvent):
            self.poison.append((record.sequence, record.reason))
        elif not record.event.secret:
            outcome = project(record, self._state)
            if outcome.skipped is not None:
                self.poison.append((record.sequence, outcome.skipped))
            for entry in outcome.history:
                self._history.setdefault(entry.pirep_id, []).append(entry.item)
            self.changes.extend(outcome.changes)
            self._state.clear_dirty()
        self._advance(record.sequence)

    async def catch_up(self, store: EventStore, batch: int = 1000) -> int:
        """Apply everything the store holds after the checkpoint; the new checkpoint."""
        while True:
            records = await store.read_after(self._checkpoint, batch)
            if not records:
                return self._checkpoint
            for record in records:
                self.apply(record)

    def _advance(self, sequence: int) -> None:
        self._checkpoint = sequence
        still = []
        for wanted, future in self._waiters:
            if wanted <= sequence:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((wanted, future))
        self._waiters = still

    # Queries ------------------------------------------------------------------------------

    async def get_tenant(self, principal: Principal, tenant_id: str) -> TenantView | None:
        tenant = self._state.tenants.get(tenant_id)
        if tenant is None or policy.see_tenant(principal, tenant.id) is not policy.ALLOW:
            return None
        return tenant

    async def list_tenants(self, principal: Principal, *, limit: int,
                           cursor: str | None) -> Page[TenantView]:
        items = [t for t in self._state.tenants.values()
                 if policy.see_tenant(principal, t.id) is policy.ALLOW]
        return _page(items, "tenants", fingerprint(), limit, cursor, lambda t: t.created_at)

    async def get_user(self, principal: Principal, user_id: str) -> UserView | None:
        user = self._state.users.get(user_id)
        if user is None:
            return None
        return self._visible_user(principal, user)

    def _visible_user(self, principal: Principal, user: UserView) -> UserView | None:
        if policy.see_user(principal, user.tenant_id) is not policy.ALLOW:
            return None
        if not policy.see_email(principal, user.id, user.tenant_id):
            return msgspec.structs.replace(user, email=None)
        return user

    async def list_users(self, principal: Principal, *, tenant_id: str | None, role: Role | None,
                         limit: int, cursor: str | None) -> Page[UserView]:
        items = []
        for user in self._state.users.values():
            if tenant_id is not None and user.tenant_id != tenant_id:
                continue
            if role is not None and user.role != role:
                continue
            visible = self._visible_user(principal, user)
            if visible is not None:
                items.append(visible)
        return _page(items, "users", fingerprint(tenant_id, role), limit, cursor,
                     lambda u: u.created_at)

    async def list_api_keys(self, principal: Principal, user_id: str, *, limit: int,
                            cursor: str | None) -> Page[ApiKeyView]:
        owner = self._state.users.get(user_id)
        items: list[ApiKeyView] = []
        if owner is not None and policy.manage_api_keys(
                principal, owner.id, owner.tenant_id) is policy.ALLOW:
            items = [k for k in self._state.api_keys.values() if k.user_id == user_id]
        return _page(items, "api_keys", fingerprint(user_id), limit, cursor,
                     lambda k: k.created_at)

    async def get_pirep(self, principal: Principal, pirep_id: str, *,
                        fresh: bool = False) -> PirepView | None:
        pirep = self._state.pireps.get(pirep_id)
        if pirep is None or policy.see_pirep(principal, pirep.tenant_id) is not policy.ALLOW:
            return None
        return pirep

    async def list_pireps(self, principal: Principal, *, status: PirepStatus | None,
                          pilot_id: str | None, tenant_id: str | None, limit: int,
                          cursor: str | None) -> Page[PirepView]:
        items = [p for p in self._state.pireps.values()
                 if policy.see_pirep(principal, p.tenant_id) is policy.ALLOW
                 and (status is None or p.status == status)
                 and (pilot_id is None or p.pilot_id == pilot_id)
                 and (tenant_id is None or p.tenant_id == tenant_id)]
        return _page(items, "pireps", fingerprint(status, pilot_id, tenant_id), limit, cursor,
                     lambda p: p.submitted_at)

    async def pirep_history(self, principal: Principal,
                            pirep_id: str) -> list[HistoryItem] | None:
        if await self.get_pirep(principal, pirep_id) is None:
            return None
        return sorted(self._history.get(pirep_id, []), key=lambda item: item.sequence)

    async def checkpoint(self) -> int:
        return self._checkpoint

    async def wait_for(self, sequence: int, timeout: float) -> bool:
        if self._checkpoint >= sequence:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((sequence, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return self._checkpoint >= sequence
        finally:
            self._waiters = [(s, f) for s, f in self._waiters if f is not future]
        return True


def _page(items: Iterable[T], list_name: str, filters: str, limit: int, cursor: str | None,
          moment: Callable[[T], datetime]) -> Page[T]:
    """Newest first by ``(moment, id)``, after ``cursor``: the SQL queries' keyset order."""
    def key(item: T) -> tuple[datetime, str]:
        return moment(item), getattr(item, "id")  # noqa: B009 - every view has an id

    ordered = sorted(items, key=key, reverse=True)
    if cursor is not None:
        after = decode_cursor(cursor, list_name, filters)
        ordered = [item for item in ordered if key(item) < after]
    page = ordered[:limit]
    next_cursor = None
    if len(ordered) > limit and page:
        last_moment, last_id = key(page[-1])
        next_cursor = encode_cursor(list_name, filters, last_moment, last_id)
    return Page(items=page, next_cursor=next_cursor)
