import { useState, type FormEvent } from "react";
import { Alert, Button, TextField } from "../components/form";
import { EmptyState, ErrorBlock, InfiniteScroll, LoadingBlock, Modal, PageHeader } from "../components/ui";
import { post } from "../lib/api";
import { formatDate, formatNumber } from "../lib/format";
import { useLiveList } from "../lib/hooks";
import { formErrorsFromError, type FormErrors } from "../lib/problem";
import { Link } from "../lib/router";
import { useMe } from "../lib/session";
import type { Tenant } from "../lib/types";

const FIELDS = ["name", "icao", "iata"] as const;
const NONE: FormErrors = { fields: {}, general: [] };

function CreateTenant({ open, onClose, onCreated }: { open: boolean; onClose: () => void; onCreated: (t: Tenant) => void }) {
  const [name, setName] = useState("");
  const [icao, setIcao] = useState("");
  const [iata, setIata] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors>(NONE);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErrors(NONE);
    try {
      const body: Record<string, string> = { name: name.trim(), icao: icao.trim() };
      if (iata.trim()) body.iata = iata.trim();
      const { data } = await post<Tenant>("/tenants", body);
      onCreated(data);
      setName("");
      setIcao("");
      setIata("");
    } catch (error) {
      setErrors(formErrorsFromError(error, FIELDS));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal open={open} onClose={() => !busy && onClose()} title="New airline" description="Airlines are the tenants of Albatross: their pilots and PIREPs are kept apart.">
      <form onSubmit={submit} noValidate className="space-y-4">
        {errors.general.length > 0 && <Alert>{errors.general.join(" ")}</Alert>}
        <TextField label="Name" name="name" autoComplete="organization" value={name} onChange={(e) => setName(e.target.value)} error={errors.fields.name} autoFocus />
        <div className="grid grid-cols-2 gap-4">
          <TextField label="ICAO code" name="icao" hint="3 letters" maxLength={3} autoComplete="off" value={icao} onChange={(e) => setIcao(e.target.value.toUpperCase())} error={errors.fields.icao} />
          <TextField label="IATA code (optional)" name="iata" hint="2 letters or digits" maxLength={2} autoComplete="off" value={iata} onChange={(e) => setIata(e.target.value.toUpperCase())} error={errors.fields.iata} />
        </div>
        <div className="flex justify-end gap-2">
          <Button variant="secondary" type="button" onClick={onClose} disabled={busy}>
            Cancel
          </Button>
          <Button type="submit" busy={busy}>
            Create airline
          </Button>
        </div>
      </form>
    </Modal>
  );
}

export default function Tenants() {
  const me = useMe();
  const list = useLiveList({ entity: "tenant", path: "/tenants" });
  const [open, setOpen] = useState(false);
  const [created, setCreated] = useState<string | null>(null);
  const platform = me.role === "PlatformAdmin";

  return (
    <div>
      <PageHeader
        title="Airlines"
        description={platform ? "Every airline on the platform." : "Your airline."}
        actions={
          platform ? (
            <Button onClick={() => setOpen(true)}>New airline</Button>
          ) : undefined
        }
      />
      {created && (
        <div className="mb-4">
          <Alert kind="success">{created}</Alert>
        </div>
      )}
      {list.loading && list.items.length === 0 ? (
        <LoadingBlock label="Loading airlines…" />
      ) : list.error && list.items.length === 0 ? (
        <ErrorBlock error={list.error} onRetry={list.reload} />
      ) : list.items.length === 0 ? (
        <EmptyState title="No airlines yet">{platform ? "Create the first one with “New airline”." : null}</EmptyState>
      ) : (
        <>
          <ul aria-label="Airlines" className="grid gap-4 sm:grid-cols-2 lg:grid-cols-3" data-testid="tenant-list">
            {list.items.map((t) => (
              <li key={t.id} className="rounded-lg bg-white p-4 shadow-sm ring-1 ring-slate-200">
                <div className="flex items-start justify-between gap-2">
                  <h2 className="font-semibold text-slate-900">{t.name}</h2>
                  <span className="rounded bg-sky-100 px-2 py-0.5 font-mono text-sm font-semibold text-sky-900">
                    {t.icao}
                    {t.iata ? ` / ${t.iata}` : ""}
                  </span>
                </div>
                <p className="mt-2 text-sm text-slate-600">
                  {formatNumber(t.pilot_count)} {t.pilot_count === 1 ? "pilot" : "pilots"} · since {formatDate(t.created_at)}
                </p>
                <Link to={`/users?tenant_id=${encodeURIComponent(t.id)}`} className="mt-2 inline-block text-sm font-semibold text-sky-800 hover:underline">
                  People<span className="sr-only"> of {t.name}</span>
                </Link>
              </li>
            ))}
          </ul>
          <InfiniteScroll hasMore={list.nextCursor !== null} loading={list.loadingMore} onMore={list.loadMore} />
        </>
      )}
      {platform && (
        <CreateTenant
          open={open}
          onClose={() => setOpen(false)}
          onCreated={(t) => {
            setOpen(false);
            setCreated(`Airline ${t.name} (${t.icao}) created.`);
            list.reload();
          }}
        />
      )}
    </div>
  );
}
