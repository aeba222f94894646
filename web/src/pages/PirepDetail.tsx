import { useCallback, useEffect, useState } from "react";
import { Alert, Button, TextAreaField } from "../components/form";
import { Card, DescriptionList, ErrorBlock, LoadingBlock, Modal, PageHeader, StatusBadge, UserName } from "../components/ui";
import { get, post } from "../lib/api";
import { formatDateTime, formatMinutes, formatNumber } from "../lib/format";
import { useLiveResource } from "../lib/hooks";
import { useChanges } from "../lib/live";
import { ApiError, errorMessage } from "../lib/problem";
import { Link, useRouter } from "../lib/router";
import { isAdmin, useMe } from "../lib/session";
import type { HistoryItem, Pirep } from "../lib/types";

const EVENT_WORDS: Record<string, string> = {
  PirepSubmitted: "Filed",
  PirepAccepted: "Accepted",
  PirepRejected: "Rejected",
};

function History({ id, version }: { id: string; version: number | undefined }) {
  const [items, setItems] = useState<HistoryItem[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    const ctrl = new AbortController();
    get<{ items: HistoryItem[] }>(`/pireps/${encodeURIComponent(id)}/history`, ctrl.signal).then(
      (r) => {
        setItems(r.items);
        setError(null);
      },
      (e: unknown) => {
        if (!ctrl.signal.aborted) setError(e);
      },
    );
    return () => ctrl.abort();
  }, [id]);
  // Reload whenever the PIREP's version moves (a review arrived, live or our own).
  useEffect(() => load(), [load, version]);

  if (error && !items) return <ErrorBlock error={error} onRetry={load} />;
  if (!items) return <LoadingBlock label="Loading history…" />;
  if (items.length === 0) return <p className="text-sm text-slate-600">No events recorded yet.</p>;
  return (
    <ol className="relative space-y-4 border-l border-slate-200 pl-5" data-testid="pirep-history">
      {items.map((item) => {
        const comment = typeof item.data.comment === "string" ? item.data.comment : typeof item.data.review_comment === "string" ? item.data.review_comment : null;
        return (
          <li key={item.sequence} className="relative">
            <span aria-hidden="true" className="absolute -left-[1.6rem] top-1 size-3 rounded-full bg-sky-600 ring-4 ring-white" />
            <p className="text-sm">
              <span className="font-semibold">{EVENT_WORDS[item.type] ?? item.type}</span>
              {item.actor_id && (
                <>
                  {" "}by <UserName id={item.actor_id} link />
                </>
              )}
            </p>
            <p className="text-xs text-slate-500">
              <time dateTime={item.occurred_at}>{formatDateTime(item.occurred_at)}</time>
            </p>
            {comment && <p className="mt-1 rounded bg-slate-50 px-2 py-1 text-sm text-slate-700">“{comment}”</p>}
          </li>
        );
      })}
    </ol>
  );
}

function ReviewPanel({ pirep, onReviewed, onConflict }: { pirep: Pirep; onReviewed: (p: Pirep) => void; onConflict: () => void }) {
  const [decision, setDecision] = useState<"accept" | "reject" | null>(null);
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit() {
    if (!decision) return;
    setBusy(true);
    setError(null);
    try {
      const body: { decision: string; comment?: string } = { decision };
      if (comment.trim()) body.comment = comment.trim();
      const { data } = await post<Pirep>(`/pireps/${encodeURIComponent(pirep.id)}/review`, body, { "If-Match": `"${pirep.version}"` });
      onReviewed(data);
      setDecision(null);
      setComment("");
    } catch (e) {
      if (e instanceof ApiError && (e.code === "invalid_state" || e.code === "conflict" || e.code === "precondition_failed")) {
        setError("Someone reviewed or changed this PIREP in the meantime; the page now shows its current state.");
        setDecision(null);
        onConflict();
      } else {
        setError(errorMessage(e));
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <Card title="Review">
      <p className="mb-3 text-sm text-slate-600">Accepted flights count towards the pilot's hours.</p>
      {error && !decision && (
        <div className="mb-3">
          <Alert>{error}</Alert>
        </div>
      )}
      <div className="flex flex-wrap gap-2">
        <Button variant="success" onClick={() => setDecision("accept")}>
          Accept…
        </Button>
        <Button variant="danger" onClick={() => setDecision("reject")}>
          Reject…
        </Button>
      </div>
      <Modal
        open={decision !== null}
        onClose={() => !busy && setDecision(null)}
        title={decision === "accept" ? `Accept ${pirep.flight_number}?` : `Reject ${pirep.flight_number}?`}
        description={decision === "accept" ? "The flight will count towards the pilot's hours." : "Tell the pilot why, so they can file it again correctly."}
      >
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void submit();
          }}
          className="space-y-4"
        >
          {error && <Alert>{error}</Alert>}
          <TextAreaField label={decision === "reject" ? "Reason for the pilot" : "Comment (optional)"} name="comment" rows={3} value={comment} onChange={(e) => setComment(e.target.value)} autoFocus />
          <div className="flex flex-wrap justify-end gap-2">
            <Button variant="secondary" type="button" onClick={() => setDecision(null)} disabled={busy}>
              Cancel
            </Button>
            <Button type="submit" variant={decision === "accept" ? "success" : "danger"} busy={busy}>
              {decision === "accept" ? "Accept PIREP" : "Reject PIREP"}
            </Button>
          </div>
        </form>
      </Modal>
    </Card>
  );
}

export default function PirepDetail({ params }: { params: Record<string, string> }) {
  const id = params.id!;
  const me = useMe();
  const { location } = useRouter();
  const { data: pirep, loading, error, reload, setData } = useLiveResource("pirep", `/pireps/${encodeURIComponent(id)}`);
  const [flash, setFlash] = useState<string | null>(location.search.get("filed") ? "Your PIREP has been filed. It will show here when it is reviewed." : null);

  // A review by someone else arrives as a change message: say so.
  useChanges((m) => {
    if (m.entity === "pirep" && m.id === id && m.event !== "PirepSubmitted") {
      const p = m.data as Pirep;
      if (p.status !== "pending" && p.reviewed_by !== me.id) setFlash(`This PIREP was ${p.status}.`);
    }
  });

  if (loading && !pirep) return <LoadingBlock label="Loading PIREP…" />;
  if (!pirep) return error ? <ErrorBlock error={error} onRetry={reload} /> : <LoadingBlock />;
  const canReview = isAdmin(me) && pirep.status === "pending";

  return (
    <div>
      <nav aria-label="Breadcrumb" className="mb-2 text-sm">
        <Link to="/pireps" className="text-sky-800 hover:underline">
          ← PIREPs
        </Link>
      </nav>
      <PageHeader
        title={`${pirep.flight_number}: ${pirep.departure} → ${pirep.arrival}`}
        description={
          <span className="inline-flex flex-wrap items-center gap-2">
            <span data-testid="pirep-status">
              <StatusBadge status={pirep.status} />
            </span>
            <span>
              Filed by <UserName id={pirep.pilot_id} link /> on {formatDateTime(pirep.submitted_at)}
            </span>
          </span>
        }
      />
      {flash && (
        <div className="mb-4">
          <Alert kind={pirep.status === "rejected" ? "info" : "success"}>{flash}</Alert>
        </div>
      )}
      {/* Phones: review first, then the flight, then history. Desktop: flight on the left,
          review and history on the right. */}
      <div className="grid gap-6 lg:grid-cols-3 lg:grid-rows-[auto_1fr] lg:items-start">
        {canReview && (
          <div className="lg:col-start-3 lg:row-start-1">
            <ReviewPanel
              pirep={pirep}
              onConflict={reload}
              onReviewed={(p) => {
                setData(p);
                setFlash(`You ${p.status} this PIREP.`);
              }}
            />
          </div>
        )}
        <div className="space-y-6 lg:col-span-2 lg:col-start-1 lg:row-span-2 lg:row-start-1">
          <Card title="Flight">
            <DescriptionList
              items={[
                ["Flight number", pirep.flight_number],
                ["Aircraft", [pirep.aircraft_type, pirep.aircraft_registration].filter(Boolean).join(" · ") || "—"],
                ["Departure", pirep.departure],
                ["Arrival", pirep.arrival],
                ["Block off", formatDateTime(pirep.block_off_at)],
                ["Block on", formatDateTime(pirep.block_on_at)],
                ["Flight time", formatMinutes(pirep.flight_time_minutes)],
                ["Distance", formatNumber(pirep.distance_nm, "nm")],
                ["Fuel used", formatNumber(pirep.fuel_used_kg, "kg")],
                ["Landing rate", formatNumber(pirep.landing_rate_fpm, "fpm")],
                ["Source", pirep.source],
                ["Route", pirep.route ?? "—"],
                ["Remarks", pirep.remarks ?? "—"],
              ]}
            />
          </Card>
          {pirep.status !== "pending" && (
            <Card title="Review outcome">
              <DescriptionList
                items={[
                  ["Decision", <StatusBadge key="s" status={pirep.status} />],
                  ["Reviewed by", <UserName key="u" id={pirep.reviewed_by} link />],
                  ["Reviewed", formatDateTime(pirep.reviewed_at)],
                  ["Comment", pirep.review_comment ?? "—"],
                ]}
              />
            </Card>
          )}
        </div>
        <div className={canReview ? "lg:col-start-3 lg:row-start-2" : "lg:col-start-3 lg:row-start-1"}>
          <Card title="History">
            <History id={pirep.id} version={pirep.version} />
          </Card>
        </div>
      </div>
    </div>
  );
}
