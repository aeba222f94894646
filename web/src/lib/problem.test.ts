import { describe, expect, it } from "vitest";
import { ApiError, formErrors, formErrorsFromError, humanise, normaliseField, problemMessage, sentence, toProblem } from "./problem";

const FIELDS = ["departure", "arrival", "flight_number", "block_on_at"] as const;

describe("formErrors", () => {
  it("maps problem+json errors to the form's fields", () => {
    const problem = toProblem(422, "Unprocessable", {
      type: "about:blank", title: "Validation failed", status: 422, code: "validation_failed",
      errors: [{ field: "departure", message: "must be a 4-letter ICAO airport code" }, { field: "block_on_at", message: "must be after block_off_at" }],
    });
    expect(formErrors(problem, FIELDS)).toEqual({
      fields: { departure: "Must be a 4-letter ICAO airport code.", block_on_at: "Must be after block off." },
      general: [],
    });
  });

  it("keeps the first message per field", () => {
    const p = toProblem(422, "", { code: "validation_failed", errors: [{ field: "arrival", message: "is required" }, { field: "arrival", message: "second" }] });
    expect(formErrors(p, FIELDS).fields).toEqual({ arrival: "Is required." });
  });

  it("normalises JSON-pointer and body-prefixed paths", () => {
    expect(normaliseField("/departure")).toBe("departure");
    expect(normaliseField("body.departure")).toBe("departure");
    expect(normaliseField("$.departure")).toBe("departure");
    const p = toProblem(422, "", { code: "validation_failed", errors: [{ field: "/arrival", message: "bad" }, { field: "flight_number.0", message: "bad too" }] });
    expect(formErrors(p, FIELDS).fields).toEqual({ arrival: "Bad.", flight_number: "Bad too." });
  });

  it("turns errors on fields the form lacks into general messages", () => {
    const p = toProblem(422, "", { code: "validation_failed", errors: [{ field: "fuel_used_kg", message: "must be between 0 and 500000" }] });
    expect(formErrors(p, FIELDS)).toEqual({ fields: {}, general: ["Fuel used kg: Must be between 0 and 500000."] });
  });

  it("falls back to the problem's words without field errors", () => {
    const p = toProblem(409, "Conflict", { code: "invalid_state", detail: "The PIREP is not pending", status: 409 });
    expect(formErrors(p, FIELDS)).toEqual({ fields: {}, general: ["The PIREP is not pending"] });
  });
});

describe("humanise", () => {
  it("explains a regex failure with the field's format", () => {
    const p = toProblem(422, "", { code: "validation_failed", errors: [{ field: "departure", message: "Expected `str` matching regex '^[A-Z]{4}$'" }] });
    expect(formErrors(p, FIELDS).fields).toEqual({ departure: "Use the airport's 4-letter ICAO code, like EGLL." });
  });

  it("words msgspec's length and range messages", () => {
    expect(humanise("name", "Expected `str` of length >= 1")).toBe("Required.");
    expect(humanise("name", "Expected `str` of length <= 100")).toBe("Use at most 100 characters.");
    expect(humanise("fuel_used_kg", "Expected `float` >= 0.0")).toBe("Must be at least 0.");
    expect(humanise("flight_time_minutes", "Expected `int`, got `str`")).toBe("Enter a whole number.");
    expect(humanise("unknown_field", "Expected `str` matching regex 'x'")).toBe("Has the wrong format.");
  });

  it("keeps messages already in words", () => {
    expect(humanise("block_on_at", "must be after block_off_at")).toBe("Must be after block off.");
  });
});

describe("formErrorsFromError", () => {
  it("puts email_taken next to the email field", () => {
    const e = new ApiError(toProblem(409, "Conflict", { code: "email_taken", status: 409, title: "Conflict" }));
    expect(formErrorsFromError(e, ["email", "display_name"])).toEqual({ fields: { email: "A user with this email address already exists." }, general: [] });
  });

  it("words a rate limit with its Retry-After", () => {
    const e = new ApiError(toProblem(429, "Too Many Requests", { code: "rate_limited", status: 429 }), 600);
    expect(formErrorsFromError(e, ["email"]).general).toEqual(["Too many attempts. Try again in 10 minutes."]);
  });

  it("words a network failure", () => {
    const e = new ApiError({ status: 0, code: "network_error" });
    expect(formErrorsFromError(e, []).general[0]).toMatch(/Cannot reach Albatross/);
  });

  it("reports non-API errors by message", () => {
    expect(formErrorsFromError(new Error("boom"), [])).toEqual({ fields: {}, general: ["boom"] });
  });
});

describe("toProblem", () => {
  it("survives a non-JSON error page", () => {
    expect(toProblem(502, "Bad Gateway", null)).toEqual({ status: 502, title: "Bad Gateway", code: "server_error" });
  });

  it("derives a code from the status when the body has none", () => {
    expect(toProblem(404, "Not Found", { title: "Not Found" }).code).toBe("not_found");
  });

  it("words unavailable without leaking internals", () => {
    expect(problemMessage(toProblem(503, "", { code: "unavailable", status: 503, detail: "nats: timeout" }))).toMatch(/nothing was saved/);
  });
});

describe("sentence", () => {
  it("capitalises and ends with a period", () => {
    expect(sentence("must be 4 letters")).toBe("Must be 4 letters.");
    expect(sentence("Already fine.")).toBe("Already fine.");
  });
});
