import { Checkbox, Field, Label } from "@headlessui/react";
import { useMemo, useState, type FormEvent } from "react";
import { Alert, Button, SelectField, TextField } from "../components/form";
import { Badge, EmptyState, ErrorBlock, InfiniteScroll, LoadingBlock, Modal, PageHeader } from "../components/ui";
import { post, randomKey } from "../lib/api";
import { formatDate, formatMinutes, roleLabel } from "../lib/format";
import { useLiveList } from "../lib/hooks";
import { formErrorsFromError, type FormErrors } from "../lib/problem";
import { Link, useRouter } from "../lib/router";
import { useMe } from "../lib/session";
import { ROLES, type Role, type Tenant, type User } from "../lib/types";

const FIELDS = ["email", "display_name", "password", "role", "tenant_id", "must_change_password"] as const;
const NONE: FormErrors = { fields: {}, general: [] };

/** A readable temporary password: 4 groups of 4 from an alphabet without look-alikes. */
function temporaryPassword(): string {
  const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const hex = randomKey();
  let out = "";
  for (let i = 0; i < 16; i++) {
    out += alphabet[parseInt(hex.slice(i * 2, i * 2 + 2), 16) % alphabet.length];
    if (i % 4 === 3 && i < 15) out += "-";
  }
  return out;
}

function RegisterUser({ open, onClose, onRegistered, tenants }: { open: boolean; onClose: () => void; onRegistered: (u: User, password: string) => void; tenants: Tenant[] }) {
  const me = useMe();
  const platform = me.role === "PlatformAdmin";
  const roles: Role[] = platform ? [...ROLES] : ["Pilot", "TenantAdmin"];
  const [email, setEmail] = useState("");
  const [displayName, setDisplayName] = useState("");
  const [password, setPassword] = useState(temporaryPassword);
  const [role, setRole] = useState<Role>("Pilot");
  const [tenantId, setTenantId] = useState<string>(platform ? "" : (me.tenant_id ?? ""));
  const [temporary, setTemporary] = useState(true);
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FormErrors>(NONE);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const local: Record<string, string> = {};
    if (role !== "PlatformAdmin" && !tenantId) local.tenant_id = "Choose the airline this person belongs to.";
    if (Object.keys(local).length) {
      setErrors({ fields: local, general: [] });
      return;
    }
    setBusy(true);
    setErrors(NONE);
    try {
      const body: Record<string, unknown> = {
        email: email.trim(),
        display_name: displayName.trim(),
        password,
        role,
        must_change_password: temporary,
      };
      if (role !== "PlatformAdmin") body.tenant_id = tenantId;
      const { data } = await post<User>("/users", body);
      onRegistered(data, password);
      setEmail("");
      setDisplayName("");
      setPassword(temporaryPassword());
    } catch (error) {
      setErrors(formErrorsFromError(error, FIELDS));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal open={open} onClose={() => !busy && onClose()} title="Register a user">
      <form onSubmit={submit} noValidate className="space-y-4">
        {errors.general.length > 0 && <Alert>{errors.general.join(" ")}</Alert>}
        <TextField label="Name" name="display_name" autoComplete="off" value={displayName} onChange={(e) => setDisplayName(e.target.value)} error={errors.fields.display_name} autoFocus />
        <TextField label="Email" name="email" type="email" autoComplete="off" value={email} onChange={(e) => setEmail(e.target.value)} error={errors.fields.email} />
        <div className="grid gap-4 sm:grid-cols-2">
          <SelectField label="Role" name="role" value={role} onChange={(e) => setRole(e.target.value as Role)} error={errors.fields.role}>
            {roles.map((r) => (
              <option key={r} value={r}>
                {roleLabel(r)}
              </option>
            ))}
          </SelectField>
          {platform ? (
            <SelectField label="Airline" name="tenant_id" value={role === "PlatformAdmin" ? "" : tenantId} disabled={role === "PlatformAdmin"} onChange={(e) => setTenantId(e.target.value)} error={errors.fields.tenant_id}>
              <option value="">{role === "PlatformAdmin" ? "None (platform)" : "Choose…"}</option>
              {tenants.map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name} ({t.icao})
                </option>
              ))}
            </SelectField>
          ) : (
            <TextField label="Airline" name="tenant_display" value={tenants.find((t) => t.id === tenantId)?.name ?? "Your airline"} disabled readOnly />
          )}
        </div>
        <div className="flex items-end gap-2">
          <TextField className="flex-1" label="Password" name="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} error={errors.fields.password} hint="12 to 256 characters. Share it with them securely." />
          <Button variant="secondary" type="button" onClick={() => setPassword(temporaryPassword())} className={errors.fields.password ? "mb-6" : "mb-5"}>
            New
          </Button>
        </div>
        <Field className="flex items-center gap-2">
          <Checkbox
            checked={temporary}
            onChange={setTemporary}
            name="must_change_password"
            className="group flex size-5 shrink-0 items-center justify-center rounded border border-slate-400 bg-white data-checked:border-sky-700 data-checked:bg-sky-700 data-focus:outline-2 data-focus:outline-offset-2 data-focus:outline-sky-600"
          >
            <svg aria-hidden="true" viewBox="0 0 14 14" className="size-3.5 stroke-white opacity-0 group-data-checked:opacity-100" fill="none" strokeWidth="2">
              <path d="M3 8l3 3 5-7" />
            </svg>
          </Checkbox>
          <Label className="text-sm text-slate-800">Temporary password: they must change it when they first sign in</Label>
        </Field>
        <div className="flex justify-end gap-2">
          <Button variant="secondary" type="button" onClick={onClose} disabled={busy}>
            Cancel
          </Button>
          <Button type="submit" busy={busy}>
            Register
          </Button>
        </div>
      </form>
    </Modal>
  );
}

export default function Users() {
  const me = useMe();
  const { location, navigate } = useRouter();
  const admin = me.role === "PlatformAdmin" || me.role === "TenantAdmin";
  const platform = me.role === "PlatformAdmin";
  const roleParam = location.search.get("role") ?? "";
  const role = (ROLES as readonly string[]).includes(roleParam) ? roleParam : "";
  const tenantParam = location.search.get("tenant_id") ?? "";
  const tenants = useLiveList({ entity: "tenant", path: "/tenants", limit: 200 });
  const list = useLiveList({ entity: "user", path: "/users", filter: { role, tenant_id: tenantParam } });
  const tenantById = useMemo(() => new Map(tenants.items.map((t) => [t.id, t])), [tenants.items]);
  const [open, setOpen] = useState(false);
  const [notice, setNotice] = useState<{ text: string; password?: string } | null>(null);

  function setFilter(key: "role" | "tenant_id", value: string) {
    const q = new URLSearchParams(location.search);
    if (value) q.set(key, value);
    else q.delete(key);
    const qs = q.toString();
    navigate(`/users${qs ? `?${qs}` : ""}`, { replace: true });
  }

  return (
    <div>
      <PageHeader
        title={admin ? "Users" : "Pilots"}
        description={platform ? "Everyone on the platform." : "The people of your airline."}
        actions={admin ? <Button onClick={() => setOpen(true)}>Register user</Button> : undefined}
      />
      {notice && (
        <div className="mb-4">
          <Alert kind="success">
            {notice.text}
            {notice.password && (
              <>
                {" "}Temporary password: <code className="rounded bg-white px-1 font-mono">{notice.password}</code>
              </>
            )}
          </Alert>
        </div>
      )}
      <div className="mb-4 grid gap-3 sm:max-w-xl sm:grid-cols-2">
        <SelectField label="Filter by role" name="role_filter" value={role} onChange={(e) => setFilter("role", e.target.value)}>
          <option value="">All roles</option>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {roleLabel(r)}
            </option>
          ))}
        </SelectField>
        {platform && (
          <SelectField label="Filter by airline" name="tenant_filter" value={tenantParam} onChange={(e) => setFilter("tenant_id", e.target.value)}>
            <option value="">All airlines</option>
            {tenants.items.map((t) => (
              <option key={t.id} value={t.id}>
                {t.name} ({t.icao})
              </option>
            ))}
          </SelectField>
        )}
      </div>
      {list.loading && list.items.length === 0 ? (
        <LoadingBlock label="Loading users…" />
      ) : list.error && list.items.length === 0 ? (
        <ErrorBlock error={list.error} onRetry={list.reload} />
      ) : list.items.length === 0 ? (
        <EmptyState title="Nobody matches">{role || tenantParam ? "Try other filters." : admin ? "Register the first user." : null}</EmptyState>
      ) : (
        <>
          <ul aria-label="Users" className="divide-y divide-slate-100 overflow-hidden rounded-lg bg-white shadow-sm ring-1 ring-slate-200" data-testid="user-list">
            {list.items.map((u) => {
              const t = u.tenant_id ? tenantById.get(u.tenant_id) : undefined;
              return (
                <li key={u.id} className="relative flex flex-col gap-1 px-4 py-3 hover:bg-slate-50 sm:flex-row sm:items-center sm:gap-4">
                  <div className="min-w-0 flex-1">
                    <Link to={`/users/${encodeURIComponent(u.id)}`} className="font-semibold text-sky-800 after:absolute after:inset-0 hover:underline">
                      {u.display_name}
                    </Link>
                    {u.email && <p className="truncate text-sm text-slate-600">{u.email}</p>}
                  </div>
                  <div className="flex flex-wrap items-center gap-2 text-sm text-slate-600">
                    <Badge tone={u.role === "Pilot" ? "slate" : u.role === "TenantAdmin" ? "sky" : "violet"}>{roleLabel(u.role)}</Badge>
                    {t && <Badge>{t.icao}</Badge>}
                    {u.must_change_password && <Badge>Temporary password</Badge>}
                    {u.role !== "PlatformAdmin" && (
                      <span>
                        {u.flight_count} {u.flight_count === 1 ? "flight" : "flights"} · {formatMinutes(u.flight_minutes)}
                      </span>
                    )}
                    <span className="hidden md:inline">joined {formatDate(u.created_at)}</span>
                  </div>
                </li>
              );
            })}
          </ul>
          <InfiniteScroll hasMore={list.nextCursor !== null} loading={list.loadingMore} onMore={list.loadMore} />
        </>
      )}
      {admin && (
        <RegisterUser
          open={open}
          tenants={platform ? tenants.items : tenants.items.filter((t) => t.id === me.tenant_id)}
          onClose={() => setOpen(false)}
          onRegistered={(u, password) => {
            setOpen(false);
            setNotice({ text: `${u.display_name} (${roleLabel(u.role)}) is registered.`, password: u.must_change_password ? password : undefined });
            list.reload();
          }}
        />
      )}
    </div>
  );
}
