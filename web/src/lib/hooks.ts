// Data hooks: lists with cursor pagination and single resources, both kept live by change
// messages, and a small cache of user names for "submitted by" columns.

import { startTransition, useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { get, query } from "./api";
import { applyChange, applyChangeToItem, emptyCollection, mergePageAfterChanges, resourceAfterRead, type Collection, type ListFilter } from "./collection";
import { useChanges, useLive } from "./live";
import type { ChangeMessage, Entity, EntityMap, Page, User } from "./types";

export interface LiveList<E extends Entity> {
  items: EntityMap[E][];
  nextCursor: string | null;
  loading: boolean;
  loadingMore: boolean;
  error: unknown;
  loadMore: () => void;
  reload: () => void;
}

interface ListOptions<E extends Entity> {
  entity: E;
  /** Collection path, e.g. `/pireps`; null waits (e.g. until a required id is known). */
  path: string | null;
  /** Query parameters, also used to decide whether a changed resource belongs to the list. */
  filter?: ListFilter;
  /** Extra matching only (not sent), e.g. `{user_id}` for a user's API keys. */
  match?: ListFilter;
  limit?: number;
}

export function useLiveList<E extends Entity>({ entity, path, filter = {}, match = {}, limit = 50 }: ListOptions<E>): LiveList<E> {
  const { epoch } = useLive();
  const filterKey = JSON.stringify(filter);
  const matchKey = JSON.stringify(match);
  const [state, setState] = useState<Collection<E>>(() => emptyCollection(entity, { ...filter, ...match }));
  const [loading, setLoading] = useState(true);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const stateRef = useRef(state);
  stateRef.current = state;
  const inflight = useRef<AbortController | null>(null);
  const queued = useRef<ChangeMessage[]>([]);
  const loadedEpoch = useRef(epoch);
  const generation = useRef(0);

  const load = useCallback(
    (mode: "first" | "refresh" | "more") => {
      if (path === null) return;
      const current = stateRef.current;
      if (mode === "more" && (current.nextCursor === null || inflight.current)) return;
      inflight.current?.abort();
      const ctrl = new AbortController();
      inflight.current = ctrl;
      const gen = ++generation.current;
      const f = JSON.parse(filterKey) as ListFilter;
      const m = JSON.parse(matchKey) as ListFilter;
      if (mode === "first") {
        setLoading(true);
        setState(emptyCollection(entity, { ...f, ...m }));
      }
      if (mode === "more") setLoadingMore(true);
      loadedEpoch.current = epoch;
      const url = path + query({ ...f, limit, cursor: mode === "more" ? current.nextCursor : undefined });
      get<Page<EntityMap[E]>>(url, ctrl.signal).then(
        (page) => {
          if (gen !== generation.current) return;
          const pending = queued.current;
          queued.current = [];
          // A transition: React renders a long page in slices, so the main thread stays
          // responsive (no long task) while hundreds of rows appear.
          startTransition(() => {
            setState((s) => mergePageAfterChanges(s, page, mode === "more", pending));
          });
          setError(null);
        },
        (err: unknown) => {
          if (ctrl.signal.aborted || gen !== generation.current) return;
          setError(err);
        },
      ).finally(() => {
        if (gen !== generation.current) return;
        inflight.current = null;
        setLoading(false);
        setLoadingMore(false);
      });
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [entity, path, filterKey, matchKey, limit, epoch],
  );

  // First page whenever the list's identity changes.
  useEffect(() => {
    queued.current = [];
    load("first");
    return () => {
      inflight.current?.abort();
      inflight.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [entity, path, filterKey, matchKey, limit]);

  // Read before the change stream started: refresh once so nothing in between is missed.
  useEffect(() => {
    if (epoch !== loadedEpoch.current && path !== null) load("refresh");
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [epoch]);

  useChanges((message) => {
    if (message.entity !== entity) return;
    if (inflight.current) queued.current.push(message);
    startTransition(() => setState((s) => applyChange(s, message)));
  });

  return {
    items: state.items,
    nextCursor: state.nextCursor,
    loading,
    loadingMore,
    error,
    loadMore: useCallback(() => load("more"), [load]),
    reload: useCallback(() => load("refresh"), [load]),
  };
}

export interface LiveResource<T> {
  data: T | null;
  loading: boolean;
  error: unknown;
  reload: () => void;
  setData: (value: T) => void;
}

/** One resource (`/pireps/{id}`), replaced by change messages for the same entity and id. */
export function useLiveResource<E extends Entity>(entity: E, path: string | null): LiveResource<EntityMap[E]> {
  const { epoch } = useLive();
  const [data, setData] = useState<EntityMap[E] | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const loadedEpoch = useRef(epoch);
  const ctrlRef = useRef<AbortController | null>(null);
  const queued = useRef<ChangeMessage[]>([]);

  const load = useCallback(
    (silent: boolean) => {
      if (!path) return;
      ctrlRef.current?.abort();
      const ctrl = new AbortController();
      ctrlRef.current = ctrl;
      if (!silent) setLoading(true);
      loadedEpoch.current = epoch;
      get<EntityMap[E]>(path, ctrl.signal).then(
        (value) => {
          if (ctrl.signal.aborted) return;
          const pending = queued.current;
          queued.current = [];
          setData((shown) => resourceAfterRead(entity, shown, value, pending));
          setError(null);
        },
        (err: unknown) => {
          if (!ctrl.signal.aborted) setError(err);
        },
      ).finally(() => {
        if (ctrl.signal.aborted) return;
        ctrlRef.current = null;
        setLoading(false);
      });
    },
    [path, entity, epoch],
  );

  useEffect(() => {
    setData(null);
    queued.current = [];
    load(false);
    return () => {
      ctrlRef.current?.abort();
      ctrlRef.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path]);

  useEffect(() => {
    if (epoch !== loadedEpoch.current) load(true);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [epoch]);

  useChanges((message) => {
    if (message.entity !== entity) return;
    if (ctrlRef.current) queued.current.push(message);
    setData((d) => applyChangeToItem(entity, d, message));
  });

  return { data, loading, error, reload: useCallback(() => load(true), [load]), setData };
}

// ---- user names ----------------------------------------------------------------------------

type Entry = { user: User | null; promise: Promise<void> | null };
const users = new Map<string, Entry>();
const userListeners = new Set<() => void>();

function notifyUsers() {
  for (const l of userListeners) l();
}

/** Puts a user into the name cache (from a list, a detail or a change message). */
export function rememberUser(user: User): void {
  const e = users.get(user.id);
  if (e?.user && e.user === user) return;
  users.set(user.id, { user, promise: null });
  notifyUsers();
}

export function forgetUsers(): void {
  users.clear();
  notifyUsers();
}

function fetchUser(id: string): void {
  if (users.has(id)) return;
  const entry: Entry = { user: null, promise: null };
  entry.promise = get<User>(`/users/${encodeURIComponent(id)}`).then(
    (u) => rememberUser(u),
    () => {
      entry.promise = null;
    },
  );
  users.set(id, entry);
}

const subscribeUsers = (cb: () => void) => {
  userListeners.add(cb);
  return () => {
    userListeners.delete(cb);
  };
};

/** The user with this id from the cache, fetched on first use (null while unknown). */
export function useUser(id: string | null | undefined): User | null {
  useEffect(() => {
    if (id) fetchUser(id);
  }, [id]);
  // The snapshot is this user's own object: other users arriving re-render nothing here.
  return useSyncExternalStore(subscribeUsers, () => (id ? (users.get(id)?.user ?? null) : null));
}
