import { MAX_QUEUE_DELAY_SECONDS } from "../config";

/**
 * The seed's schedule: attempt 1 at once, then one attempt after each configured
 * delay (RETRY_DELAYS_SECONDS, default 60 s and 300 s), then the delivery is failed.
 */

/** Seconds before the attempt after `attempt` (1-based), or null when the schedule is over. */
export function retryDelayAfter(attempt: number, delaysSeconds: readonly number[]): number | null {
  return delaysSeconds[attempt - 1] ?? null;
}

/**
 * Back-off for a message whose run could not finish (D1 or the org's Durable Object
 * unreachable, an unexpected error): 30 s, doubling with each queue delivery, capped
 * at the queue's 12 h. The delivery's own schedule is not touched: nothing was logged.
 */
export function crashBackoffSeconds(queueAttempts: number): number {
  return Math.min(30 * 2 ** Math.max(0, queueAttempts - 1), MAX_QUEUE_DELAY_SECONDS);
}
