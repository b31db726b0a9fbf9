// @ts-check
// The CLI's way to the dispatcher: its public org API, with the org key as the bearer.

/** @typedef {{ apiUrl: string, apiKey: string }} Credentials */

/** Back-off while the dispatcher cannot be reached (`listen`, `logs --follow`): 1 s, doubling, at most 30 s. */
export const MAX_BACKOFF_MS = 30_000;
/** The longest Retry-After the CLI waits out (the org API's own is its 60 s period). */
export const MAX_RETRY_AFTER_S = 300;

export const DEFAULT_API_URL = "http://127.0.0.1:8787";

/** Where in the log an answer read (src/api/org-log.ts). */
const BOOKMARK_HEADER = "X-Zupertry-Bookmark";

/**
 * The shape of every org key the dispatcher issues (src/store/api-keys.ts): `zk_` and 32
 * random bytes in base64url. Checked here so that a key cut short, or with a character
 * picked up on the way, is said as such before any request.
 */
const ORG_KEY_SHAPE = /^zk_[A-Za-z0-9_-]{43}$/;

/**
 * Where and as whom: flags first, then ZUPERTRY_API_URL / ZUPERTRY_API_KEY. Both are
 * trimmed: a .env file with CRLF line ends leaves a `\r` on each value, which fetch would
 * strip but a WebSocket header refuses.
 * @param {{ "api-url"?: string, "api-key"?: string }} flags
 * @param {Record<string, string | undefined>} env
 * @returns {Credentials | { error: string }}
 */
export function credentials(flags, env) {
  const apiKey = (flags["api-key"] ?? env.ZUPERTRY_API_KEY ?? "").trim();
  const apiUrl = (flags["api-url"] ?? env.ZUPERTRY_API_URL ?? DEFAULT_API_URL).trim().replace(/\/+$/, "");
  if (!apiKey) return { error: "No API key: pass --api-key zk_… or set ZUPERTRY_API_KEY." };
  if (!apiKey.startsWith("zk_")) return { error: "That is not an org API key (they start with zk_)." };
  if (!ORG_KEY_SHAPE.test(apiKey)) {
    const after = apiKey.length - 3;
    const why = after === 43 ? "this one has another character among them" : `this one has ${after}`;
    return { error: `That is not a whole org API key: a key is zk_ and 43 letters, digits, - or _; ${why}.` };
  }
  let url;
  try {
    url = new URL(apiUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("scheme");
  } catch {
    return { error: `Not an API URL: ${apiUrl} (e.g. ${DEFAULT_API_URL} or https://webhooks.example.com)` };
  }
  // The key goes in every request's Authorization header: in the clear only to this machine.
  if (url.protocol === "http:" && !isLoopback(url.hostname)) {
    return {
      error:
        `Refusing to send the API key over plain http:// to ${url.hostname}: ` +
        "use https:// (http:// is for a dispatcher on this machine).",
    };
  }
  return { apiUrl, apiKey };
}

/** @param {string} hostname as `URL` gives it (IPv6 in brackets) */
function isLoopback(hostname) {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** An answer of the API that is not a 2xx, with its error message. */
export class ApiError extends Error {
  /**
   * @param {number} status 0 when no answer came
   * @param {string} code
   * @param {string} message
   * @param {{ details?: unknown, retryAfter?: number | null, usage?: boolean }} [more] the API's `details`
   *   (which parameter, why); a 429's Retry-After in seconds; `usage`: the command line was at fault (exit 2)
   */
  constructor(status, code, message, { details, retryAfter = null, usage = false } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
    this.usage = usage;
  }

  /**
   * Worth trying again later: no answer, a 5xx, or the org's rate limit. Not a refused
   * key, a bad filter, or a URL that is not the API: waiting changes none of those.
   */
  get passing() {
    return this.code === "network_error" || this.status === 429 || this.status >= 500;
  }
}

/**
 * What a 2xx that is not the API's (a website, a proxy's page) means: the URL is wrong.
 * @param {string} apiUrl
 */
export function notTheApi(apiUrl) {
  return new ApiError(
    0,
    "not_the_api",
    `${apiUrl} answered with something that is not the Zupertry API: check --api-url (or ZUPERTRY_API_URL).`,
  );
}

/**
 * What one run of a command keeps between its reads of the org's log: the dispatcher's
 * clock, and the log's bookmark.
 *
 * The log's times (`attempted_at`) are the dispatcher's, so a window of "the last 20 s"
 * must be one on its clock: a laptop's clock may be minutes off. Each answer's `Date`
 * header says the dispatcher's time (to the second, hence the half second added: the
 * error is then ±0.5 s, within every window's slack).
 *
 * A read may be served by a replica a moment behind; sending back the last
 * `X-Zupertry-Bookmark` makes each read at least as new as the one before (DESIGN.md,
 * "Reading your own log"), so a poll never shows an older log than the last one did.
 */
export class LogSession {
  /** The dispatcher's time minus this machine's, in ms; null until an answer said it. @type {number | null} */
  offsetMs = null;
  /** @type {string | null} */
  bookmark = null;

  /**
   * Takes what an answer of the dispatcher says of its clock and log.
   * @param {string | null | undefined} date the `Date` header
   * @param {string | null | undefined} [bookmark] the `X-Zupertry-Bookmark` header
   */
  heard(date, bookmark) {
    const at = date ? Date.parse(date) : Number.NaN;
    if (Number.isFinite(at)) this.offsetMs = at + 500 - Date.now();
    if (bookmark) this.bookmark = bookmark;
  }

  /** The dispatcher's time now (this machine's until an answer said it), unix ms. */
  now() {
    return this.serverTime(Date.now());
  }

  /** @param {number} localMs a time on this machine's clock, unix ms @returns {number} the same on the dispatcher's */
  serverTime(localMs) {
    return localMs + (this.offsetMs ?? 0);
  }
}

/**
 * Calls the org API; throws ApiError for a non-2xx answer, with a sentence a person can act on.
 * `signal` (Ctrl+C) stops the call at once: ApiError with code `aborted`. A redirect is not
 * followed: the API never redirects, so one means --api-url points elsewhere (often http://
 * where https:// is served), and following it would send the key on to wherever it leads.
 * With `session` (reads of the log), its bookmark is sent, and the answer's clock and
 * bookmark kept.
 * @param {Credentials} creds
 * @param {string} method
 * @param {string} path
 * @param {{ body?: unknown, signal?: AbortSignal, session?: LogSession }} [options]
 * @returns {Promise<any>}
 */
export async function call(creds, method, path, { body, signal, session } = {}) {
  let res;
  try {
    const timeout = AbortSignal.timeout(15_000);
    res = await fetch(`${creds.apiUrl}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${creds.apiKey}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...(session?.bookmark ? { [BOOKMARK_HEADER]: session.bookmark } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: "manual",
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  } catch (error) {
    if (signal?.aborted) throw new ApiError(0, "aborted", "Stopped.");
    throw new ApiError(0, "network_error", `Could not reach ${creds.apiUrl}: ${describeError(error)}`);
  }
  session?.heard(res.headers.get("date"), res.ok ? res.headers.get(BOOKMARK_HEADER) : null);
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel();
    throw new ApiError(res.status, "redirect", redirected(creds.apiUrl, res.headers.get("location")));
  }
  let text = "";
  if (res.status !== 204) {
    try {
      text = await res.text();
    } catch (error) {
      // Cut off mid-answer (a timeout, a restart, Ctrl+C): a passing fault, not a wrong URL.
      if (signal?.aborted) throw new ApiError(0, "aborted", "Stopped.");
      throw new ApiError(0, "network_error", `The answer from ${creds.apiUrl} was cut off: ${describeError(error)}`);
    }
  }
  /** @type {any} */
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a web page, a proxy's error. A 2xx is then the wrong server, just below.
  }
  if (res.ok && res.status !== 204 && (data === null || typeof data !== "object")) throw notTheApi(creds.apiUrl);
  if (!res.ok) {
    const message =
      res.status === 401
        ? "The API key was not accepted: it is invalid or has been revoked."
        : (data?.error?.message ?? `The dispatcher answered HTTP ${res.status}.`);
    const retryAfter = Number(res.headers.get("retry-after"));
    throw new ApiError(res.status, data?.error?.code ?? "http_error", message, {
      details: data?.error?.details,
      retryAfter: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    });
  }
  return data;
}

/**
 * The sentence for a redirect: where it leads, and the likely fix.
 * @param {string} apiUrl
 * @param {string | null | undefined} location
 */
export function redirected(apiUrl, location) {
  const to = location ? new URL(location, apiUrl).href : null;
  const https = to?.startsWith("https://") && apiUrl.startsWith("http://") ? " (https:// may be needed)" : "";
  const where = to ?? "another address";
  return `${apiUrl} redirected to ${where}, which the Zupertry API never does: check --api-url${https}.`;
}

/**
 * A short, readable cause of a network error (Node puts the real one in `cause`).
 * @param {unknown} error
 */
export function describeError(error) {
  const cause = /** @type {{ cause?: { code?: string, message?: string } } | null} */ (error)?.cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ""}`;
  if (error instanceof Error && error.name === "TimeoutError") return "no answer in time";
  return error instanceof Error ? error.message : String(error);
}

/** `11:02:03`, the local time of day, for one line per event. @param {Date} [date] */
export const clock = (date = new Date()) => date.toTimeString().slice(0, 8);
