import { describe, expect, it } from "vitest";
import { applyChange, applyChangeToItem, emptyCollection, mergePage, mergePageAfterChanges, nextSequence, resourceAfterRead, type Collection } from "./collection";
import type { ApiKey, ChangeMessage, Pirep, User } from "./types";

function pirep(id: string, submitted: string, over: Partial<Pirep> = {}): Pirep {
  return {
    id, tenant_id: "t1", pilot_id: "u1", status: "pending", flight_number: "BAW1", departure: "EGLL", arrival: "LFPG",
    aircraft_type: null, aircraft_registration: null, block_off_at: submitted, block_on_at: submitted,
    flight_time_minutes: 60, fuel_used_kg: null, distance_nm: null, landing_rate_fpm: null, route: null, remarks: null,
    source: "manual", submitted_at: submitted, reviewed_at: null, reviewed_by: null, review_comment: null, version: 1, ...over,
  };
}

function change(sequence: number, data: Pirep, event = "PirepSubmitted"): ChangeMessage {
  return { type: "change", sequence, entity: "pirep", id: data.id, tenant_id: data.tenant_id, event, data };
}

function list(items: Pirep[], filter = {}, nextCursor: string | null = null): Collection<"pirep"> {
  return { ...emptyCollection("pirep", filter), items, nextCursor };
}

const p1 = pirep("01A", "2026-11-26T08:00:00Z");
const p2 = pirep("01B", "2026-11-26T09:00:00Z");
const p3 = pirep("01C", "2026-11-26T10:00:00Z");

describe("applyChange", () => {
  it("inserts a new PIREP at the top of a newest-first list", () => {
    const next = applyChange(list([p2, p1]), change(5, p3));
    expect(next.items.map((p) => p.id)).toEqual(["01C", "01B", "01A"]);
    expect(next.sequence).toBe(5);
  });

  it("inserts at the sorted position, ties broken by id", () => {
    const same = pirep("01D", "2026-11-26T09:00:00Z");
    const next = applyChange(list([p3, p2, p1]), change(1, same));
    expect(next.items.map((p) => p.id)).toEqual(["01C", "01D", "01B", "01A"]);
  });

  it("replaces an existing item in place", () => {
    const accepted = { ...p2, status: "accepted" as const, version: 2 };
    const next = applyChange(list([p3, p2, p1]), change(7, accepted, "PirepAccepted"));
    expect(next.items[1]).toEqual(accepted);
    expect(next.items).toHaveLength(3);
  });

  it("removes an item that stops matching the filter", () => {
    const state = list([p3, p2], { status: "pending" });
    const next = applyChange(state, change(3, { ...p3, status: "accepted", version: 2 }, "PirepAccepted"));
    expect(next.items.map((p) => p.id)).toEqual(["01B"]);
  });

  it("ignores a new item that does not match the filter", () => {
    const state = list([p2], { status: "accepted" });
    const next = applyChange(state, change(3, p3));
    expect(next.items).toEqual([p2]);
    expect(next.sequence).toBe(3);
  });

  it("treats empty filter values as no filter", () => {
    const next = applyChange(list([], { status: "", pilot_id: undefined }), change(1, p1));
    expect(next.items).toEqual([p1]);
  });

  it("ignores other entities and keeps the same object", () => {
    const state = list([p1]);
    const user: ChangeMessage = { type: "change", sequence: 9, entity: "user", id: "u1", tenant_id: "t1", event: "UserRegistered", data: {} as User };
    expect(applyChange(state, user)).toBe(state);
  });

  it("is idempotent under replay: a change at or below the applied sequence is dropped", () => {
    const once = applyChange(list([p1]), change(4, p2));
    const twice = applyChange(once, change(4, p2));
    expect(twice).toBe(once);
    const older = applyChange(once, change(3, p3));
    expect(older).toBe(once);
  });

  it("never replaces a PIREP with an older version", () => {
    const accepted = { ...p1, status: "accepted" as const, version: 3 };
    const next = applyChange(list([accepted]), change(10, { ...p1, version: 1 }));
    expect(next.items[0]).toBe(accepted);
  });

  it("leaves an item older than the loaded window to the next page", () => {
    const old = pirep("009", "2026-11-25T00:00:00Z");
    const partial = applyChange(list([p3, p2], {}, "cursor"), change(1, old));
    expect(partial.items.map((p) => p.id)).toEqual(["01C", "01B"]);
    const complete = applyChange(list([p3, p2], {}, null), change(1, old));
    expect(complete.items.map((p) => p.id)).toEqual(["01C", "01B", "009"]);
  });

  it("matches API keys to their user's list by user_id", () => {
    const state: Collection<"apikey"> = { ...emptyCollection("apikey", { user_id: "u1" }) };
    const key = (id: string, user: string): ChangeMessage => ({
      type: "change", sequence: Number(id), entity: "apikey", id, tenant_id: "t1", event: "ApiKeyCreated",
      data: { id, user_id: user, name: "n", prefix: "alb_", created_at: "2026-11-26T10:00:00Z", last_used_at: null, revoked_at: null } as ApiKey,
    });
    const next = applyChange(applyChange(state, key("1", "u1")), key("2", "u2"));
    expect(next.items.map((k) => k.id)).toEqual(["1"]);
  });

  it("does not mutate its input", () => {
    const state = list([p2, p1]);
    const frozen = JSON.stringify(state);
    applyChange(state, change(1, p3));
    applyChange(state, change(2, { ...p1, status: "rejected", version: 2 }));
    expect(JSON.stringify(state)).toBe(frozen);
  });
});

describe("applyChangeToItem", () => {
  it("replaces the same resource and ignores others", () => {
    const accepted = { ...p1, status: "accepted" as const, version: 2 };
    expect(applyChangeToItem("pirep", p1, change(1, accepted))).toEqual(accepted);
    expect(applyChangeToItem("pirep", p1, change(1, p2))).toBe(p1);
    expect(applyChangeToItem("pirep", null, change(1, p2))).toBeNull();
  });

  it("updates a user's flight figures", () => {
    const me = { id: "u1", email: "a@b.c", display_name: "A", role: "Pilot", tenant_id: "t1", created_at: "2026-11-26T10:00:00Z", must_change_password: false, flight_count: 0, flight_minutes: 0 } as User;
    const msg: ChangeMessage = { type: "change", sequence: 2, entity: "user", id: "u1", tenant_id: "t1", event: "PirepAccepted", data: { ...me, flight_count: 1, flight_minutes: 75 } };
    expect(applyChangeToItem("user", me, msg)).toMatchObject({ flight_count: 1, flight_minutes: 75 });
  });
});

describe("mergePage", () => {
  it("replaces the items with the first page", () => {
    const next = mergePage(list([p1]), { items: [p3, p2], next_cursor: "c1" }, false);
    expect(next.items.map((p) => p.id)).toEqual(["01C", "01B"]);
    expect(next.nextCursor).toBe("c1");
  });

  it("appends the next page and takes its cursor", () => {
    const next = mergePage(list([p3], {}, "c1"), { items: [p2, p1], next_cursor: null }, true);
    expect(next.items.map((p) => p.id)).toEqual(["01C", "01B", "01A"]);
    expect(next.nextCursor).toBeNull();
  });

  it("does not duplicate an item that arrived live and is also on the page", () => {
    const live = { ...p2, status: "accepted" as const, version: 2 };
    const next = mergePage(list([p3, live], {}, "c1"), { items: [p2, p1], next_cursor: null }, true);
    expect(next.items.map((p) => p.id)).toEqual(["01C", "01B", "01A"]);
    expect(next.items[1]).toBe(live); // the newer live version wins over the page's older copy
  });

  it("takes the page's copy when it is newer", () => {
    const newer = { ...p2, status: "rejected" as const, version: 5 };
    const next = mergePage(list([p3, p2], {}, "c1"), { items: [newer], next_cursor: null }, true);
    expect(next.items[1]).toBe(newer);
  });

  it("dedupes within a first page", () => {
    const next = mergePage(list([]), { items: [p2, p2, p1], next_cursor: null }, false);
    expect(next.items.map((p) => p.id)).toEqual(["01B", "01A"]);
  });
});

describe("mergePageAfterChanges", () => {
  it("keeps a live insert that arrived while a refresh was in flight and is not on its page", () => {
    const live = applyChange(list([p2, p1]), change(21, p3));
    const next = mergePageAfterChanges(live, { items: [p2, p1], next_cursor: null }, false, [change(21, p3)]);
    expect(next.items.map((p) => p.id)).toEqual(["01C", "01B", "01A"]);
    expect(next.sequence).toBe(21);
  });

  it("applies a change to an item that an appended page brings after the change arrived", () => {
    const accepted = { ...p1, status: "accepted" as const, version: 2 };
    const live = applyChange(list([p3], {}, "c1"), change(7, accepted, "PirepAccepted"));
    expect(live.items.map((p) => p.id)).toEqual(["01C"]); // beyond the loaded window: not inserted
    const next = mergePageAfterChanges(live, { items: [p2, p1], next_cursor: null }, true, [change(7, accepted, "PirepAccepted")]);
    expect(next.items.map((p) => [p.id, p.status])).toEqual([["01C", "pending"], ["01B", "pending"], ["01A", "accepted"]]);
  });

  it("keeps the page's copy when it is newer than the replayed change", () => {
    const accepted = { ...p2, status: "accepted" as const, version: 2 };
    const rejected = { ...p2, status: "rejected" as const, version: 3 };
    const next = mergePageAfterChanges(list([p2]), { items: [rejected], next_cursor: null }, false, [change(4, accepted)]);
    expect(next.items).toEqual([rejected]);
  });

  it("removes an item a replayed change took out of the filter", () => {
    const accepted = { ...p2, status: "accepted" as const, version: 2 };
    const pending = list([p2, p1], { status: "pending" });
    const next = mergePageAfterChanges(pending, { items: [p2, p1], next_cursor: null }, false, [change(9, accepted)]);
    expect(next.items.map((p) => p.id)).toEqual(["01A"]);
  });
});

describe("resourceAfterRead", () => {
  const me = { id: "u1", email: "a@b.c", display_name: "A", role: "Pilot", tenant_id: "t1", created_at: "2026-11-26T10:00:00Z", must_change_password: false, flight_count: 0, flight_minutes: 0 } as User;
  const accepted: ChangeMessage = { type: "change", sequence: 5, entity: "user", id: "u1", tenant_id: "t1", event: "PirepAccepted", data: { ...me, flight_count: 1, flight_minutes: 75 } };

  it("applies a change that arrived while the read was in flight over the older read", () => {
    const shown = applyChangeToItem("user", me, accepted);
    expect(resourceAfterRead("user", shown, me, [accepted])).toMatchObject({ flight_count: 1, flight_minutes: 75 });
  });

  it("takes the read when nothing arrived meanwhile", () => {
    const renamed = { ...me, display_name: "B" };
    expect(resourceAfterRead("user", me, renamed, [])).toBe(renamed);
  });

  it("ignores changes to other resources", () => {
    const other = { ...accepted, id: "u2", data: { ...me, id: "u2", flight_count: 9 } };
    expect(resourceAfterRead("user", null, me, [other])).toBe(me);
  });

  it("keeps a shown PIREP newer than the read", () => {
    const newer = { ...p1, status: "accepted" as const, version: 2 };
    expect(resourceAfterRead("pirep", newer, p1, [])).toBe(newer);
  });
});

describe("nextSequence", () => {
  it("drops replays and duplicates after resume", () => {
    expect(nextSequence(null, change(3, p1))).toBe(3);
    expect(nextSequence(3, change(3, p1))).toBeNull();
    expect(nextSequence(3, change(2, p1))).toBeNull();
    expect(nextSequence(3, change(4, p1))).toBe(4);
  });
});
