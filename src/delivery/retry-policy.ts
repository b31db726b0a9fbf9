import { MAX_QUEUE_DELAY_SECONDS } from "../config";

/**
 * The seed's schedule: attempt 1 at once, then one attempt after each configured
 * delay (RETRY_DELAYS_SECONDS, default 60 s and 300 s), then the delivery is failed.
 */

/** A receiver's `Retry-After` is honoured up to this long (1 hour). */
export const MAX_RETRY_AFTER_SECONDS = 3600;

/**
 * Seconds before the attempt after `attempt` (1-based), or null when the schedule is
 * over. A receiver that answered 429 or 503 with `Retry-After` gets the longer of the
 * schedule's delay and its own (capped at an hour); it never adds an attempt.
 */
export function retryDelayAfter(
  attempt: number,
  delaysSeconds: readonly number[],
  retryAfterSeconds: number | null = null,
): number | null {
  const scheduled = delaysSeconds[attempt - 1];
  if (scheduled === undefined) return null;
  return Math.max(scheduled, Math.min(retryAfterSeconds ?? 0, MAX_RETRY_AFTER_SECONDS));
}

/**
 * Back-off for a message whose run could not finish (D1 or the org's Durable Object
 * unreachable, an unexpected error): 30 s, doubling with each queue delivery, capped
 * at the queue's 12 h, or at `capSeconds` (the dead-letter queue's hour). The
 * delivery's own schedule is not touched: nothing was logged.
 */
export function crashBackoffSeconds(queueAttempts: number, capSeconds = MAX_QUEUE_DELAY_SECONDS): number {
  return Math.min(30 * 2 ** Math.max(0, queueAttempts - 1), capSeconds);
}
