import { Checkbox, Field, Label } from "@headlessui/react";
import { PirepRows } from "../components/PirepRows";
import { EmptyState, ErrorBlock, InfiniteScroll, LoadingBlock, PageHeader } from "../components/ui";
import { cx } from "../components/form";
import { useLiveList } from "../lib/hooks";
import { Link, useRouter } from "../lib/router";
import { useMe } from "../lib/session";
import { PIREP_STATUSES, type PirepStatus } from "../lib/types";

const FILTERS: { value: PirepStatus | ""; label: string }[] = [
  { value: "", label: "All" },
  ...PIREP_STATUSES.map((s) => ({ value: s, label: s.charAt(0).toUpperCase() + s.slice(1) })),
];

export default function PirepList() {
  const me = useMe();
  const { location, navigate } = useRouter();
  const raw = location.search.get("status") ?? "";
  const status = (PIREP_STATUSES as readonly string[]).includes(raw) ? raw : "";
  const mine = location.search.get("mine") === "1";
  const list = useLiveList({
    entity: "pirep",
    path: "/pireps",
    filter: { status, pilot_id: mine ? me.id : undefined },
    limit: 50,
  });

  function href(next: { status?: string; mine?: boolean }) {
    const q = new URLSearchParams();
    const s = next.status ?? status;
    const m = next.mine ?? mine;
    if (s) q.set("status", s);
    if (m) q.set("mine", "1");
    const qs = q.toString();
    return `/pireps${qs ? `?${qs}` : ""}`;
  }

  return (
    <div>
      <PageHeader
        title="PIREPs"
        description="Pilot reports, newest first. The list updates live."
        actions={
          me.role !== "PlatformAdmin" ? (
            <Link to="/pireps/new" className="inline-flex min-h-10 items-center rounded-md bg-sky-700 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-sky-800">
              File a PIREP
            </Link>
          ) : undefined
        }
      />
      <div className="mb-4 flex flex-col gap-3 sm:flex-row sm:items-center sm:justify-between">
        <nav aria-label="Filter by status" className="flex gap-1 overflow-x-auto rounded-lg bg-slate-200/70 p-1">
          {FILTERS.map((f) => (
            <Link
              key={f.value || "all"}
              to={href({ status: f.value })}
              aria-current={status === f.value ? "true" : undefined}
              className={cx(
                "rounded-md px-3 py-1.5 text-sm font-medium whitespace-nowrap",
                status === f.value ? "bg-white text-slate-900 shadow-sm" : "text-slate-700 hover:bg-white/60",
              )}
            >
              {f.label}
            </Link>
          ))}
        </nav>
        {me.role !== "PlatformAdmin" && (
          <Field className="flex items-center gap-2">
            <Checkbox
              checked={mine}
              onChange={(v: boolean) => navigate(href({ mine: v }), { replace: true })}
              className="group flex size-5 items-center justify-center rounded border border-slate-400 bg-white data-checked:border-sky-700 data-checked:bg-sky-700 data-focus:outline-2 data-focus:outline-offset-2 data-focus:outline-sky-600"
            >
              <svg aria-hidden="true" viewBox="0 0 14 14" className="size-3.5 stroke-white opacity-0 group-data-checked:opacity-100" fill="none" strokeWidth="2">
                <path d="M3 8l3 3 5-7" />
              </svg>
            </Checkbox>
            <Label className="text-sm text-slate-800">Only my flights</Label>
          </Field>
        )}
      </div>
      {list.loading && list.items.length === 0 ? (
        <LoadingBlock label="Loading PIREPs…" />
      ) : list.error && list.items.length === 0 ? (
        <ErrorBlock error={list.error} onRetry={list.reload} />
      ) : list.items.length === 0 ? (
        <EmptyState title={status ? `No ${status} PIREPs` : "No PIREPs yet"}>
          {status === "pending" ? "Everything has been reviewed." : "Filed flight reports appear here as soon as they arrive."}
        </EmptyState>
      ) : (
        <>
          <p className="sr-only" aria-live="polite">
            {list.items.length} PIREPs shown{list.nextCursor ? ", more available" : ""}
          </p>
          <PirepRows items={list.items} />
          <InfiniteScroll hasMore={list.nextCursor !== null} loading={list.loadingMore} onMore={list.loadMore} error={list.items.length ? list.error : null} />
        </>
      )}
    </div>
  );
}
