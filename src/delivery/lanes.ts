import type { DeliveryMessage } from "./message";

/**
 * Two lanes, so that one customer's broken endpoint never slows anyone else's webhooks.
 *
 * A queue run holds its whole batch until its slowest attempt ends: one endpoint that
 * hangs for the 10 s timeout holds every other delivery of the batch, and (with a
 * limited number of runs at once) the batches behind it. So deliveries travel on two
 * queues, each with its own consumer settings (wrangler.toml):
 *
 * - **fast** (`deliveries`): every event starts here. Deliveries to an endpoint the
 *   org's Durable Object knows to be slow are moved to the slow lane before any attempt.
 *   An attempt that is still running after SLOW_ATTEMPT_MS is *handed off*: it goes on
 *   in the background (`waitUntil`, which a run does not wait for, see the compatibility
 *   flag in wrangler.toml), its endpoint is marked slow, the endpoint's remaining
 *   deliveries in the batch move to the slow lane, and the run finishes without it. So
 *   a healthy run pays at most SLOW_ATTEMPT_MS for an endpoint that turns bad, once.
 * - **slow** (`deliveries-slow`): deliveries to endpoints that hang, answer slowly or
 *   keep failing. Attempts here run to their end (the full timeout); small batches, so
 *   a run is one wave of attempts. It carries a delivery's whole remaining schedule,
 *   until the endpoint answers well again (src/org/endpoint-health.ts) and new events
 *   take the fast lane.
 *
 * Every lane makes the same attempts with the same bytes, headers and schedule; only
 * where a delivery waits differs. A moved delivery is a new queue message that keeps
 * its owner (the `owner` field), so the log's ownership rules hold across lanes.
 */

export type LaneName = "fast" | "slow";

export const FAST_LANE_QUEUE = "deliveries";
export const SLOW_LANE_QUEUE = "deliveries-slow";

export function laneOfQueue(queue: string): LaneName {
  return queue === SLOW_LANE_QUEUE ? "slow" : "fast";
}

/** The producer binding of the slow lane (the fast lane's is `DELIVERIES`). */
export function slowLane(env: Pick<Env, "DELIVERIES_SLOW">): Queue<DeliveryMessage> {
  return env.DELIVERIES_SLOW as Queue<DeliveryMessage>;
}

/**
 * A handed-off attempt is over by its timeout; its log row is written right after (a
 * D1 write takes milliseconds). Until this long after the timeout, the message that
 * follows it only waits: 5 s, or the schedule's first delay when that is shorter (test
 * settings), so the lease never makes an attempt later than the schedule would.
 */
export function handOffLeaseMarginMs(retryDelaysSeconds: readonly number[]): number {
  return Math.min(5_000, (retryDelaysSeconds[0] ?? 5) * 1000);
}
