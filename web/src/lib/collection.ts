// Lists as the UI holds them, and the two pure ways they change: a page from the API
// (`mergePage`, cursor pagination) and a WebSocket change message (`applyChange`).

import type { ChangeMessage, Entity, EntityMap, Page } from "./types";

/** Exact-match filters on resource fields (`status`, `tenant_id`, `role`, `user_id`, `id`...). */
export type ListFilter = Readonly<Record<string, string | null | undefined>>;

export interface Collection<E extends Entity = Entity> {
  entity: E;
  filter: ListFilter;
  items: EntityMap[E][];
  /** Cursor for the next page; `null` when everything that matches is loaded. */
  nextCursor: string | null;
  /** Sequence of the last change message applied (changes at or below it are ignored). */
  sequence: number;
}

export function emptyCollection<E extends Entity>(entity: E, filter: ListFilter = {}): Collection<E> {
  return { entity, filter, items: [], nextCursor: null, sequence: 0 };
}

/** The field a list of this entity is ordered by, newest first (ties: id, descending). */
export function sortField(entity: Entity): "submitted_at" | "created_at" {
  return entity === "pirep" ? "submitted_at" : "created_at";
}

function time(value: unknown): number {
  const t = typeof value === "string" ? Date.parse(value) : NaN;
  return Number.isNaN(t) ? 0 : t;
}

/** Negative when `a` comes before `b` in a newest-first list. */
export function compareNewestFirst(entity: Entity, a: EntityMap[Entity], b: EntityMap[Entity]): number {
  const field = sortField(entity);
  const ta = time((a as unknown as Record<string, unknown>)[field]);
  const tb = time((b as unknown as Record<string, unknown>)[field]);
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

export function matchesFilter(item: object, filter: ListFilter): boolean {
  const record = item as Record<string, unknown>;
  for (const [key, want] of Object.entries(filter)) {
    if (want === undefined || want === null || want === "") continue;
    const have = record[key];
    if (have === undefined || have === null || String(have) !== want) return false;
  }
  return true;
}

/** True when `incoming` is older than `current` (PIREPs carry a `version`). */
function isStale(current: object, incoming: object): boolean {
  const a = (current as { version?: unknown }).version;
  const b = (incoming as { version?: unknown }).version;
  return typeof a === "number" && typeof b === "number" && b < a;
}

/**
 * Applies a WebSocket `change` message to a list. Pure: returns the same object when nothing
 * changes. A changed item that still matches the filter is replaced in place; one that no longer
 * matches leaves; a new matching item is inserted at its newest-first position, unless it sorts
 * after the last loaded item while more pages remain (the next page will bring it).
 */
export function applyChange<E extends Entity>(state: Collection<E>, message: ChangeMessage): Collection<E> {
  if (message.entity !== state.entity) return state;
  if (message.sequence <= state.sequence) return state;
  return { ...changeItems(state, message), sequence: message.sequence };
}

/** `applyChange` without the sequence check: the items as they are after this change. */
function changeItems<E extends Entity>(state: Collection<E>, message: ChangeMessage): Collection<E> {
  const incoming = { ...(message.data as object), id: message.id } as EntityMap[E];
  const index = state.items.findIndex((item) => item.id === message.id);
  const matches = matchesFilter(incoming, state.filter);
  let items = state.items;
  if (index >= 0) {
    const current = state.items[index]!;
    if (isStale(current, incoming)) {
      items = state.items;
    } else if (matches) {
      items = state.items.slice();
      items[index] = incoming;
    } else {
      items = state.items.filter((_, i) => i !== index);
    }
  } else if (matches) {
    const at = state.items.findIndex((item) => compareNewestFirst(state.entity, incoming, item) < 0);
    if (at === -1) {
      if (state.nextCursor === null) items = [...state.items, incoming];
    } else {
      items = [...state.items.slice(0, at), incoming, ...state.items.slice(at)];
    }
  }
  return items === state.items ? state : { ...state, items };
}

/** Applies a change to a single resource (a detail view, the signed-in user). */
export function applyChangeToItem<E extends Entity>(
  entity: E,
  item: EntityMap[E] | null,
  message: ChangeMessage,
): EntityMap[E] | null {
  if (!item || message.entity !== entity || message.id !== item.id) return item;
  const incoming = { ...(message.data as object), id: message.id } as EntityMap[E];
  if (isStale(item, incoming)) return item;
  return incoming;
}

/**
 * A single resource as read from the API, after the changes that arrived while the read was in
 * flight (the read may be older than they are). A PIREP read older than the one shown is not
 * taken.
 */
export function resourceAfterRead<E extends Entity>(
  entity: E,
  shown: EntityMap[E] | null,
  read: EntityMap[E],
  changes: readonly ChangeMessage[],
): EntityMap[E] {
  let next = shown && shown.id === read.id && isStale(shown, read) ? shown : read;
  for (const message of changes) next = applyChangeToItem(entity, next, message) ?? next;
  return next;
}

/**
 * Merges a page from `GET ...?cursor=` into a list. `append` adds the page after the loaded
 * items (infinite scroll); otherwise the page replaces them (first load, refresh, new filter).
 * An item already present (a live insert the page also holds) keeps its newer version, once.
 */
export function mergePage<E extends Entity>(
  state: Collection<E>,
  page: Page<EntityMap[E]>,
  append: boolean,
): Collection<E> {
  if (!append) {
    return { ...state, items: dedupe(page.items), nextCursor: page.next_cursor };
  }
  const byId = new Map(state.items.map((item, i) => [item.id, i] as const));
  const items = state.items.slice();
  for (const item of page.items) {
    const i = byId.get(item.id);
    if (i === undefined) {
      byId.set(item.id, items.length);
      items.push(item);
    } else if (isStale(item, items[i]!)) {
      // The list's copy is older than the page's: take the page's. Otherwise keep the list's
      // (same version, or a live change newer than this page).
      items[i] = item;
    }
  }
  return { ...state, items, nextCursor: page.next_cursor };
}

/**
 * Merges a page that answers a request sent before `changes` arrived, then applies those changes
 * again. They were applied live already (their sequences are at or below the list's), but the
 * page may be older than they are: a refresh replaces the items they inserted or changed, and an
 * appended page can bring an item they changed before it was loaded. Applying a change twice
 * leaves what applying it once does, so the replay is safe for the items the page did not touch.
 */
export function mergePageAfterChanges<E extends Entity>(
  state: Collection<E>,
  page: Page<EntityMap[E]>,
  append: boolean,
  changes: readonly ChangeMessage[],
): Collection<E> {
  let next = mergePage(state, page, append);
  for (const message of changes) {
    if (message.entity === next.entity) next = changeItems(next, message);
  }
  return next;
}

function dedupe<T extends { id: string }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => (seen.has(item.id) ? false : (seen.add(item.id), true)));
}

/**
 * The WebSocket's own bookkeeping: the last change sequence seen. A replay after `resume`
 * (or a duplicate) is dropped; returns the new last sequence, or `null` to drop the message.
 */
export function nextSequence(lastSeen: number | null, message: ChangeMessage): number | null {
  if (lastSeen !== null && message.sequence <= lastSeen) return null;
  return message.sequence;
}
