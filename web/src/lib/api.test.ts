import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { currentMinSequence, get, post, request, setApiHandlers, setToken } from "./api";
import { ApiError } from "./problem";

type Call = { url: string; init: RequestInit };

function respond(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const text = body === null ? null : JSON.stringify(body);
  return new Response(text, { status, headers: { "Content-Type": "application/json", ...headers } });
}

let calls: Call[] = [];
let answers: Response[] = [];

beforeEach(() => {
  calls = [];
  answers = [];
  setToken(null);
  setToken("tok");
  vi.stubGlobal("fetch", vi.fn(async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    const next = answers.shift();
    if (!next) throw new TypeError("network down");
    return next;
  }));
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
  setApiHandlers({});
});

const header = (c: Call, name: string) => (c.init.headers as Record<string, string>)[name];

describe("read-your-writes", () => {
  it("sends the last command's Albatross-Sequence as Albatross-Min-Sequence on later reads", async () => {
    answers.push(respond(200, { items: [], next_cursor: null }));
    await get("/pireps");
    expect(header(calls[0]!, "Albatross-Min-Sequence")).toBeUndefined();

    answers.push(respond(201, { id: "p1" }, { "Albatross-Sequence": "42" }));
    const created = await post<{ id: string }>("/pireps", { flight_number: "X" });
    expect(created.sequence).toBe(42);
    expect(header(calls[1]!, "Authorization")).toBe("Bearer tok");
    expect(header(calls[1]!, "Content-Type")).toBe("application/json");

    answers.push(respond(200, { id: "p1" }));
    await get("/pireps/p1");
    expect(header(calls[2]!, "Albatross-Min-Sequence")).toBe("42");

    // An older sequence never lowers it; signing out resets it.
    answers.push(respond(204, null, { "Albatross-Sequence": "7" }));
    await post("/auth/logout");
    expect(currentMinSequence()).toBe(42);
    setToken(null);
    expect(currentMinSequence()).toBe(0);
  });
});

describe("errors", () => {
  it("retries a GET answered 503 after Retry-After", async () => {
    vi.useFakeTimers();
    answers.push(respond(503, { status: 503, code: "unavailable" }, { "Retry-After": "1" }));
    answers.push(respond(200, { ok: true }));
    const pending = get<{ ok: boolean }>("/me");
    await vi.advanceTimersByTimeAsync(1000);
    await expect(pending).resolves.toEqual({ ok: true });
    expect(calls).toHaveLength(2);
  });

  it("never retries a command", async () => {
    answers.push(respond(503, { status: 503, code: "unavailable" }, { "Retry-After": "1" }));
    await expect(post("/pireps", {})).rejects.toMatchObject({ problem: { code: "unavailable" }, retryAfter: 1 });
    expect(calls).toHaveLength(1);
  });

  it("turns problem+json into an ApiError and reports 401 and forced password changes", async () => {
    const onUnauthorized = vi.fn();
    const onPasswordChangeRequired = vi.fn();
    setApiHandlers({ onUnauthorized, onPasswordChangeRequired });
    answers.push(respond(403, { status: 403, code: "password_change_required", title: "Change it" }));
    await expect(get("/pireps")).rejects.toBeInstanceOf(ApiError);
    expect(onPasswordChangeRequired).toHaveBeenCalledOnce();
    answers.push(respond(401, { status: 401, code: "unauthorized" }));
    await expect(get("/me")).rejects.toMatchObject({ status: 401 });
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });

  it("does not treat a failed login as a lost session", async () => {
    const onUnauthorized = vi.fn();
    setApiHandlers({ onUnauthorized });
    answers.push(respond(401, { status: 401, code: "unauthorized" }));
    await expect(post("/auth/login", { email: "a@b.c", password: "x" })).rejects.toMatchObject({ code: "unauthorized" });
    expect(onUnauthorized).not.toHaveBeenCalled();
  });

  it("reports an unreachable server as network_error", async () => {
    await expect(request("/me")).rejects.toMatchObject({ problem: { code: "network_error", status: 0 } });
  });
});
