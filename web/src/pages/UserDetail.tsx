import { useState, type FormEvent } from "react";
import { Alert, Button, TextAreaField, TextField } from "../components/form";
import { Badge, Card, CopyButton, DescriptionList, EmptyState, ErrorBlock, InfiniteScroll, LoadingBlock, Modal, PageHeader } from "../components/ui";
import { del, post } from "../lib/api";
import { formatDateTime, formatMinutes, roleLabel } from "../lib/format";
import { useLiveList, useLiveResource } from "../lib/hooks";
import { errorMessage, formErrorsFromError, type FormErrors } from "../lib/problem";
import { Link } from "../lib/router";
import { useMe } from "../lib/session";
import type { ApiKey, CreatedApiKey, User } from "../lib/types";

const NONE: FormErrors = { fields: {}, general: [] };

/** Contract: PlatformAdmin any user; TenantAdmin own-tenant users; Pilot only self. */
function canManageKeys(me: User, user: User): boolean {
  if (me.role === "PlatformAdmin") return true;
  if (me.role === "TenantAdmin") return user.tenant_id === me.tenant_id;
  return me.id === user.id;
}

function CreateKey({ userId, onCreated }: { userId: string; onCreated: () => void }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors>(NONE);
  const [created, setCreated] = useState<CreatedApiKey | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErrors(NONE);
    try {
      const { data } = await post<CreatedApiKey>(`/users/${encodeURIComponent(userId)}/apikeys`, { name: name.trim() });
      setCreated(data);
      setName("");
      onCreated();
    } catch (error) {
      setErrors(formErrorsFromError(error, ["name"]));
    } finally {
      setBusy(false);
    }
  }

  function close() {
    if (busy) return;
    setOpen(false);
    setCreated(null);
    setErrors(NONE);
  }

  return (
    <>
      <Button onClick={() => setOpen(true)}>New API key</Button>
      <Modal open={open} onClose={close} title={created ? "Your new API key" : "New API key"} description={created ? undefined : "For an ACARS client or flight tracker: it acts as this user."}>
        {created ? (
          <div className="space-y-4">
            <Alert kind="info">Copy the key now. It is shown only this once; Albatross keeps only a hash of it.</Alert>
            <TextAreaField
              id="new-api-key"
              label={`Key “${created.name}”`}
              name="api_key"
              rows={2}
              value={created.key}
              readOnly
              spellCheck={false}
              className="[&_textarea]:font-mono [&_textarea]:break-all"
              onFocus={(e) => e.currentTarget.select()}
              data-testid="new-api-key"
            />
            <div className="flex flex-wrap justify-end gap-2">
              <CopyButton text={created.key} targetId="new-api-key" />
              <Button onClick={close}>Done</Button>
            </div>
          </div>
        ) : (
          <form onSubmit={submit} noValidate className="space-y-4">
            {errors.general.length > 0 && <Alert>{errors.general.join(" ")}</Alert>}
            <TextField label="Name" name="name" placeholder="e.g. smartCARS on my PC" value={name} onChange={(e) => setName(e.target.value)} error={errors.fields.name} autoFocus />
            <div className="flex justify-end gap-2">
              <Button variant="secondary" type="button" onClick={close}>
                Cancel
              </Button>
              <Button type="submit" busy={busy}>
                Create key
              </Button>
            </div>
          </form>
        )}
      </Modal>
    </>
  );
}

function RevokeKey({ userId, apiKey, onRevoked }: { userId: string; apiKey: ApiKey; onRevoked: () => void }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  async function revoke() {
    setBusy(true);
    setError(null);
    try {
      await del(`/users/${encodeURIComponent(userId)}/apikeys/${encodeURIComponent(apiKey.id)}`);
      setOpen(false);
      onRevoked();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <>
      <Button variant="secondary" onClick={() => setOpen(true)} aria-label={`Revoke key ${apiKey.name}`}>
        Revoke
      </Button>
      <Modal open={open} onClose={() => !busy && setOpen(false)} title={`Revoke “${apiKey.name}”?`} description="Clients using this key stop working within a second. This cannot be undone.">
        {error && (
          <div className="mb-3">
            <Alert>{error}</Alert>
          </div>
        )}
        <div className="flex justify-end gap-2">
          <Button variant="secondary" onClick={() => setOpen(false)} disabled={busy}>
            Keep it
          </Button>
          <Button variant="danger" onClick={revoke} busy={busy}>
            Revoke key
          </Button>
        </div>
      </Modal>
    </>
  );
}

function ApiKeys({ user }: { user: User }) {
  const keys = useLiveList({ entity: "apikey", path: `/users/${encodeURIComponent(user.id)}/apikeys`, match: { user_id: user.id } });
  return (
    <Card title="API keys" actions={<CreateKey userId={user.id} onCreated={keys.reload} />}>
      {keys.loading && keys.items.length === 0 ? (
        <LoadingBlock label="Loading keys…" />
      ) : keys.error && keys.items.length === 0 ? (
        <ErrorBlock error={keys.error} onRetry={keys.reload} />
      ) : keys.items.length === 0 ? (
        <EmptyState title="No API keys">Create one to connect an ACARS client or a flight tracker.</EmptyState>
      ) : (
        <>
          <ul aria-label="API keys" className="divide-y divide-slate-100" data-testid="apikey-list">
            {keys.items.map((k) => (
              <li key={k.id} className="flex flex-col gap-2 py-3 sm:flex-row sm:items-center sm:justify-between" data-key-name={k.name} data-revoked={k.revoked_at ? "true" : "false"}>
                <div className="min-w-0">
                  <p className="font-medium text-slate-900">
                    {k.name} {k.revoked_at ? <Badge>Revoked</Badge> : <Badge tone="sky">Active</Badge>}
                  </p>
                  <p className="text-sm text-slate-600">
                    <code className="font-mono">{k.prefix}…</code> · created {formatDateTime(k.created_at)} · {k.last_used_at ? `last used ${formatDateTime(k.last_used_at)}` : "never used"}
                    {k.revoked_at ? ` · revoked ${formatDateTime(k.revoked_at)}` : ""}
                  </p>
                </div>
                {!k.revoked_at && <RevokeKey userId={user.id} apiKey={k} onRevoked={keys.reload} />}
              </li>
            ))}
          </ul>
          <InfiniteScroll hasMore={keys.nextCursor !== null} loading={keys.loadingMore} onMore={keys.loadMore} />
        </>
      )}
    </Card>
  );
}

export default function UserDetail({ params }: { params: Record<string, string> }) {
  const me = useMe();
  const id = params.id!;
  const { data: user, loading, error, reload } = useLiveResource("user", `/users/${encodeURIComponent(id)}`);
  if (loading && !user) return <LoadingBlock label="Loading user…" />;
  if (!user) return error ? <ErrorBlock error={error} onRetry={reload} /> : <LoadingBlock />;
  const self = user.id === me.id;
  return (
    <div>
      <nav aria-label="Breadcrumb" className="mb-2 text-sm">
        <Link to="/users" className="text-sky-800 hover:underline">
          ← {me.role === "Pilot" ? "Pilots" : "Users"}
        </Link>
      </nav>
      <PageHeader title={self ? `${user.display_name} (you)` : user.display_name} description={roleLabel(user.role)} />
      <div className="grid gap-6 lg:grid-cols-3">
        <div className="space-y-6 lg:col-span-2">
          {canManageKeys(me, user) ? (
            <ApiKeys user={user} />
          ) : (
            <Card title="API keys">
              <p className="text-sm text-slate-600">Only the user and their airline's admins manage these keys.</p>
            </Card>
          )}
        </div>
        <Card title="Profile">
          <DescriptionList
            items={[
              ["Email", user.email ?? "Hidden"],
              ["Role", roleLabel(user.role)],
              ["Accepted flights", String(user.flight_count)],
              ["Flight time", formatMinutes(user.flight_minutes)],
              ["Member since", formatDateTime(user.created_at)],
              ["Password", user.must_change_password ? "Temporary (must be changed)" : "Set by the user"],
            ]}
          />
          {self && (
            <Link to="/account/password" className="mt-4 inline-block text-sm font-semibold text-sky-800 hover:underline">
              Change my password
            </Link>
          )}
        </Card>
      </div>
    </div>
  );
}
