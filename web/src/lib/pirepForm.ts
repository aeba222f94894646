// The PIREP form's values (strings, as inputs hold them) and their conversion to PirepInput.

import { localInputToUtc, toLocalInput } from "./format";
import type { PirepInput, PirepSource } from "./types";

export const FIELDS = [
  "flight_number", "departure", "arrival", "aircraft_type", "aircraft_registration", "block_off_at", "block_on_at",
  "flight_time_minutes", "fuel_used_kg", "distance_nm", "landing_rate_fpm", "route", "remarks", "source",
] as const;
export type FieldName = (typeof FIELDS)[number];
export type Values = Record<FieldName, string>;

export function initialValues(): Values {
  const on = new Date();
  on.setSeconds(0, 0);
  const off = new Date(on.getTime() - 90 * 60000);
  return {
    flight_number: "", departure: "", arrival: "", aircraft_type: "", aircraft_registration: "",
    block_off_at: toLocalInput(off), block_on_at: toLocalInput(on), flight_time_minutes: "",
    fuel_used_kg: "", distance_nm: "", landing_rate_fpm: "", route: "", remarks: "", source: "manual",
  };
}

export const UPPER: ReadonlySet<FieldName> = new Set(["flight_number", "departure", "arrival", "aircraft_type", "aircraft_registration"]);

export function blockMinutes(v: Values): number | null {
  const off = Date.parse(v.block_off_at);
  const on = Date.parse(v.block_on_at);
  if (Number.isNaN(off) || Number.isNaN(on) || on <= off) return null;
  return Math.round((on - off) / 60000);
}

/** The form's strings → PirepInput; numbers that do not parse are reported per field. */
export function toInput(v: Values): { input: PirepInput; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const text = (s: string) => (s.trim() === "" ? null : s.trim());
  const num = (field: FieldName, integer = false): number | null => {
    const raw = v[field].trim().replace(",", ".");
    if (raw === "") return null;
    const n = Number(raw);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
      errors[field] = integer ? "Enter a whole number." : "Enter a number.";
      return null;
    }
    return n;
  };
  for (const f of ["flight_number", "departure", "arrival", "block_off_at", "block_on_at"] as const) {
    if (!v[f].trim()) errors[f] = "Required.";
  }
  const minutes = num("flight_time_minutes", true) ?? blockMinutes(v);
  if (minutes === null && !errors.flight_time_minutes) errors.flight_time_minutes = "Required.";
  const input: PirepInput = {
    flight_number: v.flight_number.trim(),
    departure: v.departure.trim(),
    arrival: v.arrival.trim(),
    block_off_at: localInputToUtc(v.block_off_at),
    block_on_at: localInputToUtc(v.block_on_at),
    flight_time_minutes: minutes ?? 0,
    source: v.source as PirepSource,
  };
  const optional: [keyof PirepInput, string | number | null][] = [
    ["aircraft_type", text(v.aircraft_type)],
    ["aircraft_registration", text(v.aircraft_registration)],
    ["fuel_used_kg", num("fuel_used_kg")],
    ["distance_nm", num("distance_nm")],
    ["landing_rate_fpm", num("landing_rate_fpm")],
    ["route", text(v.route)],
    ["remarks", text(v.remarks)],
  ];
  for (const [k, val] of optional) if (val !== null) (input as unknown as Record<string, unknown>)[k] = val;
  return { input, errors };
}

