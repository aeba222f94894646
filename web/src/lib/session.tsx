// The signed-in session. The token lives in sessionStorage (see docs/web.md): it survives a
// reload of this tab, is not shared with other tabs, and is gone when the tab closes.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import { get, getToken, post, setApiHandlers, setToken } from "./api";
import type { LoginResponse, User } from "./types";

const STORAGE_KEY = "albatross.session";

interface StoredSession {
  token: string;
  expiresAt: string;
  user: User;
}

export interface SessionValue {
  token: string | null;
  user: User | null;
  expiresAt: string | null;
  mustChangePassword: boolean;
  /** Why the last session ended, shown on the login page ("expired", "signed out"). */
  notice: string | null;
  login: (response: LoginResponse) => void;
  logout: (notice?: string) => Promise<void>;
  endSession: (notice: string) => void;
  setUser: (user: User) => void;
  requirePasswordChange: () => void;
}

const SessionContext = createContext<SessionValue | null>(null);

function load(): StoredSession | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as StoredSession;
    if (!s.token || !s.user) return null;
    if (s.expiresAt && Date.parse(s.expiresAt) <= Date.now()) return null;
    return s;
  } catch {
    return null;
  }
}

function save(s: StoredSession | null): void {
  try {
    if (s) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(s));
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: the session lasts as long as the page
  }
}

export function SessionProvider({ children }: { children: React.ReactNode }) {
  const [session, setSession] = useState<StoredSession | null>(() => {
    const s = load();
    setToken(s?.token ?? null);
    return s;
  });
  const [mustChange, setMustChange] = useState<boolean>(() => !!session?.user.must_change_password);
  const [notice, setNotice] = useState<string | null>(null);
  const sessionRef = useRef(session);
  sessionRef.current = session;

  const endSession = useCallback((message: string) => {
    // Idempotent: a late "unauthorized" (a socket closed by the server after a sign-out) must
    // not replace the reason the session really ended.
    if (sessionRef.current === null) return;
    sessionRef.current = null;
    setToken(null);
    save(null);
    setSession(null);
    setMustChange(false);
    setNotice(message);
  }, []);

  const login = useCallback((r: LoginResponse) => {
    const s = { token: r.token, expiresAt: r.expires_at, user: r.user };
    sessionRef.current = s;
    setToken(r.token);
    save(s);
    setNotice(null);
    setMustChange(r.must_change_password || r.user.must_change_password);
    setSession(s);
  }, []);

  const logout = useCallback(async (message = "You have signed out.") => {
    // Leave first (this unmounts the live connection), then revoke the token: the server then
    // closing the socket with 4401 must not read as "your session has ended".
    const token = getToken();
    endSession(message);
    if (!token) return;
    try {
      await post("/auth/logout", undefined, { Authorization: `Bearer ${token}` });
    } catch {
      // the session may already be gone; signing out locally is what matters
    }
  }, [endSession]);

  const setUser = useCallback((user: User) => {
    setSession((s) => {
      if (!s || s.user.id !== user.id) return s;
      const next = { ...s, user: { ...s.user, ...user } };
      save(next);
      return next;
    });
    if (!user.must_change_password) setMustChange(false);
  }, []);

  const requirePasswordChange = useCallback(() => setMustChange(true), []);

  useEffect(() => {
    setApiHandlers({
      onUnauthorized: () => endSession("Your session has ended. Please sign in again."),
      onPasswordChangeRequired: () => setMustChange(true),
    });
  }, [endSession]);

  // Refresh the user once per page load; a dead token signs out through onUnauthorized.
  const token = session?.token ?? null;
  useEffect(() => {
    if (!token) return;
    const ctrl = new AbortController();
    get<User>("/me", ctrl.signal).then((user) => {
      setUser(user);
      if (user.must_change_password) setMustChange(true);
    }, () => undefined);
    return () => ctrl.abort();
  }, [token, setUser]);

  // Sign out when the session expires while the page is open.
  const expiresAt = session?.expiresAt ?? null;
  useEffect(() => {
    if (!expiresAt) return;
    const ms = Date.parse(expiresAt) - Date.now();
    if (Number.isNaN(ms)) return;
    const t = setTimeout(() => endSession("Your session has expired. Please sign in again."), Math.min(Math.max(ms, 0), 2 ** 31 - 1));
    return () => clearTimeout(t);
  }, [expiresAt, endSession]);

  const value = useMemo<SessionValue>(
    () => ({
      token,
      user: session?.user ?? null,
      expiresAt,
      mustChangePassword: mustChange,
      notice,
      login,
      logout,
      endSession,
      setUser,
      requirePasswordChange,
    }),
    [token, session, expiresAt, mustChange, notice, login, logout, endSession, setUser, requirePasswordChange],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionValue {
  const v = useContext(SessionContext);
  if (!v) throw new Error("useSession outside SessionProvider");
  return v;
}

/** The signed-in user (inside the authenticated app, where one always exists). */
export function useMe(): User {
  const { user } = useSession();
  if (!user) throw new Error("useMe without a session");
  return user;
}

export const isAdmin = (user: User) => user.role === "PlatformAdmin" || user.role === "TenantAdmin";
