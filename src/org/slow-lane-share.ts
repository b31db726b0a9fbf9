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
 * the earlier ones would have ended. Expected time: the endpoint's average response time
 * (timeouts count as the timeout), between SLOW_ATTEMPT_MS and the timeout; the timeout
 * when nothing is known yet.
 *
 * Nothing here delays a delivery: a delivery turned away goes to the overflow lane, which
 * runs beside the slow one. Pure; the org's Durable Object keeps the clock.
 */

export interface ShareRules {
  /** Attempts one org may keep going in the slow lane at once (SLOW_LANE_ORG_SHARE). */
  share: number;
  slowAttemptMs: number;
  attemptTimeoutMs: number;
}

/** How long an attempt to an endpoint is expected to take, from its average response time. */
export function expectedAttemptMs(latencyMs: number | null, rules: ShareRules): number {
  if (latencyMs === null) return rules.attemptTimeoutMs;
  return Math.min(rules.attemptTimeoutMs, Math.max(rules.slowAttemptMs, latencyMs));
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
