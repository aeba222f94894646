// Resource shapes from /work/shared/contract.md (v1). Ids are opaque strings; timestamps RFC 3339 UTC.

export type Role = "PlatformAdmin" | "TenantAdmin" | "Pilot";
export const ROLES: readonly Role[] = ["PlatformAdmin", "TenantAdmin", "Pilot"];

export type PirepStatus = "pending" | "accepted" | "rejected";
export const PIREP_STATUSES: readonly PirepStatus[] = ["pending", "accepted", "rejected"];
export type PirepSource = "manual" | "acars" | "api";

export interface User {
  id: string;
  email: string | null;
  display_name: string;
  role: Role;
  tenant_id: string | null;
  created_at: string;
  must_change_password: boolean;
  flight_count: number;
  flight_minutes: number;
}

export interface Tenant {
  id: string;
  name: string;
  icao: string;
  iata: string | null;
  created_at: string;
  pilot_count: number;
}

export interface ApiKey {
  id: string;
  user_id?: string;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface CreatedApiKey {
  id: string;
  name: string;
  prefix: string;
  key: string;
  created_at: string;
}

export interface PirepInput {
  flight_number: string;
  departure: string;
  arrival: string;
  aircraft_type?: string | null;
  aircraft_registration?: string | null;
  block_off_at: string;
  block_on_at: string;
  flight_time_minutes: number;
  fuel_used_kg?: number | null;
  distance_nm?: number | null;
  landing_rate_fpm?: number | null;
  route?: string | null;
  remarks?: string | null;
  source?: PirepSource;
}

export interface Pirep extends Required<Omit<PirepInput, "source">> {
  id: string;
  tenant_id: string;
  pilot_id: string;
  status: PirepStatus;
  source: PirepSource;
  submitted_at: string;
  reviewed_at: string | null;
  reviewed_by: string | null;
  review_comment: string | null;
  version: number;
}

export interface HistoryItem {
  sequence: number;
  type: string;
  occurred_at: string;
  actor_id: string | null;
  data: Record<string, unknown>;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface LoginResponse {
  token: string;
  expires_at: string;
  must_change_password: boolean;
  user: User;
}

export type Entity = "tenant" | "user" | "pirep" | "apikey";

export interface EntityMap {
  tenant: Tenant;
  user: User;
  pirep: Pirep;
  apikey: ApiKey;
}

export type Resource = EntityMap[Entity];

/** A WebSocket `change` message: `data` is the resource as this recipient's GET returns it. */
export interface ChangeMessage<E extends Entity = Entity> {
  type: "change";
  sequence: number;
  entity: E;
  id: string;
  tenant_id: string | null;
  event: string;
  data: EntityMap[E];
}

export interface ReadyMessage {
  type: "ready";
  user_id: string;
  sequence: number;
}

export type ServerMessage = ChangeMessage | ReadyMessage | { type: string; [key: string]: unknown };
