import { useMemo, useRef, useState, type FormEvent } from "react";
import { Alert, Button, SelectField, TextAreaField, TextField } from "../components/form";
import { Card, PageHeader } from "../components/ui";
import { post, randomKey } from "../lib/api";
import { blockMinutes, FIELDS, initialValues, toInput, UPPER, type FieldName, type Values } from "../lib/pirepForm";
import { formErrorsFromError, type FormErrors } from "../lib/problem";
import { Link, useRouter } from "../lib/router";
import { useMe } from "../lib/session";
import type { Pirep } from "../lib/types";

const NONE: FormErrors = { fields: {}, general: [] };

export default function PirepSubmit() {
  const me = useMe();
  const { navigate } = useRouter();
  const [values, setValues] = useState<Values>(initialValues);
  const [errors, setErrors] = useState<FormErrors>(NONE);
  const [busy, setBusy] = useState(false);
  // One Idempotency-Key per distinct payload: a retry of the same report cannot file it twice.
  const attempt = useRef<{ body: string; key: string } | null>(null);
  const formRef = useRef<HTMLFormElement>(null);
  const suggested = useMemo(() => blockMinutes(values), [values]);

  if (me.role === "PlatformAdmin") {
    return (
      <div>
        <PageHeader title="File a PIREP" />
        <Alert kind="info">Platform admins belong to no airline, so they cannot file PIREPs.</Alert>
      </div>
    );
  }

  const set = (field: FieldName) => (e: { target: { value: string } }) => {
    const value = UPPER.has(field) ? e.target.value.toUpperCase() : e.target.value;
    setValues((v) => ({ ...v, [field]: value }));
    if (errors.fields[field]) setErrors((x) => ({ ...x, fields: { ...x.fields, [field]: "" } }));
  };

  function focusFirstError(fields: Record<string, string>) {
    requestAnimationFrame(() => {
      const first = FIELDS.find((f) => fields[f]);
      const el = first ? formRef.current?.querySelector<HTMLElement>(`[name="${first}"]`) : null;
      el?.focus();
    });
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    const { input, errors: local } = toInput(values);
    if (Object.keys(local).length) {
      setErrors({ fields: local, general: ["Please correct the highlighted fields."] });
      focusFirstError(local);
      return;
    }
    const body = JSON.stringify(input);
    if (!attempt.current || attempt.current.body !== body) attempt.current = { body, key: randomKey() };
    setBusy(true);
    setErrors(NONE);
    try {
      const { data } = await post<Pirep>("/pireps", input, { "Idempotency-Key": attempt.current.key });
      navigate(`/pireps/${encodeURIComponent(data.id)}?filed=1`);
    } catch (error) {
      const mapped = formErrorsFromError(error, FIELDS);
      if (Object.keys(mapped.fields).length && mapped.general.length === 0) {
        mapped.general = ["The report was not filed. Please correct the highlighted fields."];
      }
      setErrors(mapped);
      focusFirstError(mapped.fields);
      setBusy(false);
    }
  }

  const err = (f: FieldName) => errors.fields[f] || null;

  return (
    <div className="max-w-3xl">
      <PageHeader title="File a PIREP" description="Report a completed flight. Times are in your local time zone." />
      <form ref={formRef} onSubmit={submit} noValidate className="space-y-6">
        {errors.general.length > 0 && <Alert>{errors.general.join(" ")}</Alert>}
        <Card title="Flight">
          <div className="grid gap-4 sm:grid-cols-3">
            <TextField label="Flight number" name="flight_number" placeholder="BAW123" autoComplete="off" maxLength={10} value={values.flight_number} onChange={set("flight_number")} error={err("flight_number")} />
            <TextField label="Aircraft type" name="aircraft_type" placeholder="A320" hint="ICAO designator" autoComplete="off" maxLength={4} value={values.aircraft_type} onChange={set("aircraft_type")} error={err("aircraft_type")} />
            <TextField label="Registration" name="aircraft_registration" placeholder="G-EUPT" autoComplete="off" value={values.aircraft_registration} onChange={set("aircraft_registration")} error={err("aircraft_registration")} />
          </div>
        </Card>
        <Card title="Route">
          <div className="grid gap-4 sm:grid-cols-2">
            <TextField label="Departure airport" name="departure" placeholder="EGLL" hint="4-letter ICAO code" autoComplete="off" value={values.departure} onChange={set("departure")} error={err("departure")} />
            <TextField label="Arrival airport" name="arrival" placeholder="LFPG" hint="4-letter ICAO code" autoComplete="off" value={values.arrival} onChange={set("arrival")} error={err("arrival")} />
            <TextField className="sm:col-span-2" label="Route" name="route" placeholder="MODMI L9 KENET UL9 …" autoComplete="off" value={values.route} onChange={set("route")} error={err("route")} />
          </div>
        </Card>
        <Card title="Times">
          <div className="grid gap-4 sm:grid-cols-3">
            <TextField label="Block off" name="block_off_at" type="datetime-local" value={values.block_off_at} onChange={set("block_off_at")} error={err("block_off_at")} />
            <TextField label="Block on" name="block_on_at" type="datetime-local" value={values.block_on_at} onChange={set("block_on_at")} error={err("block_on_at")} />
            <TextField
              label="Flight time (minutes)"
              name="flight_time_minutes"
              inputMode="numeric"
              placeholder={suggested !== null ? String(suggested) : ""}
              hint={suggested !== null ? `Empty uses the block time: ${suggested} min` : "Airborne minutes"}
              value={values.flight_time_minutes}
              onChange={set("flight_time_minutes")}
              error={err("flight_time_minutes")}
            />
          </div>
        </Card>
        <Card title="Figures (optional)">
          <div className="grid gap-4 sm:grid-cols-3">
            <TextField label="Fuel used (kg)" name="fuel_used_kg" inputMode="decimal" value={values.fuel_used_kg} onChange={set("fuel_used_kg")} error={err("fuel_used_kg")} />
            <TextField label="Distance (nm)" name="distance_nm" inputMode="decimal" value={values.distance_nm} onChange={set("distance_nm")} error={err("distance_nm")} />
            <TextField label="Landing rate (fpm)" name="landing_rate_fpm" inputMode="decimal" placeholder="-140" value={values.landing_rate_fpm} onChange={set("landing_rate_fpm")} error={err("landing_rate_fpm")} />
            <SelectField label="Source" name="source" value={values.source} onChange={set("source")} error={err("source")}>
              <option value="manual">Manual</option>
              <option value="acars">ACARS</option>
              <option value="api">API</option>
            </SelectField>
            <TextAreaField className="sm:col-span-3" label="Remarks" name="remarks" rows={3} value={values.remarks} onChange={set("remarks")} error={err("remarks")} />
          </div>
        </Card>
        <div className="flex flex-wrap items-center gap-3">
          <Button type="submit" busy={busy}>
            {busy ? "Filing…" : "File PIREP"}
          </Button>
          <Link to="/pireps" className="text-sm font-medium text-slate-700 hover:underline">
            Cancel
          </Link>
        </div>
      </form>
    </div>
  );
}
