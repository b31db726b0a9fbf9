/**
 * Endpoint health: how one org's endpoint (an origin: scheme, host and port) has been
 * answering, and the lane its deliveries take.
 *
 * Why per origin: a server that hangs hangs for every path on it, and a customer who
 * sends per-event URLs to many paths of one server should not have to prove each path
 * separately. Why per org: two orgs that share a host (a hosting platform, a tunnel
 * service) must not drag each other into the slow lane.
 *
 * The rules, applied to each attempt's outcome in the order they happened:
 *
 * - **to the slow lane**: an attempt timed out, or was still running after
 *   SLOW_ATTEMPT_MS (reason `slow`, reported while it runs), or answered after that long,
 *   or the endpoint failed 3 times in a row (`failing`);
 * - **back to the fast lane**: after a streak of good answers (2xx within
 *   SLOW_ATTEMPT_MS). The streak is 3 the first time in a day and doubles with each
 *   further move to the slow lane that day (up to 48), so an endpoint that flips
 *   between healthy and hanging costs the fast lane at most one timeout now and then,
 *   not one per flip.
 *
 * Everything here is pure; the org's Durable Object stores the state (src/org/org-settings.ts).
 */

import type { AttemptError } from "../store/attempts";

export type Lane = "fast" | "slow";
export type SlowReason = "timeout" | "slow" | "failing";

/** One letter per outcome in `recent`, oldest first. */
const OUTCOME_LETTERS = { ok: "s", slow_ok: "w", http_error: "f", timeout: "t", network_error: "n" } as const;
export type RecentOutcome = keyof typeof OUTCOME_LETTERS;
export const RECENT_OUTCOMES = Object.keys(OUTCOME_LETTERS) as RecentOutcome[];
const LETTER_OUTCOMES = Object.fromEntries(Object.entries(OUTCOME_LETTERS).map(([k, v]) => [v, k])) as Record<
  string,
  RecentOutcome
>;

/** Outcomes kept in `recent`. */
export const RECENT_LENGTH = 20;
/** Failures in a row that move an endpoint to the slow lane. */
export const FAILING_AFTER = 3;
/** Good answers in a row that bring it back, the first time in a day. */
export const RETURN_STREAK = 3;
export const MAX_RETURN_STREAK = 48;
/**
 * An org that had this many endpoints with no success ever start hanging (moved to the
 * slow lane as `slow` or `timeout`) within NEW_ENDPOINT_WINDOW_MS starts every per-event
 * endpoint it has never sent to in the slow lane (src/org/org-settings.ts).
 */
export const NEW_ENDPOINTS_HANG_AFTER = 3;
export const NEW_ENDPOINT_WINDOW_MS = 10 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;
/** Weight of the newest response time in `latency_ms` (an exponential moving average). */
const LATENCY_WEIGHT = 0.2;

/** What the Durable Object stores per endpoint (one row of `endpoint_health`). */
export interface EndpointHealth {
  origin: string;
  lane: Lane;
  /** Why it is in the slow lane; null in the fast lane. */
  lane_reason: SlowReason | null;
  /** When it last changed lanes (unix ms); null if it never left the fast lane. */
  lane_changed_at: number | null;
  /** When it last moved to the slow lane (unix ms); null if it never did (or before schema v5). */
  demoted_at: number | null;
  /** Moves to the slow lane within a day of each other: sets the streak needed to return. */
  demotions: number;
  /** Good answers in a row. */
  good_streak: number;
  consecutive_failures: number;
  last_attempt_at: number | null;
  last_success_at: number | null;
  last_failure_at: number | null;
  last_error: AttemptError | null;
  /** Moving average of response times (answers and timeouts), ms. */
  latency_ms: number | null;
  /** The last RECENT_LENGTH outcomes as letters (OUTCOME_LETTERS), oldest first. */
  recent: string;
  /** Hourly counts of the last 24 hours: [hour number since the epoch, ok, failed, timeouts]. */
  hours: Array<[number, number, number, number]>;
}

/** What a consumer run reports about one attempt. */
export interface EndpointReport {
  origin: string;
  /** When the attempt started (unix ms). */
  at: number;
  /**
   * `in_flight`: still running after SLOW_ATTEMPT_MS (the fast lane handed it off); its
   * outcome is reported again when it ends.
   */
  outcome: "succeeded" | "failed" | "in_flight";
  error: AttemptError | null;
  response_time_ms: number;
  /** It took SLOW_ATTEMPT_MS or longer (the consumer knows the setting it ran with). */
  slow: boolean;
}

export function newEndpointHealth(origin: string): EndpointHealth {
  return {
    origin,
    lane: "fast",
    lane_reason: null,
    lane_changed_at: null,
    demoted_at: null,
    demotions: 0,
    good_streak: 0,
    consecutive_failures: 0,
    last_attempt_at: null,
    last_success_at: null,
    last_failure_at: null,
    last_error: null,
    latency_ms: null,
    recent: "",
    hours: [],
  };
}

/** The streak of good answers that brings an endpoint back to the fast lane. */
export function returnStreak(demotions: number): number {
  return Math.min(RETURN_STREAK * 2 ** Math.max(0, demotions - 1), MAX_RETURN_STREAK);
}

/** The health after one report. Does not modify `health`. */
export function applyReport(health: EndpointHealth, report: EndpointReport): EndpointHealth {
  const h: EndpointHealth = { ...health, hours: health.hours.map((b) => [...b] as [number, number, number, number]) };
  const at = report.at;
  if (report.outcome === "in_flight") return demote(h, "slow", at);

  h.last_attempt_at = Math.max(h.last_attempt_at ?? 0, at);
  const slow = report.slow;
  const timeout = report.error === "timeout";
  if (report.error !== "network_error") {
    h.latency_ms = Math.round(
      h.latency_ms === null
        ? report.response_time_ms
        : h.latency_ms + LATENCY_WEIGHT * (report.response_time_ms - h.latency_ms),
    );
  }
  const bucket = hourBucket(h, at);

  if (report.outcome === "succeeded") {
    bucket[1]++;
    h.last_success_at = Math.max(h.last_success_at ?? 0, at);
    h.consecutive_failures = 0;
    h.last_error = null;
    remember(h, slow ? "slow_ok" : "ok");
    if (slow) return demote(h, "slow", at);
    h.good_streak++;
    if (h.lane === "slow" && h.good_streak >= returnStreak(h.demotions)) {
      h.lane = "fast";
      h.lane_reason = null;
      h.lane_changed_at = at;
    }
    return h;
  }

  bucket[2]++;
  if (timeout) bucket[3]++;
  h.last_failure_at = Math.max(h.last_failure_at ?? 0, at);
  h.last_error = report.error;
  h.consecutive_failures++;
  remember(h, timeout ? "timeout" : report.error === "network_error" ? "network_error" : "http_error");
  if (timeout) return demote(h, "timeout", at);
  if (slow) return demote(h, "slow", at);
  if (h.consecutive_failures >= FAILING_AFTER) return demote(h, "failing", at);
  h.good_streak = 0;
  return h;
}

function demote(h: EndpointHealth, reason: SlowReason, at: number): EndpointHealth {
  h.good_streak = 0;
  h.lane_reason = reason;
  if (h.lane === "slow") return h;
  // Flapping is moves to the slow lane within a day of each other: an endpoint down an
  // hour every night is not flapping, however soon after coming back it goes down again.
  const sameDay = h.demoted_at !== null && at - h.demoted_at < DAY_MS;
  h.demotions = (sameDay ? h.demotions : 0) + 1;
  h.lane = "slow";
  h.lane_changed_at = at;
  h.demoted_at = at;
  return h;
}

/** The endpoint's last outcome (null before any). */
export function lastOutcome(h: Pick<EndpointHealth, "recent">): RecentOutcome | null {
  const letter = h.recent.at(-1);
  return letter === undefined ? null : (LETTER_OUTCOMES[letter] ?? null);
}

/**
 * Whether the attempt that moved the endpoint to the slow lane has not reported its end:
 * an `in_flight` report (a hand-off) moves it there at the attempt's start time, and the
 * attempt's own report, when it comes, records that same time as its `last_attempt_at`.
 */
export function demotedByRunningAttempt(h: Pick<EndpointHealth, "demoted_at" | "last_attempt_at">): boolean {
  return h.demoted_at !== null && h.demoted_at > (h.last_attempt_at ?? 0);
}

function remember(h: EndpointHealth, outcome: RecentOutcome): void {
  h.recent = (h.recent + OUTCOME_LETTERS[outcome]).slice(-RECENT_LENGTH);
}

/** The counts of the hour `at` falls in, created if needed; drops hours older than a day. */
function hourBucket(h: EndpointHealth, at: number): [number, number, number, number] {
  const hour = Math.floor(at / HOUR_MS);
  h.hours = h.hours.filter(([start]) => start > hour - 24);
  let bucket = h.hours.find(([start]) => start === hour);
  if (!bucket) {
    bucket = [hour, 0, 0, 0];
    h.hours.push(bucket);
    h.hours.sort((a, b) => a[0] - b[0]);
  }
  return bucket;
}

/** What an org sees of an endpoint's health (GET /v1/webhook, the console). */
export interface EndpointHealthSummary {
  endpoint: string;
  lane: Lane;
  lane_reason: SlowReason | null;
  lane_since: string | null;
  /** Share of attempts in the last 24 h that succeeded; null when there were none. */
  success_rate_24h: number | null;
  attempts_24h: number;
  timeouts_24h: number;
  consecutive_failures: number;
  last_success_at: string | null;
  last_failure_at: string | null;
  last_error: AttemptError | null;
  latency_ms: number | null;
  /** The last outcomes, oldest first. */
  recent: RecentOutcome[];
  /** The last 24 hours, oldest first, one entry per hour (the current one last, so far). */
  hourly: HourCounts[];
}

/** One hour of an endpoint's attempts: `hour` is its start. */
export interface HourCounts {
  hour: string;
  succeeded: number;
  failed: number;
  timeouts: number;
}

export function summarizeHealth(h: EndpointHealth, now: number): EndpointHealthSummary {
  const since = Math.floor(now / HOUR_MS) - 24;
  const day = h.hours.filter(([hour]) => hour > since);
  const ok = day.reduce((n, b) => n + b[1], 0);
  const failed = day.reduce((n, b) => n + b[2], 0);
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    endpoint: h.origin,
    lane: h.lane,
    lane_reason: h.lane_reason,
    lane_since: h.lane === "slow" ? iso(h.lane_changed_at) : null,
    success_rate_24h: ok + failed === 0 ? null : Math.round((ok / (ok + failed)) * 1000) / 1000,
    attempts_24h: ok + failed,
    timeouts_24h: day.reduce((n, b) => n + b[3], 0),
    consecutive_failures: h.consecutive_failures,
    last_success_at: iso(h.last_success_at),
    last_failure_at: iso(h.last_failure_at),
    last_error: h.last_error,
    latency_ms: h.latency_ms,
    recent: [...h.recent].map((letter) => LETTER_OUTCOMES[letter]!),
    hourly: Array.from({ length: 24 }, (_, i) => {
      const hour = since + 1 + i;
      const bucket = day.find(([start]) => start === hour);
      return {
        hour: new Date(hour * HOUR_MS).toISOString(),
        succeeded: bucket?.[1] ?? 0,
        failed: bucket?.[2] ?? 0,
        timeouts: bucket?.[3] ?? 0,
      };
    }),
  };
}

/**
 * The endpoint of a webhook URL: its origin (`https://host:port`), or null when the
 * URL does not parse (the URL rules refuse it before any attempt).
 */
export function endpointOf(url: string): string | null {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}
