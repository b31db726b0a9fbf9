// @ts-check
// The console's only way to the server: the public org API (/v1/...), with the org key
// of this tab as the Authorization header, and the log bookmark sent back.

/**
 * What the org API answers (its OpenAPI document, /openapi.json, is the contract).
 * @typedef {{ hour: string, succeeded: number, failed: number, timeouts: number }} HourCounts
 * @typedef {{ endpoint: string, lane: "fast" | "slow", lane_reason: "timeout" | "slow" | "failing" | null,
 *   lane_since: string | null, success_rate_24h: number | null, attempts_24h: number, timeouts_24h: number,
 *   consecutive_failures: number, last_success_at: string | null, last_failure_at: string | null,
 *   last_error: string | null, latency_ms: number | null, recent: RecentOutcome[], hourly: HourCounts[] }}
 *   EndpointHealth
 * @typedef {"ok" | "slow_ok" | "http_error" | "timeout" | "network_error"} RecentOutcome
 * @typedef {{ webhook_url: string | null, signing_secret: string, secret_rotated_at: string | null,
 *   health: EndpointHealth | null, listeners: number }} Settings
 * @typedef {{ delivery_id: string, attempt: number, job_id: string, event_type: string, listener_key_id: string,
 *   status_code: number | null, response_time_ms: number, error: string | null, received_at: string }}
 *   ListenerResult
 * @typedef {{ id: string, delivery_id: string, job_id: string, event_type: string, attempt: number,
 *   status_code: number | null, response_time_ms: number, attempted_at: string, outcome: "succeeded" | "failed",
 *   error: string | null, error_detail: string | null, url: string | null }} Attempt
 * @typedef {Attempt & {
 *   request: { headers: Record<string, string> | null, body: string },
 *   response: { headers: Record<string, string> | null, body: string | null, truncated: boolean } }} AttemptDetail
 * @typedef {{ id: string, job_id: string, event_type: string, status: "pending" | "delivered" | "failed",
 *   attempt_count: number, next_attempt_at: string | null, last_error: string | null, webhook_url: string | null,
 *   created_at: string, last_attempt_at: string }} Delivery
 * @typedef {Delivery & { payload: unknown, attempts: Attempt[], attempts_truncated: boolean }} DeliveryDetail
 * @typedef {{ id: string, name: string | null, created_at: string, last_used_at: string | null,
 *   revoked_at: string | null, in_use: boolean }} ApiKey
 */

/**
 * A page of a list: `next_cursor` is null on the last.
 * @template T
 * @typedef {{ data: T[], next_cursor: string | null }} Page
 */

const KEY_STORAGE = "zupertry.orgKey";
const BOOKMARK_HEADER = "X-Zupertry-Bookmark";

/** The signed-in key (this tab's sessionStorage) and the newest log bookmark seen. */
export const session = {
  /** @type {string | null} */
  key: sessionStorage.getItem(KEY_STORAGE),
  // The log's newest bookmark this tab saw: sent back, so no read shows an older log.
  /** @type {string | null} */
  bookmark: null,
};

/**
 * Counts sign-ins and sign-outs. An answer to a request made before the last one is
 * dropped: signing out and in as another org while a request is on its way must not
 * show the first org's settings, keys or log, nor carry its bookmark.
 */
let sessionNumber = 0;

/** @param {string} key */
export function rememberKey(key) {
  sessionNumber++;
  session.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionNumber++;
  sessionStorage.removeItem(KEY_STORAGE);
  session.key = null;
  session.bookmark = null;
}

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The error of an answer that came after a sign-out: the view it was for is gone. */
const SIGNED_OUT = "signed_out";

/**
 * Whether an error is one to keep quiet about: a 401 signs out (the sign-in form says
 * why), and an answer after a sign-out belongs to no view.
 * @param {unknown} error
 */
export function isQuiet(error) {
  const apiError = asApiError(error);
  return apiError.status === 401 || apiError.code === SIGNED_OUT;
}

/**
 * Whatever a `catch` got, as an ApiError (anything else is a bug, shown as its message).
 * @param {unknown} error
 * @returns {ApiError}
 */
export function asApiError(error) {
  return error instanceof ApiError
    ? error
    : new ApiError(0, "internal", String(error instanceof Error ? error.message : error));
}

/**
 * The message and what `details` says of each field (which filter to fix), unless it
 * repeats the message.
 * @param {string} message
 * @param {unknown} details `[{path, message}]` from a 400 (src/api/errors.ts)
 */
function withDetails(message, details) {
  if (!Array.isArray(details)) return message;
  const parts = details.flatMap((d) =>
    d && typeof d.message === "string" && d.message !== message
      ? [`${Array.isArray(d.path) && d.path.length ? `${d.path.join(".")}: ` : ""}${d.message}`]
      : [],
  );
  return parts.length ? `${message} (${parts.slice(0, 3).join("; ")})` : message;
}

/** Whether the same request may work again (not a refused one). @param {ApiError} error */
export function worthRetrying(error) {
  return error.status === 0 || error.status === 429 || error.status >= 500;
}

/**
 * For work over several calls or a timer (a poll, a reload): once the session it began
 * in ends, its calls throw `signed_out`, so nothing of one org lands in the next's view.
 */
export function thisSession() {
  const started = sessionNumber;
  const active = () => started === sessionNumber;
  return {
    active,
    /** @type {typeof api} */
    api: (method, path, body) =>
      active() ? api(method, path, body) : Promise.reject(new ApiError(0, SIGNED_OUT, "Signed out.")),
  };
}

/** Called on a 401 to the signed-in key (it was revoked, or never valid). @type {(message: string) => void} */
let onUnauthorized = () => {};
/** @param {(message: string) => void} handler */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/**
 * Calls the org API. A 401 to the signed-in key signs out; network failures become a
 * readable error.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {string | null} [key]
 * @returns {Promise<any>} the answer's JSON (its shape is the route's, see the typedefs above)
 */
export async function api(method, path, body, key = session.key) {
  const asked = sessionNumber;
  const stale = () => new ApiError(0, SIGNED_OUT, "Signed out before the answer came.");
  // Signed out: nothing to send (a "Bearer null" would come back 401 and sign out again).
  if (key === null) throw stale();
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: {
        Authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...(session.bookmark === null ? {} : { [BOOKMARK_HEADER]: session.bookmark }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    if (asked !== sessionNumber) throw stale();
    throw new ApiError(0, "network_error", "Couldn't reach the dispatcher. Check your connection, then try again.");
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (asked !== sessionNumber) throw stale();
  const bookmark = res.headers.get(BOOKMARK_HEADER);
  // Bookmarks sort by time: keep the newest (answers may arrive out of order).
  if (bookmark !== null && (session.bookmark === null || bookmark > session.bookmark)) session.bookmark = bookmark;
  if (!res.ok) {
    const message = withDetails(
      data?.error?.message ??
        (res.status === 429 ? "Too many requests for this org right now." : `The server answered HTTP ${res.status}.`),
      data?.error?.details,
    );
    // A 429's message says which limit; how long to wait too, or Retry-After does.
    const wait = res.status === 429 ? res.headers.get("Retry-After") : null;
    const error = new ApiError(
      res.status,
      data?.error?.code ?? "http_error",
      wait && !message.includes(`${wait} s`) ? `${message} Try again in ${wait} s.` : message,
    );
    if (res.status === 401 && key === session.key) {
      onUnauthorized("That API key was not accepted: it is invalid or has been revoked.");
    }
    throw error;
  }
  return data;
}
