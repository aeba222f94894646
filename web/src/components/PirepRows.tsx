import { memo, startTransition, useEffect, useState } from "react";
import { formatDateTime, formatMinutes } from "../lib/format";
import { Link } from "../lib/router";
import type { Pirep } from "../lib/types";
import { StatusBadge, UserName } from "./ui";

/** PIREPs as a responsive list: a grid row on wide screens, a compact card on phones. */
const FIRST_ROWS = 100;
const ROWS_PER_STEP = 150;

/**
 * How many of `count` rows to render now: a long list appears in steps of a few hundred rows
 * (one task each) instead of one long task, so the page stays responsive while 1,000 rows come
 * in. Once everything was shown, later growth (a live insert, the next page) renders at once.
 */
export function useProgressiveRows(count: number): number {
  const [limit, setLimit] = useState(FIRST_ROWS);
  useEffect(() => {
    if (count === 0 && limit !== FIRST_ROWS) setLimit(FIRST_ROWS);
    if (limit >= count) {
      if (count > 0 && limit !== Infinity) setLimit(Infinity);
      return;
    }
    const t = setTimeout(() => startTransition(() => setLimit((l) => l + ROWS_PER_STEP)), 0);
    return () => clearTimeout(t);
  }, [count, limit]);
  return Math.min(limit, count);
}

export function PirepRows({ items, showPilot = true, label = "PIREPs" }: { items: Pirep[]; showPilot?: boolean; label?: string }) {
  const shown = useProgressiveRows(items.length);
  const rows = shown < items.length ? items.slice(0, shown) : items;
  return (
    <div className="@container overflow-hidden rounded-lg bg-white shadow-sm ring-1 ring-slate-200">
      <div aria-hidden="true" className={`hidden ${COLS} gap-3 border-b border-slate-200 bg-slate-50 px-4 py-2 text-xs font-semibold uppercase tracking-wide text-slate-500 @xl:grid`}>
        <span>Flight</span>
        <span>Route</span>
        <span>{showPilot ? "Pilot" : "Aircraft"}</span>
        <span>Block off</span>
        <span className="hidden @3xl:block">Time</span>
        <span>Status</span>
      </div>
      <ul aria-label={label} className="divide-y divide-slate-100" data-testid="pirep-list">
        {rows.map((p) => (
          <PirepRow key={p.id} pirep={p} showPilot={showPilot} />
        ))}
      </ul>
    </div>
  );
}

// Wide container: six columns; medium: five (no flight time); narrow: a two-column card.
const COLS = "@xl:grid-cols-[6rem_8.5rem_minmax(6rem,1fr)_10.5rem_5.5rem] @3xl:grid-cols-[7rem_9rem_minmax(6rem,1fr)_11rem_6rem_6rem]";

const PirepRow = memo(function PirepRow({ pirep: p, showPilot }: { pirep: Pirep; showPilot: boolean }) {
  return (
    <li className={`pirep-row relative grid grid-cols-[minmax(0,1fr)_auto] gap-x-3 gap-y-0.5 px-4 py-3 hover:bg-slate-50 ${COLS} @xl:items-center`} data-pirep-id={p.id} data-status={p.status}>
      <Link to={`/pireps/${encodeURIComponent(p.id)}`} className="font-semibold text-sky-800 after:absolute after:inset-0 hover:underline focus:outline-none focus-visible:after:outline-2 focus-visible:after:outline-sky-600">
        {p.flight_number}
      </Link>
      <span className="text-right @xl:order-last @xl:text-left">
        <StatusBadge status={p.status} />
      </span>
      <span className="text-sm text-slate-800">
        {p.departure} → {p.arrival}
      </span>
      <span className="truncate text-right text-sm text-slate-600 @xl:text-left">
        {showPilot ? <UserName id={p.pilot_id} /> : (p.aircraft_type ?? "—")}
      </span>
      <span className="text-xs text-slate-500 @xl:text-sm @xl:text-slate-700">{formatDateTime(p.block_off_at)}</span>
      <span className="text-right text-xs text-slate-500 @xl:hidden @3xl:block @3xl:text-left @3xl:text-sm @3xl:text-slate-700">{formatMinutes(p.flight_time_minutes)}</span>
    </li>
  );
});
