// Building blocks of the signed-in screens (dialogs, badges, empty states, infinite scroll).

import { Dialog, DialogBackdrop, DialogPanel, DialogTitle } from "@headlessui/react";
import { memo, useEffect, useRef, useState, type ReactNode } from "react";
import { useUser } from "../lib/hooks";
import { errorMessage } from "../lib/problem";
import { Link } from "../lib/router";
import { statusLabel } from "../lib/format";
import type { PirepStatus } from "../lib/types";
import { Alert, Button, cx, Spinner } from "./form";

export function PageHeader({ title, description, actions }: { title: string; description?: ReactNode; actions?: ReactNode }) {
  useEffect(() => {
    document.title = `${title} · Albatross`;
  }, [title]);
  return (
    <div className="mb-6 flex flex-col gap-3 sm:flex-row sm:items-end sm:justify-between">
      <div className="min-w-0">
        <h1 tabIndex={-1} className="text-2xl font-bold tracking-tight text-slate-900 focus:outline-none">
          {title}
        </h1>
        {description && <p className="mt-1 text-sm text-slate-600">{description}</p>}
      </div>
      {actions && <div className="flex flex-wrap gap-2">{actions}</div>}
    </div>
  );
}

export function Card({ title, children, actions, className }: { title?: ReactNode; children: ReactNode; actions?: ReactNode; className?: string }) {
  return (
    <section className={cx("rounded-lg bg-white shadow-sm ring-1 ring-slate-200", className)}>
      {(title || actions) && (
        <div className="flex items-center justify-between gap-2 border-b border-slate-200 px-4 py-3">
          {title && <h2 className="text-base font-semibold text-slate-900">{title}</h2>}
          {actions}
        </div>
      )}
      <div className="p-4">{children}</div>
    </section>
  );
}

const statusStyles: Record<string, string> = {
  pending: "bg-amber-100 text-amber-900 ring-amber-600/30",
  accepted: "bg-emerald-100 text-emerald-900 ring-emerald-600/30",
  rejected: "bg-red-100 text-red-900 ring-red-600/30",
};

export function StatusBadge({ status }: { status: PirepStatus | string }) {
  return (
    <span
      data-status={status}
      className={cx("inline-flex items-center rounded-full px-2 py-0.5 text-xs font-semibold ring-1 ring-inset", statusStyles[status] ?? "bg-slate-100 text-slate-800 ring-slate-500/30")}
    >
      {statusLabel(status)}
    </span>
  );
}

export function Badge({ children, tone = "slate" }: { children: ReactNode; tone?: "slate" | "sky" | "violet" }) {
  const tones = {
    slate: "bg-slate-100 text-slate-800",
    sky: "bg-sky-100 text-sky-900",
    violet: "bg-violet-100 text-violet-900",
  };
  return <span className={cx("inline-flex items-center rounded px-1.5 py-0.5 text-xs font-medium", tones[tone])}>{children}</span>;
}

export function EmptyState({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="rounded-lg border border-dashed border-slate-300 px-4 py-10 text-center">
      <p className="font-medium text-slate-800">{title}</p>
      {children && <div className="mt-1 text-sm text-slate-600">{children}</div>}
    </div>
  );
}

export function LoadingBlock({ label = "Loading…" }: { label?: string }) {
  return (
    <div className="flex justify-center py-10 text-slate-600">
      <Spinner label={label} />
    </div>
  );
}

export function ErrorBlock({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  return (
    <Alert title="Could not load this">
      <p>{errorMessage(error)}</p>
      {onRetry && (
        <button type="button" onClick={onRetry} className="mt-2 font-semibold underline">
          Try again
        </button>
      )}
    </Alert>
  );
}

/** A user's display name, from the shared cache. */
export const UserName = memo(function UserName({ id, link }: { id: string | null | undefined; link?: boolean }) {
  const user = useUser(id);
  if (!id) return <span>—</span>;
  const text = user ? user.display_name : "…";
  return link ? (
    <Link to={`/users/${encodeURIComponent(id)}`} className="text-sky-800 hover:underline">
      {text}
    </Link>
  ) : (
    <span>{text}</span>
  );
});

/**
 * Loads the next page when the end of a list scrolls into view (IntersectionObserver), with a
 * button as the keyboard-reachable fallback.
 */
export function InfiniteScroll({ hasMore, loading, onMore, error }: { hasMore: boolean; loading: boolean; onMore: () => void; error?: unknown }) {
  const ref = useRef<HTMLDivElement>(null);
  const onMoreRef = useRef(onMore);
  onMoreRef.current = onMore;
  useEffect(() => {
    const el = ref.current;
    if (!el || !hasMore || typeof IntersectionObserver === "undefined") return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) onMoreRef.current();
    }, { rootMargin: "400px" });
    observer.observe(el);
    return () => observer.disconnect();
  }, [hasMore, loading]);
  if (!hasMore) return null;
  return (
    <div ref={ref} className="flex flex-col items-center gap-2 py-4" data-testid="load-more">
      {error ? <p className="text-sm text-red-700">{errorMessage(error)}</p> : null}
      <Button variant="secondary" onClick={onMore} busy={loading}>
        {loading ? "Loading more…" : "Load more"}
      </Button>
    </div>
  );
}

export function Modal({ open, onClose, title, children, description }: { open: boolean; onClose: () => void; title: string; description?: ReactNode; children: ReactNode }) {
  return (
    <Dialog open={open} onClose={onClose} className="relative z-50">
      <DialogBackdrop transition className="fixed inset-0 bg-slate-900/40 transition-opacity duration-150 data-closed:opacity-0" />
      <div className="fixed inset-0 w-screen overflow-y-auto">
        <div className="flex min-h-full items-end justify-center p-2 sm:items-center sm:p-4">
          <DialogPanel
            transition
            className="w-full max-w-lg rounded-lg bg-white p-5 shadow-xl ring-1 ring-slate-200 transition duration-150 data-closed:translate-y-2 data-closed:opacity-0"
          >
            <DialogTitle className="text-lg font-semibold text-slate-900">{title}</DialogTitle>
            {description && <div className="mt-1 text-sm text-slate-600">{description}</div>}
            <div className="mt-4">{children}</div>
          </DialogPanel>
        </div>
      </div>
    </Dialog>
  );
}

/** Copies text to the clipboard; falls back to selecting it when the Clipboard API is missing. */
export function CopyButton({ text, targetId }: { text: string; targetId?: string }) {
  const [state, setState] = useState<"idle" | "copied" | "select">("idle");
  async function copy() {
    try {
      await navigator.clipboard.writeText(text);
      setState("copied");
    } catch {
      const el = targetId ? document.getElementById(targetId) : null;
      if (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement) {
        el.focus();
        el.select();
      }
      setState("select");
    }
    setTimeout(() => setState("idle"), 2500);
  }
  return (
    <Button variant="secondary" onClick={copy} aria-live="polite">
      {state === "copied" ? "Copied ✓" : state === "select" ? "Press Ctrl+C to copy" : "Copy"}
    </Button>
  );
}

export function DescriptionList({ items }: { items: [ReactNode, ReactNode][] }) {
  return (
    <dl className="grid grid-cols-2 gap-x-6 gap-y-3">
      {items.map(([term, value], i) => (
        <div key={i} className="min-w-0">
          <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">{term}</dt>
          <dd className="mt-0.5 break-words text-sm text-slate-900">{value}</dd>
        </div>
      ))}
    </dl>
  );
}
