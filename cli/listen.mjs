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
  MAX_BACKOFF_MS,
  MAX_RETRY_AFTER_S,
  notTheApi,
  redirected,
} from "./api.mjs";

/** @typedef {import("./api.mjs").Credentials} Credentials */
/**
 * @typedef {{ type: "delivery", delivery_id: string, job_id: string, event_type: string, attempt: number,
 *   headers: Record<string, string>, body: string }} DeliveryFrame
 */

/** A local receiver gets as long as a real one. */
const FORWARD_TIMEOUT_MS = 10_000;
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
/** Close codes of the dispatcher that end the session for good. */
const CLOSED_FOR_GOOD = {
  4001: "This API key was revoked: the listener session ended.",
};

/**
 * Runs until stopped (resolves 0) or the session cannot go on (a refused or revoked key:
 * resolves 1).
 * @param {Credentials} creds
 * @param {{ forwardTo: string, out?: (line: string) => void, signal?: AbortSignal }} options
 * @returns {Promise<number>}
 */
export function listen(creds, { forwardTo, out = console.log, signal }) {
  const url = `${creds.apiUrl.replace(/^http/, "ws")}/v1/listen`;
  let backoffMs = 1000;
  /**
   * When the connection was last known to work (it opened, a frame or a pong came); null
   * before the first. A connection that died unnoticed (a laptop asleep) is found dead
   * only later, so what it missed is counted from here.
   * @type {number | null}
   */
  let lastHeard = null;
  /** Since when the listener has been disconnected; null while connected (or before the first). @type {Date | null} */
  let lostAt = null;
  /** Since when reconnects have met the listener limit; null when they have not. @type {number | null} */
  let limitedSince = null;
  /** `delivery_id#attempt` of deliveries forwarded lately. @type {Set<string>} */
  const forwarded = new Set();
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
      if (socket) flush(socket);
      drop();
      socket?.close();
      resolve(code);
    };
    signal?.addEventListener("abort", () => finish(0), { once: true });

    const connect = () => {
      const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${creds.apiKey}` }, maxPayload: 2 ** 21 });
      socket = ws;
      let lastPong = Date.now();
      ws.on("unexpected-response", async (_request, response) => {
        let body = "";
        for await (const chunk of response) body += chunk;
        const message = parseError(body);
        const status = response.statusCode ?? 0;
        if (status === 401) {
          out("The API key was not accepted: it is invalid or has been revoked.");
          finish(1);
        } else if (status >= 200 && status < 400) {
          // Not the API (a website, an http:// to https:// redirect): trying again would not help.
          out(status >= 300 ? redirected(creds.apiUrl, response.headers.location) : notTheApi(creds.apiUrl).message);
          finish(1);
        } else if (status === 429 && !response.headers["retry-after"]) {
          // The org's listener limit. After a drop, likely this laptop's own old session:
          // it passes (LISTENER_LIMIT_WAIT_MS). Otherwise waiting would not help.
          const refused = message || "too many listeners";
          const waited = limitedSince === null ? 0 : Date.now() - limitedSince;
          if (lastHeard === null || waited >= LISTENER_LIMIT_WAIT_MS) {
            const after = lastHeard === null ? "" : ` (still, after ${Math.round(waited / 60_000)} minutes)`;
            out(`The dispatcher refused the listener${after}: ${refused}`);
            finish(1);
            return;
          }
          if (limitedSince === null) {
            limitedSince = Date.now();
            out(
              `The dispatcher refused the reconnect: ${refused}. One of them is likely this listener's ` +
                "dropped connection, which the dispatcher counts until 90 s after its last ping: " +
                "retrying for up to 2 minutes.",
            );
          }
          lost(`HTTP 429: ${refused}`);
        } else if (status >= 400 && status < 500 && status !== 429) {
          // Not a passing fault (a wrong --api-url, say): trying again would not help either.
          out(`The dispatcher at ${creds.apiUrl} refused the listener: HTTP ${status}${message ? `: ${message}` : ""}`);
          finish(1);
        } else {
          // A rate limit (Retry-After) or a passing fault: try again.
          const after = Number(response.headers["retry-after"]);
          if (Number.isFinite(after) && after > 0)
            backoffMs = Math.max(backoffMs, Math.min(after, MAX_RETRY_AFTER_S) * 1000);
          lost(`HTTP ${status}${message ? `: ${message}` : ""}`);
        }
      });
      ws.on("open", async () => {
        backoffMs = 1000;
        limitedSince = null;
        lastPong = Date.now();
        lastHeard = Date.now();
        clearInterval(ping);
        ping = setInterval(() => {
          if (Date.now() - lastPong > DEAD_AFTER_MS) lost("no answer to pings");
          else ws.send("ping");
        }, PING_EVERY_MS);
        if (lostAt) {
          const since = lostAt;
          lostAt = null;
          out(await missedWindow(creds, since, new Date(), forwarded));
        }
        out(`Ready: forwarding this org's deliveries to ${forwardTo} (Ctrl+C to stop).`);
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
        if (frame.type === "delivery") forward(/** @type {DeliveryFrame} */ (frame), ws);
        else if (frame.type === "error") out(`The dispatcher says: ${frame.message}`);
      });
      ws.on("close", (code, reason) => {
        if (ws !== socket) return;
        const final = CLOSED_FOR_GOOD[/** @type {keyof typeof CLOSED_FOR_GOOD} */ (code)];
        if (final) {
          out(final);
          finish(1);
          return;
        }
        lost(`closed (${code}${reason.length ? `: ${reason}` : ""})`);
      });
      ws.on("error", (error) => {
        // A refused connection: "close" follows and reconnects.
        if (ws.readyState !== WebSocket.OPEN) out(`Cannot reach ${creds.apiUrl}: ${describeError(error)}`);
      });
    };

    /** @param {string} why */
    const lost = (why) => {
      if (signal?.aborted) return;
      drop();
      socket?.terminate();
      if (lastHeard !== null) lostAt ??= new Date(lastHeard);
      out(`Connection lost (${why}); reconnecting in ${Math.round(backoffMs / 1000)} s…`);
      clearTimeout(retry);
      retry = setTimeout(connect, backoffMs);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
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
     * POSTs one delivery to the local URL and tells the dispatcher how it went.
     * @param {DeliveryFrame} frame
     * @param {WebSocket} ws
     */
    const forward = async (frame, ws) => {
      forwarded.add(`${frame.delivery_id}#${frame.attempt}`);
      if (forwarded.size > REMEMBER_FORWARDED) forwarded.delete(forwarded.values().next().value ?? "");
      const started = performance.now();
      /** @type {number | null} */
      let status = null;
      /** @type {string | null} */
      let error = null;
      try {
        const res = await fetch(forwardTo, {
          method: "POST",
          headers: frame.headers,
          body: frame.body,
          redirect: "manual",
          signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
        });
        status = res.status;
        await res.arrayBuffer();
      } catch (thrown) {
        error = describeError(thrown);
      }
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

/** @param {string} body */
function parseError(body) {
  try {
    return /** @type {{ error?: { message?: string } }} */ (JSON.parse(body)).error?.message ?? "";
  } catch {
    return "";
  }
}

/**
 * What a reconnected listener missed: the attempts made while it was away (retries of
 * older deliveries included), which it did not forward; they went to the real endpoint
 * as always. The window starts when the connection was last heard from, so attempts it
 * did forward in it are left out.
 * @param {Credentials} creds
 * @param {Date} from
 * @param {Date} to
 * @param {ReadonlySet<string>} forwarded `delivery_id#attempt`
 */
async function missedWindow(creds, from, to, forwarded) {
  const window = `${clock(from)}–${clock(to)}`;
  try {
    const query = new URLSearchParams({ since: from.toISOString(), until: to.toISOString(), limit: "100" });
    const page = await call(creds, "GET", `/v1/webhook-logs?${query}`);
    /** @type {Array<{ delivery_id: string, attempt: number }>} */
    const attempts = page.data;
    const n = attempts.filter((a) => !forwarded.has(`${a.delivery_id}#${a.attempt}`)).length;
    const count = `${page.next_cursor ? "at least " : ""}${n} attempt${n === 1 ? " was" : "s were"}`;
    return (
      `Reconnected. While disconnected (${window}) ${count} made and not forwarded` +
      (n ? `: zupertry logs --since ${from.toISOString()}` : ".")
    );
  } catch (error) {
    const why = error instanceof ApiError ? error.message : describeError(error);
    return `Reconnected. Disconnected ${window}; could not list what was missed: ${why}`;
  }
}
