// @ts-check
// `zupertry listen --forward-to URL`: holds a WebSocket to the dispatcher (GET /v1/listen)
// and POSTs each of the org's deliveries to a local URL with the bytes and headers a real
// endpoint gets, so a receiver's signature check runs unchanged.

import WebSocket from "ws";
import {
  ApiError,
  call,
  clock,
  describeError,
  LogSession,
  MAX_BACKOFF_MS,
  MAX_RETRY_AFTER_S,
  notTheApi,
  redirected,
} from "./api.mjs";
import { commandLine } from "./logs.mjs";

/** @typedef {import("./api.mjs").Credentials} Credentials */
/**
 * @typedef {{ type: "delivery", delivery_id: string, job_id: string, event_type: string, attempt: number,
 *   headers: Record<string, string>, body: string }} DeliveryFrame
 */
/** A stretch of disconnection, on this machine's clock (unix ms). @typedef {{ from: number, to: number }} Away */

/** A local receiver gets as long as a real one. */
const FORWARD_TIMEOUT_MS = 10_000;
/**
 * Deliveries forwarded at once; the others wait their turn, in the order they came. The
 * dispatcher holds at most 3 connections to one endpoint (MAX_CONNECTIONS_PER_ENDPOINT in
 * src/delivery/consumer.ts), so a receiver on a laptop sees no more than a real one would.
 */
const FORWARD_AT_ONCE = 3;
/**
 * What is read of a local receiver's answer before the rest is cancelled: as much as the
 * dispatcher keeps of a real one (RESPONSE_BODY_LIMIT_BYTES, 64 KiB by default). A
 * receiver that streams without end then costs a moment, not the timeout and memory.
 */
const FORWARD_BODY_BYTES = 65_536;
/**
 * A dispatcher (or a proxy before it) that takes the connection but never answers the
 * upgrade would hold `listen` forever: ws sets no limit of its own. After this long the
 * attempt fails like a refused connection, and the back-off tries again.
 */
const HANDSHAKE_TIMEOUT_MS = 15_000;
/**
 * A refused upgrade's answer is read for its error message: at most this much, for at
 * most this long (the message is in its first bytes). One that never ends must not hold
 * the reconnect.
 */
const ERROR_BODY_BYTES = 16_384;
const ERROR_BODY_WAIT_MS = 5_000;
/**
 * What a reconnect missed is counted this long after it. An attempt is logged when it
 * ends, up to the 10 s attempt timeout after it started: counted at once, an attempt
 * started while disconnected and still running (a timeout, the one a user watches for)
 * would be neither forwarded nor counted. The 5 s more are for the log write.
 */
const COUNT_MISSED_AFTER_MS = 15_000;
/**
 * The missed window is widened by this at each end: the dispatcher's clock is known to
 * the second (its Date header). What was forwarded in the widening is left out anyway.
 */
const CLOCK_SLACK_MS = 1_000;
/**
 * A `skipped` frame's `since` is when the dispatcher first skipped a delivery, which comes
 * after its attempt started (a run sends its frames every 50 ms, to an object that may be
 * busy): the `logs` command reaches back this far before it (a few forwarded ones show too).
 */
const SKIPPED_SINCE_SLACK_MS = 10_000;
/**
 * A text ping this often keeps proxies from closing an idle socket (the object answers
 * without waking); no pong for two of them means the connection is dead (a laptop that
 * slept, a network that changed), and it is dropped and made again.
 */
const PING_EVERY_MS = 30_000;
const DEAD_AFTER_MS = 2 * PING_EVERY_MS + 5_000;
/**
 * Results go back in batches (one `results` frame per 25, or after 200 ms): a burst of
 * deliveries wakes the dispatcher's object a few times, not once per delivery.
 */
const RESULTS_PER_FRAME = 25;
const RESULTS_WAIT_MS = 200;
/** The dispatcher closes on a frame over 8 KiB (src/org/listeners.ts); a batch stays under it. */
const MAX_FRAME_BYTES = 8192 - 256;
/** Deliveries forwarded lately, remembered so that a reconnect does not count them as missed. */
const REMEMBER_FORWARDED = 1000;
/**
 * How long a reconnect waits out the org's listener limit (a 429 without Retry-After).
 * The dispatcher counts a session as gone only after 90 s without a ping (it evicts a
 * silent one when a new one connects), so a laptop whose connection dropped finds its own
 * old session still counted, for up to 90 s from its last ping, which came before the
 * drop: 2 minutes outlasts that. On the first connection of a run the limit is other
 * people's sessions, and waiting would not help.
 */
const LISTENER_LIMIT_WAIT_MS = 120_000;
/**
 * On Ctrl+C the session is closed cleanly, so the dispatcher frees its place at once; a
 * dispatcher that does not answer the close gets this long (ws would wait 30 s).
 */
const CLOSE_WAIT_MS = 1_000;
/** Close codes of the dispatcher that end the session for good. */
const CLOSED_FOR_GOOD = {
  4001: "This API key was revoked: the listener session ended.",
};

/**
 * Runs until stopped (resolves 0) or the session cannot go on (a refused or revoked key:
 * resolves 1).
 * @param {Credentials} creds
 * @param {{ forwardTo: string, out?: (line: string) => void, note?: (line: string) => void,
 *   signal?: AbortSignal }} options `out`: a line per delivery forwarded; `note`: how the
 *   session goes (stderr)
 * @returns {Promise<number>}
 */
export function listen(creds, { forwardTo, out = console.log, note = console.error, signal }) {
  const url = `${creds.apiUrl.replace(/^http/, "ws")}/v1/listen`;
  const session = new LogSession();
  let backoffMs = 1000;
  /**
   * When the connection was last known to work (it opened, a frame or a pong came); null
   * before the first. A connection that died unnoticed (a laptop asleep) is found dead
   * only later, so what it missed is counted from here.
   * @type {number | null}
   */
  let lastHeard = null;
  /**
   * Since when the listener has been disconnected; null while connected (or before the first).
   * @type {number | null}
   */
  let lostAt = null;
  /** Since when reconnects have met the listener limit; null when they have not. @type {number | null} */
  let limitedSince = null;
  /** `delivery_id#attempt` of deliveries forwarded lately. @type {Set<string>} */
  const forwarded = new Set();
  /** Counts of what reconnects missed, waiting for the attempts made meanwhile to end. */
  const counts = /** @type {Map<NodeJS.Timeout, Away>} */ (new Map());
  /** Deliveries waiting for one of the FORWARD_AT_ONCE places, and the session each came on. */
  const queue = /** @type {Array<{ frame: DeliveryFrame, ws: WebSocket }>} */ ([]);
  let forwarding = 0;
  /** Aborted when the session ends: forwards and counts in flight must not hold the exit. */
  const stopping = new AbortController();
  /** @type {WebSocket | null} */
  let socket = null;
  /** @type {NodeJS.Timeout | undefined} */
  let retry;
  /** @type {NodeJS.Timeout | undefined} */
  let ping;

  return new Promise((resolve) => {
    /** @type {Array<Record<string, unknown>>} */
    let results = [];
    let resultsBytes = 0;
    /** @type {NodeJS.Timeout | undefined} */
    let flushTimer;
    /** Drops the current socket and its timers (results not yet sent go with it). */
    const drop = () => {
      clearInterval(ping);
      clearTimeout(flushTimer);
      flushTimer = undefined;
      results = [];
      resultsBytes = 0;
      socket?.removeAllListeners();
      socket?.on("error", () => {});
    };
    /** @param {number} code */
    const finish = (code) => {
      clearTimeout(retry);
      for (const [timer, away] of counts) {
        clearTimeout(timer);
        note(`Ended before counting what was missed while disconnected: ${missedRange(session, away).command}`);
      }
      counts.clear();
      queue.length = 0;
      stopping.abort();
      if (socket) flush(socket);
      drop();
      const ws = socket;
      ws?.close();
      if (ws) setTimeout(() => ws.terminate(), CLOSE_WAIT_MS).unref();
      resolve(code);
    };
    signal?.addEventListener("abort", () => finish(0), { once: true });

    const connect = () => {
      const ws = new WebSocket(url, {
        headers: { Authorization: `Bearer ${creds.apiKey}` },
        maxPayload: 2 ** 21,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
      socket = ws;
      let lastPong = Date.now();
      ws.on("upgrade", (response) => session.heard(response.headers.date));
      ws.on("unexpected-response", async (_request, response) => {
        const message = parseError(await readErrorBody(response));
        // Ctrl+C, or the handshake's timeout, came while the body was read: that was dealt with.
        if (ws !== socket || ws.readyState === WebSocket.CLOSED) return;
        refused(response.statusCode ?? 0, response.headers, message);
      });
      ws.on("open", () => {
        backoffMs = 1000;
        limitedSince = null;
        lastPong = Date.now();
        lastHeard = Date.now();
        clearInterval(ping);
        ping = setInterval(() => {
          if (Date.now() - lastPong > DEAD_AFTER_MS) lost("no answer to pings");
          else ws.send("ping");
        }, PING_EVERY_MS);
        if (lostAt !== null) countLater({ from: lostAt, to: Date.now() });
        lostAt = null;
        note(`Ready: forwarding this org's deliveries to ${forwardTo} (Ctrl+C to stop).`);
      });
      ws.on("message", (data, isBinary) => {
        lastHeard = Date.now();
        if (isBinary) return;
        const text = data.toString();
        if (text === "pong") {
          lastPong = Date.now();
          return;
        }
        /** @type {{ type?: string, message?: string } & Partial<DeliveryFrame>} */
        let frame;
        try {
          frame = JSON.parse(text);
        } catch {
          return;
        }
        if (frame.type === "delivery") enqueue(/** @type {DeliveryFrame} */ (frame), ws);
        else if (frame.type === "error") note(`The dispatcher says: ${frame.message}`);
        else if (frame.type === "skipped") {
          const said = skippedNotice(/** @type {Record<string, unknown>} */ (frame));
          if (said) note(said);
        }
      });
      ws.on("close", (code, reason) => {
        if (ws !== socket) return;
        const final = CLOSED_FOR_GOOD[/** @type {keyof typeof CLOSED_FOR_GOOD} */ (code)];
        if (final) {
          note(final);
          finish(1);
          return;
        }
        lost(`closed (${code}${reason.length ? `: ${reason}` : ""})`);
      });
      ws.on("error", (error) => {
        // A refused connection, a handshake timed out: "close" follows and reconnects.
        if (ws.readyState !== WebSocket.OPEN) note(`Cannot reach ${creds.apiUrl}: ${describeError(error)}`);
      });
    };

    /**
     * What a refused upgrade means: the end (a refused key, not the API), or a wait.
     * @param {number} status
     * @param {import("node:http").IncomingHttpHeaders} headers
     * @param {string} message the API's error message, if it gave one
     */
    const refused = (status, headers, message) => {
      if (status === 401) {
        note("The API key was not accepted: it is invalid or has been revoked.");
        finish(1);
      } else if (status >= 200 && status < 400) {
        // Not the API (a website, an http:// to https:// redirect): trying again would not help.
        note(status >= 300 ? redirected(creds.apiUrl, headers.location) : notTheApi(creds.apiUrl).message);
        finish(1);
      } else if (status === 429 && !headers["retry-after"]) {
        // The org's listener limit. After a drop, likely this laptop's own old session:
        // it passes (LISTENER_LIMIT_WAIT_MS). Otherwise waiting would not help.
        const why = message || "too many listeners";
        const waited = limitedSince === null ? 0 : Date.now() - limitedSince;
        if (lastHeard === null || waited >= LISTENER_LIMIT_WAIT_MS) {
          const after = lastHeard === null ? "" : ` (still, after ${Math.round(waited / 60_000)} minutes)`;
          note(`The dispatcher refused the listener${after}: ${why}`);
          finish(1);
          return;
        }
        if (limitedSince === null) {
          limitedSince = Date.now();
          note(
            `The dispatcher refused the reconnect: ${why}. One of them is likely this listener's ` +
              "dropped connection, which the dispatcher counts until 90 s after its last ping: " +
              "retrying for up to 2 minutes.",
          );
        }
        lost(`HTTP 429: ${why}`);
      } else if (status >= 400 && status < 500 && status !== 429) {
        // Not a passing fault (a wrong --api-url, say): trying again would not help either.
        note(`The dispatcher at ${creds.apiUrl} refused the listener: HTTP ${status}${message ? `: ${message}` : ""}`);
        finish(1);
      } else {
        // A rate limit (Retry-After) or a passing fault: try again.
        const after = Number(headers["retry-after"]);
        if (Number.isFinite(after) && after > 0)
          backoffMs = Math.max(backoffMs, Math.min(after, MAX_RETRY_AFTER_S) * 1000);
        lost(`HTTP ${status}${message ? `: ${message}` : ""}`);
      }
    };

    /** @param {string} why */
    const lost = (why) => {
      if (signal?.aborted) return;
      drop();
      socket?.terminate();
      if (lastHeard !== null) lostAt ??= lastHeard;
      note(`Connection lost (${why}); reconnecting in ${Math.round(backoffMs / 1000)} s…`);
      clearTimeout(retry);
      retry = setTimeout(connect, backoffMs);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    };

    /**
     * Counts what a reconnect missed, once the attempts made while away have ended and
     * been logged (COUNT_MISSED_AFTER_MS); says at once that it will.
     * @param {Away} away
     */
    const countLater = (away) => {
      note(
        `Reconnected: what was missed while disconnected is counted in ${COUNT_MISSED_AFTER_MS / 1000} s, ` +
          "once the attempts made meanwhile have ended.",
      );
      const timer = setTimeout(async () => {
        const said = await missedWindow(creds, session, away, forwarded, stopping.signal);
        // Not when the session ended meanwhile: that said what was not counted.
        if (counts.delete(timer)) note(said);
      }, COUNT_MISSED_AFTER_MS);
      counts.set(timer, away);
    };

    /** @param {WebSocket} ws */
    const flush = (ws) => {
      clearTimeout(flushTimer);
      flushTimer = undefined;
      const batch = results;
      results = [];
      resultsBytes = 0;
      if (batch.length > 0 && ws.readyState === WebSocket.OPEN)
        ws.send(JSON.stringify({ type: "results", results: batch }));
    };

    /**
     * Takes a delivery to forward: at once if fewer than FORWARD_AT_ONCE are being
     * forwarded, else after those before it.
     * @param {DeliveryFrame} frame
     * @param {WebSocket} ws the session it came on
     */
    const enqueue = (frame, ws) => {
      forwarded.add(`${frame.delivery_id}#${frame.attempt}`);
      if (forwarded.size > REMEMBER_FORWARDED) forwarded.delete(forwarded.values().next().value ?? "");
      queue.push({ frame, ws });
      startForwards();
    };
    const startForwards = () => {
      while (forwarding < FORWARD_AT_ONCE && queue.length > 0) {
        const { frame, ws } = /** @type {{ frame: DeliveryFrame, ws: WebSocket }} */ (queue.shift());
        forwarding++;
        forward(frame, ws).finally(() => {
          forwarding--;
          startForwards();
        });
      }
    };

    /**
     * POSTs one delivery to the local URL and tells the dispatcher how it went.
     * @param {DeliveryFrame} frame
     * @param {WebSocket} ws
     */
    const forward = async (frame, ws) => {
      const started = performance.now();
      const { status, error } = await postLocally(forwardTo, frame, stopping.signal);
      // Stopped (Ctrl+C) while it was on its way: nothing to say of it.
      if (stopping.signal.aborted) return;
      const ms = Math.round(performance.now() - started);
      out(
        [
          clock(),
          frame.event_type.padEnd(13),
          frame.job_id,
          frame.delivery_id,
          `#${frame.attempt}`,
          error === null ? `→ ${status} in ${ms} ms` : `→ error: ${error}`,
        ].join("  "),
      );
      // Sent on a session that has died since: the dispatcher's new session did not send it,
      // and its answers must not ride on (or be flushed away with) this one's.
      if (ws !== socket || ws.readyState !== WebSocket.OPEN) return;
      const result = {
        delivery_id: frame.delivery_id,
        attempt: frame.attempt,
        job_id: frame.job_id,
        event_type: frame.event_type,
        status_code: status,
        response_time_ms: ms,
        error: error?.slice(0, 200) ?? null,
      };
      const bytes = Buffer.byteLength(JSON.stringify(result)) + 1;
      if (resultsBytes + bytes > MAX_FRAME_BYTES) flush(ws);
      results.push(result);
      resultsBytes += bytes;
      if (results.length >= RESULTS_PER_FRAME) flush(ws);
      else flushTimer ??= setTimeout(() => flush(ws), RESULTS_WAIT_MS);
    };

    connect();
  });
}

/**
 * POSTs a delivery to the local receiver, with its bytes and headers, and reads the
 * answer's first FORWARD_BODY_BYTES (the rest is cancelled), all within the timeout.
 * @param {string} forwardTo
 * @param {DeliveryFrame} frame
 * @param {AbortSignal} stopping
 * @returns {Promise<{ status: number | null, error: string | null }>}
 */
async function postLocally(forwardTo, frame, stopping) {
  /** @type {number | null} */
  let status = null;
  try {
    const res = await fetch(forwardTo, {
      method: "POST",
      headers: frame.headers,
      body: frame.body,
      redirect: "manual",
      signal: AbortSignal.any([AbortSignal.timeout(FORWARD_TIMEOUT_MS), stopping]),
    });
    status = res.status;
    await readUpTo(res.body, FORWARD_BODY_BYTES);
    return { status, error: null };
  } catch (thrown) {
    return { status, error: describeError(thrown) };
  }
}

/**
 * Reads a body until it ends or `limit` bytes have come, then cancels the rest.
 * @param {ReadableStream<Uint8Array> | null} body
 * @param {number} limit
 */
async function readUpTo(body, limit) {
  if (!body) return;
  const reader = body.getReader();
  let bytes = 0;
  try {
    while (bytes < limit) {
      const { done, value } = await reader.read();
      if (done) return;
      bytes += value.byteLength;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/**
 * The start of a refused upgrade's answer: at most ERROR_BODY_BYTES of it, for at most
 * ERROR_BODY_WAIT_MS; then the answer is dropped. Never throws: a body cut off reads as
 * what came of it.
 * @param {import("node:http").IncomingMessage} response
 * @returns {Promise<string>}
 */
function readErrorBody(response) {
  return new Promise((resolve) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let bytes = 0;
    const done = () => {
      clearTimeout(timer);
      response.destroy();
      resolve(Buffer.concat(chunks).subarray(0, ERROR_BODY_BYTES).toString());
    };
    const timer = setTimeout(done, ERROR_BODY_WAIT_MS);
    response.on("data", (/** @type {Buffer} */ chunk) => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes >= ERROR_BODY_BYTES) done();
    });
    response.on("end", done);
    response.on("error", done);
  });
}

/** @param {string} body */
function parseError(body) {
  try {
    return /** @type {{ error?: { message?: string } }} */ (JSON.parse(body)).error?.message ?? "";
  } catch {
    return "";
  }
}

/**
 * What a `skipped` frame says (src/org/listeners.ts): the dispatcher did not relay some
 * deliveries to this session while it had 4 MiB of them unanswered (its local receiver
 * slower than the org's traffic, say); they went to the real endpoint as always. With the
 * `logs` command that lists them (its times are the dispatcher's, reaching back
 * SKIPPED_SINCE_SLACK_MS). Null for a frame that does not say it.
 * @param {Record<string, unknown>} frame
 */
export function skippedNotice({ count, since, until }) {
  if (typeof count !== "number" || typeof since !== "string" || typeof until !== "string") return null;
  const from = Date.parse(since) - SKIPPED_SINCE_SLACK_MS;
  const to = Date.parse(until) + CLOCK_SLACK_MS;
  if (Number.isNaN(from) || Number.isNaN(to)) return null;
  const { shown, command } = logRange(from, to);
  return (
    `${count} deliver${count === 1 ? "y was" : "ies were"} not forwarded (${shown}): this listener had ` +
    "left 4 MiB of deliveries unanswered, and the dispatcher skipped it until it caught up. They went to " +
    `the real endpoint as always (one still under way is logged when it ends): ${command}`
  );
}

/**
 * A stretch of disconnection as the log sees it: on the dispatcher's clock, widened by
 * CLOCK_SLACK_MS at each end.
 * @param {LogSession} session
 * @param {Away} away
 */
function missedRange(session, { from, to }) {
  return logRange(session.serverTime(from) - CLOCK_SLACK_MS, session.serverTime(to) + CLOCK_SLACK_MS);
}

/**
 * A stretch of the log, from and to unix ms on the dispatcher's clock: as API parameters,
 * as shown, and as the `logs` command that lists it.
 * @param {number} fromMs
 * @param {number} toMs
 */
function logRange(fromMs, toMs) {
  const since = new Date(fromMs);
  const until = new Date(toMs);
  const range = { since: since.toISOString(), until: until.toISOString() };
  return { ...range, shown: `${clock(since)}–${clock(until)}`, command: commandLine(range) };
}

/**
 * What a reconnected listener missed: the attempts made while it was away (retries of
 * older deliveries included), which it did not forward; they went to the real endpoint
 * as always. The window starts when the connection was last heard from, so attempts it
 * did forward in it are left out. Counted COUNT_MISSED_AFTER_MS after the reconnect, so
 * that what was still running then has been logged; none counted is said as what the
 * log showed then, with the command to look again.
 * @param {Credentials} creds
 * @param {LogSession} session
 * @param {Away} away
 * @param {ReadonlySet<string>} forwarded `delivery_id#attempt`
 * @param {AbortSignal} signal
 */
async function missedWindow(creds, session, away, forwarded, signal) {
  try {
    // The window is on the dispatcher's clock. A 101 need not say it (no Date): then a
    // one-row read of the log does.
    if (session.offsetMs === null) await call(creds, "GET", "/v1/webhook-logs?limit=1", { session, signal });
    const { since, until, shown, command } = missedRange(session, away);
    const query = new URLSearchParams({ since, until, limit: "100" });
    const page = await call(creds, "GET", `/v1/webhook-logs?${query}`, { session, signal });
    /** @type {Array<{ delivery_id: string, attempt: number }>} */
    const attempts = page.data;
    const n = attempts.filter((a) => !forwarded.has(`${a.delivery_id}#${a.attempt}`)).length;
    const count = `${page.next_cursor ? "at least " : ""}${n} attempt${n === 1 ? " was" : "s were"}`;
    return (
      `Reconnected. While disconnected (${shown}) ${count} made and not forwarded` +
      (n ? `: ${command}` : `, as the log shows ${COUNT_MISSED_AFTER_MS / 1000} s on (to look again: ${command}).`)
    );
  } catch (error) {
    const { shown, command } = missedRange(session, away);
    const why = error instanceof ApiError ? error.message : describeError(error);
    return `Reconnected. Disconnected ${shown}; could not list what was missed (${command}): ${why}`;
  }
}
