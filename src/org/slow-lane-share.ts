/**
 * An org's share of the slow lane: how many of its deliveries may enter it, and when.
 *
 * The slow lane is one queue for every org (src/delivery/lanes.ts), read in order. An
 * org that floods it with deliveries to a hanging endpoint would put every other org's
 * slow-lane deliveries (an endpoint that answers in 2 s, one that just came back) behind
 * its own, and their retries too. So each org's deliveries enter the slow lane about
 * `share` attempts at once (their retries stay in the lane they entered); the rest take
 * the overflow lane, a queue of their own, where only orgs over their share wait for each
 * other.
 *
 * The count is a virtual clock (the generic cell rate algorithm): each delivery let in
 * adds its expected attempt time divided by the share, and the clock runs down as real
 * time passes. A delivery is let in while the org's clock, with it added, stays within
 * one attempt timeout of now: while the deliveries let in, `share` at a time, would all
 * have been attempted within one timeout. So `share` at once to a hanging endpoint, ten
 * times as many to one that answers within SLOW_ATTEMPT_MS (1 s), and as many again as
 * the earlier ones would have ended. Expected time: the timeout when the endpoint hangs
 * (an attempt to it is still running past SLOW_ATTEMPT_MS, seen by the run that moves it
 * or by an earlier one, or its last attempt timed out: an average of 80 ms takes several
 * timeouts to rise) or nothing is known; else its average response time, between
 * SLOW_ATTEMPT_MS and the timeout (one that fails at once, answers in 2 s, or answers in
 * 200 ms but now and then takes 2 s). One limit: an endpoint in the slow lane for fast
 * failures that starts hanging counts at its fast time until its first timeout ends.
 *
 * Nothing here delays a delivery: a delivery turned away goes to the overflow lane, which
 * runs beside the slow one. Pure; the org's Durable Object keeps the clock.
 */

import { demotedByRunningAttempt, type EndpointHealth, lastOutcome } from "./endpoint-health";

/** A delivery the fast lane moves aside: its endpoint, and whether an attempt to it is still running. */
export interface SlowLaneMove {
  endpoint: string;
  running: boolean;
}

export interface ShareRules {
  /** Attempts one org may keep going in the slow lane at once (SLOW_LANE_ORG_SHARE). */
  share: number;
  slowAttemptMs: number;
  attemptTimeoutMs: number;
}

/** What the share needs to know of an endpoint's health (src/org/endpoint-health.ts). */
export type ShareHealth = Pick<EndpointHealth, "latency_ms" | "recent" | "demoted_at" | "last_attempt_at">;

/**
 * How long an attempt to an endpoint is expected to take (see above). `running`: the run
 * moving it saw an attempt to it still going past SLOW_ATTEMPT_MS.
 */
export function expectedAttemptMs(health: ShareHealth | null, running: boolean, rules: ShareRules): number {
  const latency = health?.latency_ms ?? null;
  const hangs =
    running ||
    health === null ||
    latency === null ||
    lastOutcome(health) === "timeout" ||
    demotedByRunningAttempt(health);
  if (hangs) return rules.attemptTimeoutMs;
  return Math.min(rules.attemptTimeoutMs, Math.max(rules.slowAttemptMs, latency));
}

/**
 * Lets deliveries in, in order, each with its expected attempt time. Returns which were
 * let in, and the org's clock after them (unix ms; never behind `now`).
 */
export function admitToSlowLane(
  clock: number,
  expectedMs: readonly number[],
  now: number,
  rules: Pick<ShareRules, "share" | "attemptTimeoutMs">,
): { admitted: boolean[]; clock: number } {
  let busyUntil = Math.max(clock, now);
  const admitted = expectedMs.map((expected) => {
    const added = expected / rules.share;
    // Within a millisecond: thirds of a timeout must add up to the whole.
    if (busyUntil + added - now > rules.attemptTimeoutMs + 1) return false;
    busyUntil += added;
    return true;
  });
  return { admitted, clock: busyUntil };
}
