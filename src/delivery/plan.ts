import type { DeliveryState } from "../store/attempts";
import type { DeliveryMessage } from "./message";

/**
 * What one queue message should do, decided from the delivery's logged state alone.
 *
 * Queues deliver at least once, producers retry, and a run can crash between any two
 * steps, so the same delivery can arrive as several messages, or as the same message
 * again. The log decides:
 *
 * - no attempt yet: make attempt 1 (if two messages race, the primary key keeps one);
 * - finished (last attempt has no `next_attempt_at`): drop it, unless it is the
 *   redeliver asked for after exactly that attempt;
 * - pending: only the message that made the last attempt owns the schedule; it makes
 *   the next attempt when due, or waits out the rest of the delay if it came back
 *   early (a crash after the log was written);
 * - stalled (pending, but overdue by more than a day: its owner message is gone): a
 *   redeliver may take over, as for a finished delivery;
 * - leased (the fast lane handed attempt N off to finish in the background): until the
 *   lease ends the message waits; if attempt N is logged by then it goes on as above,
 *   otherwise (the background work died) it makes attempt N itself.
 *
 * A message's identity is its `owner` when it carries one (it was moved between lanes
 * and is a new queue message), else its queue id: that is what `message_id` records.
 */
export type Plan =
  | { kind: "attempt"; attempt: number; /** false for a redeliver: one attempt, no retries */ scheduled: boolean }
  | { kind: "wait"; delaySeconds: number }
  | { kind: "drop"; reason: "finished" | "not_owner" | "stale_redeliver" };

/** A message this early is still treated as due (clock skew between machines). */
export const DUE_TOLERANCE_MS = 500;

/**
 * A pending delivery this far past its `next_attempt_at` has lost its schedule: beyond
 * the longest crash back-off a message can accumulate (about 8.5 h over `max_retries`)
 * and the queue's 12 h delay limit. Redeliver may then end it.
 */
export const STALLED_AFTER_MS = 24 * 60 * 60 * 1000;

/** Whether a redeliver may act on a delivery in this state: finished, or stalled. */
export function canRedeliver(state: Pick<DeliveryState, "next_attempt_at">, now: number): boolean {
  return state.next_attempt_at === null || now - state.next_attempt_at > STALLED_AFTER_MS;
}

/** The id this message acts and logs as (see above). */
export function ownerOf(message: { id: string; body: Pick<DeliveryMessage, "owner"> }): string {
  return message.body.owner ?? message.id;
}

export function planMessage(
  messageId: string,
  message: Pick<DeliveryMessage, "redeliver_after" | "lease">,
  state: DeliveryState | undefined,
  now: number,
): Plan {
  const lease = message.lease;
  if (lease !== undefined && (state?.last_attempt ?? 0) < lease.attempt) {
    const remainingMs = lease.until - now;
    if (remainingMs > DUE_TOLERANCE_MS) return { kind: "wait", delaySeconds: Math.ceil(remainingMs / 1000) };
    // The handed-off attempt was never logged: make it now, as it would have been.
    return { kind: "attempt", attempt: lease.attempt, scheduled: message.redeliver_after === undefined };
  }
  if (message.redeliver_after !== undefined) {
    return state !== undefined && canRedeliver(state, now) && state.last_attempt === message.redeliver_after
      ? { kind: "attempt", attempt: state.last_attempt + 1, scheduled: false }
      : { kind: "drop", reason: "stale_redeliver" };
  }
  if (state === undefined) return { kind: "attempt", attempt: 1, scheduled: true };
  if (state.next_attempt_at === null) return { kind: "drop", reason: "finished" };
  if (state.last_message_id !== messageId) return { kind: "drop", reason: "not_owner" };
  const remainingMs = state.next_attempt_at - now;
  return remainingMs > DUE_TOLERANCE_MS
    ? { kind: "wait", delaySeconds: Math.ceil(remainingMs / 1000) }
    : { kind: "attempt", attempt: state.last_attempt + 1, scheduled: true };
}
