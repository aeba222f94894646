// RFC 9457 problem+json as the contract defines it, and how the UI puts it into words.

export interface FieldProblem {
  field: string;
  message: string;
}

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  code: string;
  errors?: FieldProblem[];
}

/** A failed API call: an HTTP problem, or `network_error` (status 0) when nothing answered. */
export class ApiError extends Error {
  readonly problem: Problem;
  readonly retryAfter: number | null;

  constructor(problem: Problem, retryAfter: number | null = null) {
    super(problem.detail || problem.title || problem.code);
    this.name = "ApiError";
    this.problem = problem;
    this.retryAfter = retryAfter;
  }

  get status(): number {
    return this.problem.status;
  }

  get code(): string {
    return this.problem.code;
  }
}

/** Parses a problem body defensively: a proxy's HTML error page must still become a Problem. */
export function toProblem(status: number, statusText: string, body: unknown): Problem {
  const fallbackCode = CODE_BY_STATUS[status] ?? (status >= 500 ? "server_error" : `http_${status}`);
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    const errors = Array.isArray(b.errors)
      ? b.errors
          .filter((e): e is Record<string, unknown> => !!e && typeof e === "object")
          .map((e) => ({ field: String(e.field ?? ""), message: String(e.message ?? "is invalid") }))
      : undefined;
    return {
      type: typeof b.type === "string" ? b.type : undefined,
      title: typeof b.title === "string" ? b.title : statusText || undefined,
      status: typeof b.status === "number" ? b.status : status,
      detail: typeof b.detail === "string" ? b.detail : undefined,
      code: typeof b.code === "string" && b.code ? b.code : fallbackCode,
      errors,
    };
  }
  return { status, title: statusText || undefined, code: fallbackCode };
}

const CODE_BY_STATUS: Record<number, string> = {
  400: "malformed_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  412: "precondition_failed",
  413: "payload_too_large",
  422: "validation_failed",
  429: "rate_limited",
  503: "unavailable",
};

export interface FormErrors {
  /** First message per form field, keyed by the form's own field name. */
  fields: Record<string, string>;
  /** Messages that belong to no field on this form (shown above the submit button). */
  general: string[];
}

/** `"must be 4 letters"` → `"Must be 4 letters."`: server messages read as sentences. */
export function sentence(message: string): string {
  const m = message.trim();
  if (!m) return m;
  const first = m.charAt(0).toUpperCase() + m.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/**
 * Normalises a problem's field path to a form field: `body.departure`, `/departure`,
 * `$.departure` and `departure` all name `departure`; a nested path (`route.0`) falls back to
 * its first segment when that is a known field.
 */
export function normaliseField(field: string): string {
  let f = field.trim();
  f = f.replace(/^\$\.?/, "").replace(/^\//, "").replace(/^body[./]/, "");
  return f;
}

/** How each field's format is explained when the API's message is a machine's (a regex). */
export const FORMAT_HINTS: Readonly<Record<string, string>> = {
  departure: "Use the airport's 4-letter ICAO code, like EGLL.",
  arrival: "Use the airport's 4-letter ICAO code, like LFPG.",
  flight_number: "Use 1 to 10 letters or digits, like BAW123.",
  aircraft_type: "Use the ICAO type designator: 2 to 4 letters or digits, like A320.",
  aircraft_registration: "Use letters, digits and hyphens, like G-EUPT.",
  icao: "Use 3 letters, like BAW.",
  iata: "Use 2 letters or digits, like BA.",
  email: "Enter an email address, like name@example.com.",
};

function num(text: string): string {
  const n = Number(text);
  return Number.isFinite(n) ? new Intl.NumberFormat().format(n) : text;
}

/**
 * Puts a validator's message (e.g. msgspec's "Expected `str` matching regex '^[A-Z]{4}$'")
 * into words for the field it is about; a message already in words is kept.
 */
export function humanise(field: string, message: string): string {
  const m = message.trim();
  let match: RegExpMatchArray | null;
  if (/matching regex|pattern/i.test(m)) return FORMAT_HINTS[field] ?? "Has the wrong format.";
  if ((match = m.match(/^Expected `str` of length >= (\d+)/))) return match[1] === "1" ? "Required." : `Use at least ${match[1]} characters.`;
  if ((match = m.match(/^Expected `str` of length <= (\d+)/))) return `Use at most ${match[1]} characters.`;
  if ((match = m.match(/^Expected `(?:int|float)` >= (\S+)/))) return `Must be at least ${num(match[1]!)}.`;
  if ((match = m.match(/^Expected `(?:int|float)` <= (\S+)/))) return `Must be at most ${num(match[1]!)}.`;
  if ((match = m.match(/^Expected `(?:int|float)` > (\S+)/))) return `Must be more than ${num(match[1]!)}.`;
  if ((match = m.match(/^Expected `(?:int|float)` < (\S+)/))) return `Must be less than ${num(match[1]!)}.`;
  if (/^Expected `int`/.test(m)) return "Enter a whole number.";
  if (/^Expected `float`/.test(m)) return "Enter a number.";
  if (/^Expected `datetime`/.test(m)) return "Enter a date and time.";
  if (/^Expected `str`/.test(m)) return "Enter text.";
  if (/^Expected `null`|^Expected one of/.test(m)) return "Choose one of the offered values.";
  if (/^Expected /.test(m) && FORMAT_HINTS[field]) return FORMAT_HINTS[field]!;
  if (/^Invalid enum value/i.test(m)) return "Choose one of the offered values.";
  // "must be after block_off_at" → "Must be after block off."
  return sentence(m.replace(/\b[a-z]+(?:_[a-z]+)+\b/g, (name) => name.replace(/_at$/, "").replace(/_/g, " ")));
}

/**
 * Maps a problem+json to the errors of a form with `knownFields`. Pure; used by every form.
 * Errors on fields the form does not show become general messages naming the field.
 */
export function formErrors(problem: Problem, knownFields: readonly string[]): FormErrors {
  const fields: Record<string, string> = {};
  const general: string[] = [];
  const known = new Set(knownFields);
  for (const error of problem.errors ?? []) {
    const path = normaliseField(error.field);
    const head = path.split(/[./[]/)[0] ?? path;
    const target = known.has(path) ? path : known.has(head) ? head : null;
    if (target !== null) {
      if (!(target in fields)) fields[target] = humanise(target, error.message);
    } else {
      general.push(path ? `${humanField(path)}: ${humanise(path, error.message)}` : sentence(error.message));
    }
  }
  if (Object.keys(fields).length === 0 && general.length === 0) {
    general.push(problemMessage(problem));
  }
  return { fields, general };
}

function humanField(path: string): string {
  const s = path.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Words for a problem that a person can act on (the `detail` when the server gave one). */
export function problemMessage(problem: Problem, retryAfter: number | null = null): string {
  switch (problem.code) {
    case "network_error":
      return "Cannot reach Albatross. Check your connection and try again.";
    case "unauthorized":
      return problem.detail || "Your session has ended. Please sign in again.";
    case "password_change_required":
      return "You must change your password before you continue.";
    case "forbidden":
      return "You are not allowed to do that.";
    case "not_found":
      return "This was not found, or you may not see it.";
    case "rate_limited":
      return retryAfter
        ? `Too many attempts. Try again in ${waitWords(retryAfter)}.`
        : "Too many attempts. Please wait a while and try again.";
    case "unavailable":
      return "Albatross is briefly unavailable; nothing was saved. Please try again in a moment.";
    case "payload_too_large":
      return "That is too much data for one request.";
    case "precondition_failed":
      return "Someone else changed this in the meantime. Reload and try again.";
    case "invalid_state":
      return problem.detail || "This can no longer be done: it has changed in the meantime.";
    case "email_taken":
      return "A user with this email address already exists.";
    case "icao_taken":
      return "An airline with this ICAO code already exists.";
    case "server_error":
      return "Something went wrong on the server. Please try again.";
    default:
      return problem.detail || problem.title || `The request failed (${problem.status}).`;
  }
}

function waitWords(seconds: number): string {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} seconds`;
  return `${Math.round(seconds / 60)} minutes`;
}

/** The message for any thrown value. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return problemMessage(error.problem, error.retryAfter);
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * Field errors some codes imply without an `errors` array (409 `email_taken` on a form with an
 * `email` field, `icao_taken` on `icao`), so the message lands next to the field.
 */
export function formErrorsFromError(error: unknown, knownFields: readonly string[]): FormErrors {
  if (!(error instanceof ApiError)) return { fields: {}, general: [errorMessage(error)] };
  const p = error.problem;
  const implied: Record<string, string> = { email_taken: "email", icao_taken: "icao" };
  const field = implied[p.code];
  if (field && known(knownFields, field) && !(p.errors && p.errors.length)) {
    return { fields: { [field]: problemMessage(p) }, general: [] };
  }
  if (p.errors && p.errors.length) return formErrors(p, knownFields);
  return { fields: {}, general: [problemMessage(p, error.retryAfter)] };
}

function known(fields: readonly string[], f: string): boolean {
  return fields.includes(f);
}
