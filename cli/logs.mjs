// @ts-check
// `zupertry logs [--follow]`: the org's attempts, oldest first, one line each, filtered
// like GET /v1/webhook-logs; with --follow, new ones as they are logged.

import { call, clock } from "./api.mjs";

/** @typedef {import("./api.mjs").Credentials} Credentials */
/**
 * @typedef {{ id: string, delivery_id: string, job_id: string, event_type: string, attempt: number,
 *   status_code: number | null, response_time_ms: number, attempted_at: string, outcome: string,
 *   error: string | null }} Attempt
 */

/** How often --follow asks. */
const POLL_MS = 1000;
/**
 * A row is written when its attempt ends, up to the 10 s timeout after `attempted_at`
 * (its start), so each poll looks this far back and skips the rows it already printed.
 */
const LOOK_BACK_MS = 60_000;

/** The most pages a listing follows (`collect`). */
const MAX_PAGES = 10;

/**
 * The newest `want` attempts that match, newest first, following `next_cursor` (a
 * filtered page reads a bounded stretch of the log, and may come back short, even empty,
 * with one), at most MAX_PAGES pages; says so when it stopped there short of `want`.
 * @param {Credentials} creds
 * @param {URLSearchParams} query
 * @param {number} want
 * @param {string} stoppedHint what to do for the rest, when the pages ran out
 * @param {AbortSignal} [signal]
 * @returns {Promise<Attempt[]>}
 */
async function collect(creds, query, want, stoppedHint, signal) {
  /** @type {Attempt[]} */
  const rows = [];
  for (let page = 0; page < MAX_PAGES && rows.length < want; page++) {
    const answer = await call(creds, "GET", `/v1/webhook-logs?${query}`, undefined, signal);
    rows.push(...answer.data);
    if (!answer.next_cursor) return rows.slice(0, want);
    query.set("cursor", answer.next_cursor);
  }
  if (rows.length < want) console.error(`(${rows.length} attempts in ${MAX_PAGES} pages; ${stoppedHint})`);
  return rows.slice(0, want);
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
 * @param {Credentials} creds
 * @param {{ filters: Record<string, string | undefined>, follow: boolean, since?: string,
 *   out?: (line: string) => void, signal?: AbortSignal }} options
 * @returns {Promise<number>}
 */
export async function logs(creds, { filters, follow, since, out = console.log, signal }) {
  const query = (/** @type {Record<string, string>} */ extra) => {
    const q = new URLSearchParams({ limit: "100", ...extra });
    for (const [name, value] of Object.entries(filters)) if (value) q.set(name, value);
    return q;
  };
  const get = async (/** @type {URLSearchParams} */ q) =>
    /** @type {Attempt[]} */ ((await call(creds, "GET", `/v1/webhook-logs?${q}`, undefined, signal)).data);
  const first = since
    ? await collect(creds, query({ since }), Number.POSITIVE_INFINITY, "narrow --since for the rest", signal)
    : await collect(creds, query({ limit: "20" }), 20, "--since reads further", signal);
  const seen = new Map(first.map((a) => [a.id, Date.parse(a.attempted_at)]));
  for (const a of first.reverse()) out(attemptLine(a));
  if (!follow) return 0;
  /** The attempts logged since `from` (unix ms), oldest first, not seen before (now seen). */
  const unseenSince = async (/** @type {number} */ from) =>
    (await get(query({ since: new Date(from).toISOString() }))).reverse().filter((a) => {
      if (seen.has(a.id)) return false;
      seen.set(a.id, Date.parse(a.attempted_at));
      return true;
    });
  if (!since) {
    // The first screen showed the newest 20; the others of the look-back window are
    // older history, not new attempts: only what is newer than that screen is printed.
    const newestShown = Math.max(0, ...[...seen.values()]);
    for (const a of await unseenSince(Date.now() - LOOK_BACK_MS)) {
      if (Date.parse(a.attempted_at) > newestShown) out(attemptLine(a));
    }
  }
  out("Following new attempts (Ctrl+C to stop)…");
  try {
    while (!signal?.aborted) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (signal?.aborted) break;
      const from = Date.now() - LOOK_BACK_MS;
      for (const a of await unseenSince(from)) out(attemptLine(a));
      for (const [id, at] of seen) if (at < from - LOOK_BACK_MS) seen.delete(id);
    }
  } catch (error) {
    // Ctrl+C during a poll: following ends as asked.
    if (!signal?.aborted) throw error;
  }
  return 0;
}
