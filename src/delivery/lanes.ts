import type { DeliveryMessage } from "./message";

/**
 * Lanes, so that one customer's broken endpoint never slows anyone else's webhooks.
 *
 * A queue run holds its whole batch until its slowest attempt ends: one endpoint that
 * hangs for the 10 s timeout holds every other delivery of the batch, and (with a
 * limited number of runs at once) the batches behind it. So deliveries travel on four
 * queues, each with its own consumer settings (wrangler.toml):
 *
 * - **fast** (`deliveries`): every event starts here, unless its org is flooding (bulk,
 *   below). Deliveries to an endpoint the org's Durable Object knows to be slow are moved
 *   aside (to the slow lane, or beyond the org's share of it to the overflow lane) before
 *   any attempt.
 *   An attempt that is still running after SLOW_ATTEMPT_MS is *handed off*: it goes on
 *   in the background (`waitUntil`, which a run does not wait for, see the compatibility
 *   flag in wrangler.toml), its endpoint is marked slow, the endpoint's remaining
 *   deliveries in the batch move aside, and the run finishes without it. So
 *   a healthy run pays at most SLOW_ATTEMPT_MS for an endpoint that turns bad, once.
 * - **bulk** (`deliveries-bulk`): the fast lane is one queue, read in order, so a producer
 *   flood for one org (a backfill of 100,000 jobs) would sit ahead of every other org's
 *   events, however healthy its endpoint. Ingest counts each org's events (the Rate
 *   Limiting binding FAST_LANE_ORG_LIMIT, src/delivery/enqueue.ts); beyond 1,000 in 10 s
 *   they take this lane, which has the fast lane's settings and works exactly as it does
 *   (hand-offs, moves aside), and its own consumer invocations. A flood then waits
 *   behind itself and other floods. It costs nothing more: an event is queued once,
 *   in one lane or the other.
 * - **slow** (`deliveries-slow`): deliveries to endpoints that hang, answer slowly or
 *   keep failing. Attempts here run to their end (the full timeout); small batches, so
 *   a run is one wave of attempts. It carries a delivery's whole remaining schedule,
 *   until the endpoint answers well again (src/org/endpoint-health.ts) and new events
 *   take the fast lane.
 * - **overflow** (`deliveries-overflow`): the slow lane is one queue for every org, read
 *   in order, so an org flooding it would queue ahead of every other org's slow endpoint.
 *   Each org has a share of it (src/org/slow-lane-share.ts, asked of the org's Durable
 *   Object as deliveries move there); what goes beyond its share takes this lane instead,
 *   which works as the slow lane does, and where only orgs beyond their share wait for
 *   each other.
 *
 * Every lane makes the same attempts with the same bytes, headers and schedule; only
 * where a delivery waits differs. A moved delivery is a new queue message that keeps
 * its owner (the `owner` field), so the log's ownership rules hold across lanes.
 */

export type LaneName = "fast" | "bulk" | "slow" | "overflow";

/** A lane a delivery moves to from the fast or the bulk lane. */
export type AsideLane = "slow" | "overflow";

export const FAST_LANE_QUEUE = "deliveries";
export const BULK_LANE_QUEUE = "deliveries-bulk";
export const SLOW_LANE_QUEUE = "deliveries-slow";
export const OVERFLOW_LANE_QUEUE = "deliveries-overflow";

const LANES = new Map<string, LaneName>([
  [FAST_LANE_QUEUE, "fast"],
  [BULK_LANE_QUEUE, "bulk"],
  [SLOW_LANE_QUEUE, "slow"],
  [OVERFLOW_LANE_QUEUE, "overflow"],
]);

/**
 * The lane a queue is. Strict: a queue taken for the fast lane by mistake would move its
 * deliveries aside again on every run, never attempting them; an unknown queue fails its
 * runs loudly instead (and its messages end in the dead-letter queue, as `failed`).
 */
export function laneOfQueue(queue: string): LaneName {
  const lane = LANES.get(queue);
  if (lane === undefined) throw new Error(`no lane reads the queue ${JSON.stringify(queue)}`);
  return lane;
}

/**
 * Whether a lane's runs hand slow attempts off and move slow endpoints' deliveries aside:
 * the lanes events enter by. The slow and overflow lanes run every attempt to its end.
 */
export function movesSlowAside(lane: LaneName): boolean {
  return lane === "fast" || lane === "bulk";
}

/** A lane's producer binding: where a run sends deliveries it moves aside, or puts back. */
export function laneQueue(
  env: Pick<Env, "DELIVERIES" | "DELIVERIES_BULK" | "DELIVERIES_SLOW" | "DELIVERIES_OVERFLOW">,
  lane: LaneName,
): Queue<DeliveryMessage> {
  const bindings = {
    fast: env.DELIVERIES,
    bulk: env.DELIVERIES_BULK,
    slow: env.DELIVERIES_SLOW,
    overflow: env.DELIVERIES_OVERFLOW,
  } satisfies Record<LaneName, Queue>;
  return bindings[lane] as Queue<DeliveryMessage>;
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
