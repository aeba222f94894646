// The live connection: one WebSocket to /api/ws per tab (react-use-websocket), speaking the
// contract's protocol: auth → ready → resume → change. Reconnects with backoff and resumes
// after the last change sequence it saw, so a reconnect loses nothing; duplicates are dropped.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
// The package is CommonJS with an `exports.default`; bundlers disagree on what a default import
// of it means, so the hook is imported by name from its own module.
import { useWebSocket } from "react-use-websocket/dist/lib/use-websocket";
import { nextSequence } from "./collection";
import type { ChangeMessage, ServerMessage } from "./types";

export type LiveStatus = "connecting" | "live" | "reconnecting" | "offline";

type Listener = (message: ChangeMessage) => void;

export interface LiveValue {
  status: LiveStatus;
  /**
   * Grows when the change stream starts without continuity (the first `ready` of this page).
   * Data read before that moment is refreshed once, so a change between the read and `ready`
   * cannot be missed.
   */
  epoch: number;
  /** Last change sequence applied (null before the first `ready`). */
  lastSequence: () => number | null;
  subscribe: (listener: Listener) => () => void;
}

const LiveContext = createContext<LiveValue | null>(null);

export function wsUrl(): string {
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${window.location.host}/api/ws`;
}

/** 1 s, 2 s, 4 s ... capped at 15 s, with jitter so replicas are not hit in step. */
export function backoff(attempt: number): number {
  const base = Math.min(15000, 1000 * 2 ** Math.min(attempt, 4));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

interface Props {
  token: string;
  /** The server closed with 4401: the session or API key was revoked or expired. */
  onUnauthorized: () => void;
  children: React.ReactNode;
}

export function LiveProvider({ token, onUnauthorized, children }: Props) {
  const [status, setStatus] = useState<LiveStatus>("connecting");
  const [epoch, setEpoch] = useState(0);
  const lastSeen = useRef<number | null>(null);
  const listeners = useRef(new Set<Listener>());
  const everOpened = useRef(false);
  const unauthorized = useRef(false);
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const dispatch = useCallback((message: ChangeMessage) => {
    for (const listener of listeners.current) {
      try {
        listener(message);
      } catch (error) {
        console.error("change listener failed", error);
      }
    }
  }, []);

  const onMessage = useCallback(
    (event: MessageEvent) => {
      let message: ServerMessage;
      try {
        message = JSON.parse(String(event.data)) as ServerMessage;
      } catch {
        return;
      }
      const socket = event.target as WebSocket;
      if (message.type === "ready") {
        const ready = message as { sequence?: unknown };
        if (lastSeen.current === null) {
          lastSeen.current = typeof ready.sequence === "number" ? ready.sequence : 0;
          setEpoch((e) => e + 1);
        }
        // Always resume: on the first connection it closes the gap between `ready` and the
        // live subscription; after a reconnect it replays what was missed.
        socket.send(JSON.stringify({ type: "resume", after: lastSeen.current }));
        setStatus("live");
        return;
      }
      if (message.type === "change") {
        const change = message as ChangeMessage;
        const next = nextSequence(lastSeen.current, change);
        if (next === null) return;
        lastSeen.current = next;
        dispatch(change);
      }
    },
    [dispatch],
  );

  useWebSocket(wsUrl(), {
    share: false,
    // The hook's lastMessage state is not used: messages go to listeners without re-rendering.
    filter: () => false,
    onOpen: (event) => {
      everOpened.current = true;
      (event.target as WebSocket).send(JSON.stringify({ type: "auth", token }));
    },
    onMessage,
    onClose: (event) => {
      if (!mounted.current) return; // closed because this provider went away (sign-out)
      if (event.code === 4401) {
        unauthorized.current = true;
        setStatus("offline");
        onUnauthorized();
        return;
      }
      setStatus(everOpened.current ? "reconnecting" : "connecting");
    },
    shouldReconnect: (event) => event.code !== 4401 && !unauthorized.current,
    retryOnError: true,
    reconnectAttempts: Number.MAX_SAFE_INTEGER,
    reconnectInterval: backoff,
    onReconnectStop: () => setStatus("offline"),
  });

  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  const lastSequence = useCallback(() => lastSeen.current, []);
  const value = useMemo(() => ({ status, epoch, subscribe, lastSequence }), [status, epoch, subscribe, lastSequence]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): LiveValue {
  const v = useContext(LiveContext);
  if (!v) throw new Error("useLive outside LiveProvider");
  return v;
}

/** Calls `listener` for every change message while the component is mounted. */
export function useChanges(listener: Listener): void {
  const { subscribe } = useLive();
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => subscribe((m) => ref.current(m)), [subscribe]);
}
