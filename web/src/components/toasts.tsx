import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";
import { Link } from "../lib/router";

export interface Toast {
  id: number;
  /** What the toast is about (a PIREP id): `dismissKey` removes it once it no longer applies. */
  key?: string;
  title: string;
  body?: string;
  href?: string;
  linkLabel?: string;
}

interface ToastApi {
  push: (t: Omit<Toast, "id">) => void;
  dismissKey: (key: string) => void;
}

const ToastContext = createContext<ToastApi>({ push: () => undefined, dismissKey: () => undefined });

let nextId = 1;

/** Toasts in a polite live region (announced by screen readers), dismissed after 10 s. */
export function ToastProvider({ children }: { children: ReactNode }) {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const dismiss = useCallback((id: number) => setToasts((ts) => ts.filter((t) => t.id !== id)), []);
  const push = useCallback(
    (t: Omit<Toast, "id">) => {
      const id = nextId++;
      setToasts((ts) => [...ts.slice(-3), { ...t, id }]);
      setTimeout(() => dismiss(id), 10000);
    },
    [dismiss],
  );
  const dismissKey = useCallback((key: string) => setToasts((ts) => ts.filter((t) => t.key !== key)), []);
  const value = useMemo(() => ({ push, dismissKey }), [push, dismissKey]);
  return (
    <ToastContext.Provider value={value}>
      {children}
      <div aria-live="polite" className="pointer-events-none fixed inset-x-0 bottom-0 z-40 flex flex-col items-center gap-2 p-3 sm:items-end sm:p-6">
        {toasts.map((t) => (
          <div key={t.id} role="status" data-testid="toast" className="pointer-events-auto w-full max-w-sm rounded-lg bg-slate-900 p-4 text-white shadow-lg">
            <div className="flex items-start gap-3">
              <div className="min-w-0 flex-1">
                <p className="text-sm font-semibold">{t.title}</p>
                {t.body && <p className="mt-0.5 text-sm text-slate-200">{t.body}</p>}
                {t.href && (
                  <Link to={t.href} onClick={() => dismiss(t.id)} className="mt-2 inline-block text-sm font-semibold text-sky-300 underline">
                    {t.linkLabel ?? "Open"}
                  </Link>
                )}
              </div>
              <button type="button" onClick={() => dismiss(t.id)} className="rounded p-1 text-slate-300 hover:text-white" aria-label="Dismiss notification">
                ✕
              </button>
            </div>
          </div>
        ))}
      </div>
    </ToastContext.Provider>
  );
}

export function useToast() {
  return useContext(ToastContext);
}
