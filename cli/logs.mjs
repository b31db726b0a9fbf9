// @ts-check
// `zupertry logs [--follow]`: the org's attempts, oldest first, one line each, filtered
// like GET /v1/webhook-logs; with --follow, new ones as they are logged.

import { ApiError, call, clock, LogSession, MAX_BACKOFF_MS, MAX_RETRY_AFTER_S, notTheApi } from "./api.mjs";

/** @typedef {import("./api.mjs").Credentials} Credentials */
/**
 * @typedef {{ id: string, delivery_id: string, job_id: string, event_type: string, attempt: number,
 *   status_code: number | null, response_time_ms: number, attempted_at: string, outcome: string,
 *   error: string | null }} Attempt
 */

/** How long --follow waits after a poll that read one page. */
const POLL_MS = 1000;
/**
 * What each --follow poll reads. The list is newest-started first, and a row is written
 * when its attempt ends, up to the 10 s attempt timeout after `attempted_at` (its start):
 * so a timed-out attempt, the one a user watches for, is written below every attempt
 * started in the 10 s after it, past the first page as soon as the org makes 10 a second.
 * A poll therefore follows `next_cursor` through the last WINDOW_MS (the 10 s timeout, up to
 * 5 s of wait between polls, and 5 s for the requests' own time and the dispatcher's clock,
 * which its answers' Date headers tell to the second), at most POLL_PAGES pages: 500
 * attempts, every attempt of an org making 25 a second. Past that it says, once, that it
 * shows only some, and how to narrow.
 *
 * The org API takes 1,200 requests a minute per org, shared with the console and the
 * customer's own scripts, so one terminal must not spend it: a poll that read n pages
 * waits n × POLL_MS (at most 5 s) before the next, which keeps --follow near one request a
 * second however busy the org (about 66 a minute at worst, 5 % of the budget).
 */
const WINDOW_MS = 20_000;
const POLL_PAGES = 5;
/**
 * Every DEEP_EVERY-th poll, and the first after the dispatcher was away, also reads the
 * rest of the last LOOK_BACK_MS (up to POLL_PAGES pages more): a row written later than
 * the timeout says (a slow log write), what an outage hid.
 */
const DEEP_EVERY = 10;
const LOOK_BACK_MS = 60_000;

/** The most pages the first screen (the newest 20) reads: a filter may leave pages empty. */
const FIRST_SCREEN_PAGES = 10;
/**
 * The most pages `--since` reads: 10,000 attempts, and 100 requests, a twelfth of the
 * org's minute budget. Past that it prints the command for the older ones.
 */
const SINCE_PAGES = 100;

/** The CLI flag of each API parameter it passes on. @type {Record<string, string>} */
const FLAGS = {
  job_id: "--job-id",
  delivery_id: "--delivery-id",
  event_type: "--event-type",
  outcome: "--outcome",
  since: "--since",
  until: "--until",
};

/**
 * Waits `ms`; false when Ctrl+C came first (at once, not at the end of the wait).
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<boolean>}
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve(!signal?.aborted);
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Pages of GET /v1/webhook-logs, newest first, following `next_cursor` (a filtered page
 * reads a bounded stretch of the log, and may come back short, even empty, with one)
 * until `want` rows or `maxPages` pages. With `waitOut`, a 429 is waited out as its
 * Retry-After says, not thrown: a long listing should not die of the org's rate limit.
 * @param {Credentials} creds
 * @param {URLSearchParams} query
 * @param {{ maxPages: number, want?: number, waitOut: boolean, note: (line: string) => void,
 *   session: LogSession, signal?: AbortSignal }} options
 * @returns {Promise<{ rows: Attempt[], pages: number, more: boolean }>} `more`: pages were left
 */
async function readPages(creds, query, { maxPages, want = Number.POSITIVE_INFINITY, waitOut, note, session, signal }) {
  /** @type {Attempt[]} */
  const rows = [];
  let pages = 0;
  while (pages < maxPages && rows.length < want) {
    let answer;
    try {
      answer = await call(creds, "GET", `/v1/webhook-logs?${query}`, { signal, session });
    } catch (error) {
      if (!(waitOut && error instanceof ApiError && error.status === 429 && error.retryAfter)) throw error;
      const seconds = Math.min(error.retryAfter, MAX_RETRY_AFTER_S);
      note(`(The org's API rate limit: ${rows.length} attempts read so far; going on in ${seconds} s…)`);
      if (!(await sleep(seconds * 1000, signal))) throw new ApiError(0, "aborted", "Stopped.");
      continue;
    }
    pages++;
    if (!Array.isArray(answer?.data)) throw notTheApi(creds.apiUrl);
    rows.push(...answer.data);
    if (!answer.next_cursor) return { rows, pages, more: false };
    query.set("cursor", answer.next_cursor);
  }
  return { rows, pages, more: true };
}

/** @param {Attempt} a */
export function attemptLine(a) {
  const result = a.outcome === "succeeded" ? `✓ ${a.status_code}` : `✗ ${a.status_code ?? a.error}`;
  return [
    clock(new Date(a.attempted_at)),
    a.event_type.padEnd(13),
    a.job_id,
    a.delivery_id,
    `#${a.attempt}`,
    `${result} in ${a.response_time_ms} ms`,
  ].join("  ");
}

/**
 * The `zupertry logs` command line for these parameters, to copy and run.
 * @param {Record<string, string | undefined>} params API parameter → value
 */
export function commandLine(params) {
  const words = ["zupertry logs"];
  for (const [name, value] of Object.entries(params)) {
    if (value) words.push(FLAGS[name], /^[\w.:+-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`);
  }
  return words.join(" ");
}

/**
 * A 400 answered to the CLI's request names a flag the API refused (the error's
 * `details`: the parameter and why): said per flag, with the value given, as a usage
 * error (exit 2), not the API's bare "does not match the schema".
 * @param {ApiError} error
 * @param {Record<string, string | undefined>} given API parameter → what the user passed
 */
function flagError(error, given) {
  /** @type {Array<{ path?: unknown[], code?: string, message?: string }>} */
  const details = Array.isArray(error.details) ? error.details : [];
  const lines = details.map((issue) => {
    const name = String(issue.path?.[0] ?? "");
    if (!FLAGS[name]) return issue.message ?? error.message;
    const value = given[name] ? ` ${given[name]}` : "";
    const time = (name === "since" || name === "until") && issue.code === "invalid_format";
    const example = time ? " (an ISO 8601 time with its offset: 2026-03-19T10:00:00Z)" : "";
    return `${FLAGS[name]}${value}: ${issue.message}${example}`;
  });
  return new ApiError(400, error.code, lines.length ? lines.join("\n") : error.message, { details, usage: true });
}

/**
 * @param {Credentials} creds
 * @param {{ filters: Record<string, string | undefined>, follow: boolean, since?: string, until?: string,
 *   out?: (line: string) => void, note?: (line: string) => void, signal?: AbortSignal }} options `out`: the
 *   attempts; `note`: what is said about them (stderr), so that `logs > file` holds only attempts
 * @returns {Promise<number>}
 */
export async function logs(creds, options) {
  try {
    return await listAndFollow(creds, options);
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) {
      throw flagError(error, { ...options.filters, since: options.since, until: options.until });
    }
    throw error;
  }
}

/** `logs`, less the 400 above. @param {Credentials} creds @param {Parameters<typeof logs>[1]} options */
async function listAndFollow(
  creds,
  { filters, follow, since, until, out = console.log, note = console.error, signal },
) {
  const query = (/** @type {Record<string, string | undefined>} */ extra) => {
    const q = new URLSearchParams({ limit: "100" });
    for (const [name, value] of Object.entries({ ...filters, ...extra })) if (value) q.set(name, value);
    return q;
  };
  const session = new LogSession();
  /**
   * When the first listing began: following goes on from there, however long it took.
   * On this machine's clock: the dispatcher's is known once it has answered.
   */
  const listingStarted = Date.now();
  /** @type {Attempt[]} */
  let first;
  /** @type {string | null} said after the first screen */
  let after = null;
  if (since) {
    // Newest first is the only order the API lists in: all of the range is read (up to
    // SINCE_PAGES), then printed oldest first.
    const { rows, more } = await readPages(creds, query({ since, until }), {
      maxPages: SINCE_PAGES,
      waitOut: true,
      note,
      session,
      signal,
    });
    first = rows;
    const oldest = rows.at(-1)?.attempted_at;
    if (more && oldest) {
      const older = new Date(Date.parse(oldest) + 1).toISOString();
      const shown = rows.length.toLocaleString("en");
      after =
        `(Shown: the newest ${shown} attempts from ${since} on, as many as one listing reads. ` +
        `The older ones: ${commandLine({ ...filters, since, until: older })} ` +
        `(it starts again at ${oldest}, the oldest shown, so that one may show twice).)`;
    } else if (more) {
      after = `(None found in ${SINCE_PAGES} pages of the log: a later --since or an --until reads less.)`;
    }
  } else {
    const { rows, more } = await readPages(creds, query({ limit: "20", until }), {
      maxPages: FIRST_SCREEN_PAGES,
      want: 20,
      waitOut: true,
      note,
      session,
      signal,
    });
    first = rows.slice(0, 20);
    if (more && rows.length < 20)
      after = `(${rows.length} attempts in ${FIRST_SCREEN_PAGES} pages; --since reads further)`;
  }
  const seen = new Map(first.map((a) => [a.id, Date.parse(a.attempted_at)]));
  for (const a of first.reverse()) out(attemptLine(a));
  if (after) note(after);
  if (!follow) return 0;
  // What was logged while the first listing was read (a long --since, a 429 waited out):
  // from a timeout before it began. Without --since, the first screen showed the newest
  // 20; the others of the window are older history, not new attempts: only what is newer
  // than that screen is printed.
  const from = session.serverTime(listingStarted) - WINDOW_MS;
  const newerThan = since ? Number.NEGATIVE_INFINITY : Math.max(0, ...seen.values());
  await followLog(creds, { query, seen, catchUp: { from, newerThan }, filters, session, out, note, signal });
  return 0;
}

/**
 * `--follow`, after the first listing: polls until Ctrl+C, and prints the attempts not
 * printed before, oldest first. The first poll catches up (`catchUp`: from when, and
 * started after when, to print); every later one reads the last WINDOW_MS. Every poll,
 * the first one too, rides out a dispatcher that is away or rate-limited: it says so
 * once, waits (a 429 as long as its Retry-After, else a back-off) and tries again.
 * Windows are on the dispatcher's clock (`session`), the one `attempted_at` is on.
 * @param {Credentials} creds
 * @param {{ query: (extra: Record<string, string | undefined>) => URLSearchParams,
 *   seen: Map<string, number>, catchUp: { from: number, newerThan: number },
 *   filters: Record<string, string | undefined>, session: LogSession, out: (line: string) => void,
 *   note: (line: string) => void, signal?: AbortSignal }} options `seen`: id → start of what was printed
 */
async function followLog(creds, { query, seen, catchUp, filters, session, out, note, signal }) {
  let cappedSaid = false;
  /**
   * Reads the attempts started in [from, to), prints those not printed before (and
   * started after `newerThan`), oldest first; says once when the page cap cut it short.
   * @param {number} from unix ms
   * @param {number} [to]
   * @param {number} [newerThan]
   * @returns {Promise<number>} the pages read
   */
  const poll = async (from, to, newerThan = Number.NEGATIVE_INFINITY) => {
    const window = { since: new Date(from).toISOString(), until: to ? new Date(to).toISOString() : undefined };
    const { rows, pages, more } = await readPages(creds, query(window), {
      maxPages: POLL_PAGES,
      waitOut: false,
      note,
      session,
      signal,
    });
    if (more && !cappedSaid) {
      cappedSaid = true;
      note(
        `(--follow is showing only some attempts: more than ${POLL_PAGES * 100} started in ${WINDOW_MS / 1000} s, ` +
          "more than it reads each poll. Narrow it to what you are watching for: --outcome failed, " +
          "--event-type job.failed or --job-id ID.)",
      );
    }
    for (const a of rows.reverse()) {
      if (seen.has(a.id)) continue;
      seen.set(a.id, Date.parse(a.attempted_at));
      if (Date.parse(a.attempted_at) > newerThan) out(attemptLine(a));
    }
    return pages;
  };
  note("Following new attempts (Ctrl+C to stop)…");
  /** The catch-up, until it has been read. @type {{ from: number, newerThan: number } | null} */
  let pending = catchUp;
  let wait = 0;
  let polls = 0;
  let backoffMs = POLL_MS;
  /**
   * The last poll that worked; null before the first, the catch-up, which reads on from
   * the listing's start, so that an outage before it hides nothing.
   * @type {number | null}
   */
  let lastOk = null;
  /** While the dispatcher is away: since the last poll that worked, and what was said. */
  let away = /** @type {{ since: number | null, why: string } | null} */ (null);
  while (await sleep(wait, signal)) {
    const now = session.now();
    try {
      let pages = 0;
      if (pending) pages += await poll(pending.from, undefined, pending.newerThan);
      else {
        if (away !== null || ++polls % DEEP_EVERY === 0) pages += await poll(now - LOOK_BACK_MS, now - WINDOW_MS);
        pages += await poll(now - WINDOW_MS);
      }
      pending = null;
      if (away) note(backAgain(away.since, now, filters));
      away = null;
      backoffMs = POLL_MS;
      lastOk = now;
      wait = POLL_MS * Math.min(pages, POLL_PAGES);
      for (const [id, at] of seen) if (at < now - 2 * LOOK_BACK_MS) seen.delete(id);
    } catch (error) {
      // Ctrl+C during a poll: following ends as asked.
      if (signal?.aborted) break;
      // A refused key, a URL that is not the API: waiting would not help.
      if (!(error instanceof ApiError && error.passing)) throw error;
      wait = error.retryAfter ? Math.min(error.retryAfter, MAX_RETRY_AFTER_S) * 1000 : backoffMs;
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      const why =
        error.status === 0
          ? error.message
          : `The dispatcher answered HTTP ${error.status}${error.status === 429 ? " (the org's API rate limit)" : ""}`;
      // One line per outage (and per change of cause), not one per retry.
      if (away?.why !== why) note(`${why}; retrying in ${Math.round(wait / 1000)} s (Ctrl+C to stop)…`);
      away = { since: away ? away.since : lastOk, why };
    }
  }
}

/**
 * What --follow says when the dispatcher answers again, and what it may have missed: the
 * poll at `lastOk` had every attempt started up to a timeout before it; the deep poll
 * made now reads back LOOK_BACK_MS; an attempt in between was never read.
 * @param {number | null} lastOk unix ms of the last poll that worked (null: none, the
 *   catch-up read all since the listing)
 * @param {number} now
 * @param {Record<string, string | undefined>} filters
 */
function backAgain(lastOk, now, filters) {
  const back = "Back: the dispatcher answers again; following.";
  if (lastOk === null) return back;
  const from = lastOk - WINDOW_MS;
  const to = now - LOOK_BACK_MS;
  if (to <= from) return back;
  const since = new Date(from).toISOString();
  const until = new Date(to).toISOString();
  return (
    `${back} Attempts started ${clock(new Date(from))}–${clock(new Date(to))} were not shown: ` +
    commandLine({ ...filters, since, until })
  );
}
