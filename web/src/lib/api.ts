// The REST client: bearer token, problem+json errors, and read-your-writes.
//
// Every successful command answers with `Albatross-Sequence: N`. The client remembers the
// highest N of its own commands and sends `Albatross-Min-Sequence: N` on every later GET, so a
// read after a write never shows data older than that write (the server waits up to 5 s; on
// 503 `unavailable` the GET is retried after `Retry-After`).

import { ApiError, toProblem } from "./problem";

export interface ApiHandlers {
  /** A 401 on an authenticated call: the session is gone. */
  onUnauthorized?: () => void;
  /** A 403 `password_change_required`. */
  onPasswordChangeRequired?: () => void;
}

let token: string | null = null;
let minSequence = 0;
let handlers: ApiHandlers = {};

export function setToken(value: string | null): void {
  token = value;
  if (value === null) minSequence = 0;
}

export function getToken(): string | null {
  return token;
}

export function setApiHandlers(value: ApiHandlers): void {
  handlers = value;
}

/** The highest `Albatross-Sequence` of this tab's own commands (0 before the first). */
export function currentMinSequence(): number {
  return minSequence;
}

export function noteSequence(value: string | null): number | null {
  if (!value) return null;
  const n = Number.parseInt(value, 10);
  if (!Number.isFinite(n) || n < 0) return null;
  if (n > minSequence) minSequence = n;
  return n;
}

export interface RequestOptions {
  method?: "GET" | "POST" | "DELETE" | "PUT" | "PATCH";
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Retries of a GET answered 503 `unavailable` (default 3). */
  retries?: number;
}

export interface ApiResponse<T> {
  data: T;
  status: number;
  /** `Albatross-Sequence` of a command response. */
  sequence: number | null;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });

function retryAfterSeconds(response: Response): number | null {
  const raw = response.headers.get("Retry-After");
  if (!raw) return null;
  const n = Number(raw);
  if (Number.isFinite(n)) return Math.max(0, n);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

export async function request<T>(path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
  const method = options.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  if (method === "GET" && minSequence > 0) headers["Albatross-Min-Sequence"] = String(minSequence);

  let attempt = 0;
  const maxRetries = method === "GET" ? (options.retries ?? 3) : 0;
  for (;;) {
    let response: Response;
    try {
      response = await fetch(`/api${path}`, { method, headers, body, signal: options.signal, cache: "no-store" });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw new ApiError({ status: 0, code: "network_error", title: "Network error" });
    }
    if (response.ok) {
      const sequence = method === "GET" ? null : noteSequence(response.headers.get("Albatross-Sequence"));
      let data: unknown = null;
      if (response.status !== 204) {
        const text = await response.text();
        data = text ? JSON.parse(text) : null;
      }
      return { data: data as T, status: response.status, sequence };
    }
    const retryAfter = retryAfterSeconds(response);
    let parsed: unknown = null;
    try {
      const text = await response.text();
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    const problem = toProblem(response.status, response.statusText, parsed);
    if (response.status === 503 && attempt < maxRetries) {
      attempt += 1;
      await sleep(Math.min(5, retryAfter ?? 1) * 1000, options.signal);
      continue;
    }
    const error = new ApiError(problem, retryAfter);
    if (problem.status === 401 && token && !path.startsWith("/auth/login")) handlers.onUnauthorized?.();
    if (problem.code === "password_change_required") handlers.onPasswordChangeRequired?.();
    throw error;
  }
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await request<T>(path, { signal })).data;
}

export function post<T>(path: string, body?: unknown, headers?: Record<string, string>): Promise<ApiResponse<T>> {
  return request<T>(path, { method: "POST", body, headers });
}

export function del(path: string): Promise<ApiResponse<null>> {
  return request<null>(path, { method: "DELETE" });
}

/** `?a=1&b=2` from the defined, non-empty values. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** An `Idempotency-Key` value (crypto.randomUUID needs a secure context; this does not). */
export function randomKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
