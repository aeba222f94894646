// Dates and durations in the user's own locale (the browser's language and time zone).

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const numberFormat = new Intl.NumberFormat(undefined);

function parse(value: string | null | undefined): Date | null {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function formatDateTime(value: string | null | undefined): string {
  const d = parse(value);
  return d ? dateTime.format(d) : "—";
}

export function formatDate(value: string | null | undefined): string {
  const d = parse(value);
  return d ? dateOnly.format(d) : "—";
}

export function formatNumber(value: number | null | undefined, unit = ""): string {
  if (value === null || value === undefined) return "—";
  return unit ? `${numberFormat.format(value)} ${unit}` : numberFormat.format(value);
}

/** 135 → "2 h 15 min". */
export function formatMinutes(minutes: number | null | undefined): string {
  if (minutes === null || minutes === undefined) return "—";
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (h === 0) return `${m} min`;
  return m === 0 ? `${numberFormat.format(h)} h` : `${numberFormat.format(h)} h ${m} min`;
}

/** A `datetime-local` input value (local wall time) → RFC 3339 UTC, or "" when empty/invalid. */
export function localInputToUtc(value: string): string {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A Date → `datetime-local` input value in local wall time. */
export function toLocalInput(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function roleLabel(role: string): string {
  return role === "PlatformAdmin" ? "Platform admin" : role === "TenantAdmin" ? "Airline admin" : role === "Pilot" ? "Pilot" : role;
}

export function statusLabel(status: string): string {
  return status.charAt(0).toUpperCase() + status.slice(1);
}
