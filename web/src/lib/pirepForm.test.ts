import { describe, expect, it } from "vitest";
import { blockMinutes, initialValues, toInput, type Values } from "./pirepForm";

function values(over: Partial<Values>): Values {
  return { ...initialValues(), flight_number: "BAW123", departure: "EGLL", arrival: "LFPG", block_off_at: "2026-11-26T10:00", block_on_at: "2026-11-26T11:30", ...over };
}

describe("toInput", () => {
  it("converts local times to UTC and defaults flight time to the block time", () => {
    const { input, errors } = toInput(values({}));
    expect(errors).toEqual({});
    expect(input.flight_time_minutes).toBe(90);
    expect(input.block_off_at).toBe(new Date("2026-11-26T10:00").toISOString().replace(/\.000Z$/, "Z"));
    expect(input).not.toHaveProperty("fuel_used_kg");
  });

  it("parses optional numbers, accepting a decimal comma", () => {
    const { input, errors } = toInput(values({ fuel_used_kg: "2400,5", landing_rate_fpm: "-140", flight_time_minutes: "80" }));
    expect(errors).toEqual({});
    expect(input).toMatchObject({ fuel_used_kg: 2400.5, landing_rate_fpm: -140, flight_time_minutes: 80 });
  });

  it("reports unparseable numbers and missing required fields per field", () => {
    const { errors } = toInput(values({ fuel_used_kg: "lots", flight_time_minutes: "1.5", arrival: " " }));
    expect(errors).toEqual({ fuel_used_kg: "Enter a number.", flight_time_minutes: "Enter a whole number.", arrival: "Required." });
  });

  it("leaves format rules (ICAO codes) to the API", () => {
    const { errors, input } = toInput(values({ departure: "EG1L" }));
    expect(errors).toEqual({});
    expect(input.departure).toBe("EG1L");
  });
});

describe("blockMinutes", () => {
  it("is null when block on is not after block off", () => {
    expect(blockMinutes(values({ block_on_at: "2026-11-26T09:00" }))).toBeNull();
  });
});
