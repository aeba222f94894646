import { useEffect } from "react";
import { PirepRows } from "../components/PirepRows";
import { Card, EmptyState, ErrorBlock, LoadingBlock, PageHeader } from "../components/ui";
import { get } from "../lib/api";
import { formatMinutes, formatNumber } from "../lib/format";
import { useLiveList } from "../lib/hooks";
import { Link } from "../lib/router";
import { isAdmin, useMe, useSession } from "../lib/session";
import type { User } from "../lib/types";

function Figures({ user }: { user: User }) {
  return (
    <Card title="Your flying">
      <dl className="grid grid-cols-2 gap-4" data-testid="flight-figures">
        <div>
          <dt className="text-sm text-slate-600">Accepted flights</dt>
          <dd className="text-2xl font-bold whitespace-nowrap tabular-nums" data-testid="flight-count">
            {formatNumber(user.flight_count)}
          </dd>
        </div>
        <div>
          <dt className="text-sm text-slate-600">Flight time</dt>
          <dd className="text-2xl font-bold whitespace-nowrap tabular-nums" data-testid="flight-time">
            {formatMinutes(user.flight_minutes)}
          </dd>
        </div>
      </dl>
      <p className="mt-3 text-xs text-slate-500">Counts accepted PIREPs only; updates as soon as one is reviewed.</p>
    </Card>
  );
}

function PendingReviews() {
  const list = useLiveList({ entity: "pirep", path: "/pireps", filter: { status: "pending" }, limit: 10 });
  return (
    <Card
      title="Waiting for review"
      actions={
        <Link to="/pireps?status=pending" className="text-sm font-semibold text-sky-800 hover:underline">
          All pending
        </Link>
      }
    >
      {list.loading && list.items.length === 0 ? (
        <LoadingBlock />
      ) : list.error && list.items.length === 0 ? (
        <ErrorBlock error={list.error} onRetry={list.reload} />
      ) : list.items.length === 0 ? (
        <EmptyState title="Nothing to review">New PIREPs appear here the moment they are filed.</EmptyState>
      ) : (
        <div data-testid="pending-reviews">
          <PirepRows items={list.items} label="PIREPs waiting for review" />
        </div>
      )}
    </Card>
  );
}

function RecentPireps({ pilotId }: { pilotId?: string }) {
  const list = useLiveList({ entity: "pirep", path: "/pireps", filter: { pilot_id: pilotId }, limit: 5 });
  return (
    <Card
      title={pilotId ? "Your recent PIREPs" : "Recent PIREPs"}
      actions={
        <Link to={pilotId ? "/pireps?mine=1" : "/pireps"} className="text-sm font-semibold text-sky-800 hover:underline">
          See all
        </Link>
      }
    >
      {list.loading && list.items.length === 0 ? (
        <LoadingBlock />
      ) : list.error && list.items.length === 0 ? (
        <ErrorBlock error={list.error} onRetry={list.reload} />
      ) : list.items.length === 0 ? (
        <EmptyState title="No PIREPs yet">{pilotId ? "File your first flight report to see it here." : "Flights filed by your pilots show up here."}</EmptyState>
      ) : (
        <div data-testid="recent-pireps">
          <PirepRows items={list.items} showPilot={!pilotId} label={pilotId ? "Your recent PIREPs" : "Recent PIREPs"} />
        </div>
      )}
    </Card>
  );
}

export default function Dashboard() {
  const me = useMe();
  const { setUser } = useSession();
  const admin = isAdmin(me);
  const flies = me.role !== "PlatformAdmin";

  // Fresh figures on every visit (read-your-writes after own commands); live after that.
  useEffect(() => {
    const ctrl = new AbortController();
    get<User>("/me", ctrl.signal).then(setUser, () => undefined);
    return () => ctrl.abort();
  }, [setUser]);

  return (
    <div>
      <PageHeader
        title="Dashboard"
        description={`Welcome back, ${me.display_name}.`}
        actions={
          flies ? (
            <Link to="/pireps/new" className="inline-flex min-h-10 items-center rounded-md bg-sky-700 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-sky-800">
              File a PIREP
            </Link>
          ) : undefined
        }
      />
      <div className="grid gap-6 lg:grid-cols-3">
        <div className="space-y-6 lg:col-span-2">
          {admin && <PendingReviews />}
          <RecentPireps pilotId={me.role === "Pilot" ? me.id : undefined} />
        </div>
        <div className="space-y-6">
          {flies && <Figures user={me} />}
          <Card title="Shortcuts">
            <ul className="space-y-2 text-sm">
              {flies && (
                <li>
                  <Link to="/pireps/new" className="font-medium text-sky-800 hover:underline">
                    File a flight report
                  </Link>
                </li>
              )}
              <li>
                <Link to="/pireps" className="font-medium text-sky-800 hover:underline">
                  Browse PIREPs
                </Link>
              </li>
              <li>
                <Link to={`/users/${encodeURIComponent(me.id)}`} className="font-medium text-sky-800 hover:underline">
                  My API keys (for ACARS clients)
                </Link>
              </li>
              <li>
                <Link to="/account/password" className="font-medium text-sky-800 hover:underline">
                  Change password
                </Link>
              </li>
            </ul>
          </Card>
        </div>
      </div>
    </div>
  );
}
