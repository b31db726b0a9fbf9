import type { DeliveryState } from "../store/attempts";
import { claimOwner, isClaimed, LEGACY_CLAIM_OWNER } from "../store/stalled";
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
 * - stalled (pending, but overdue by more than STALLED_AFTER_SECONDS, 5 minutes by
 *   default: its owner message is lost or stuck): any message of the delivery takes it
 *   over and goes on with its schedule: a producer's re-send, or the stall sweep's
 *   (`take_over`), which first claims it (src/store/stalled.ts): a claimed delivery is
 *   no longer stalled, and only the take-over holding the latest claim makes its next
 *   attempt. A redeliver after the last attempt takes over any pending delivery by
 *   making the next attempt now ("resend now"); of a stalled one, by a claim and a
 *   take-over like the sweep's;
 * - leased (the fast or bulk lane handed attempt N off to finish in the background): until the
 *   lease ends the message waits; if attempt N is logged by then it goes on as above,
 *   otherwise (the background work died) it makes attempt N itself.
 *
 * Every attempt sends the same bytes: those of the message that made attempt 1, stored
 * with it. Any other message that makes an attempt (a re-send that took a stalled
 * delivery over, at its take-over and at every attempt it owns after) sends the stored
 * event (`storedEvent`), never its own body.
 *
 * A message's identity is its `owner` when it carries one (it was moved between lanes
 * and is a new queue message), else its queue id: that is what `message_id` records.
 */
export type Plan =
  | {
      kind: "attempt";
      attempt: number;
      /** false for a redeliver of a finished delivery: one attempt, no retries */
      scheduled: boolean;
      /** Send the delivery's stored event, not this message's (it did not make attempt 1). */
      storedEvent?: true;
    }
  | { kind: "wait"; delaySeconds: number }
  | { kind: "drop"; reason: "finished" | "not_owner" | "stale_redeliver" | "stale_take_over" };

/** A message this early is still treated as due (clock skew between machines). */
export const DUE_TOLERANCE_MS = 500;

/**
 * Whether a pending delivery has lost its schedule: overdue by more than `stalledAfterMs`
 * (STALLED_AFTER_SECONDS, 5 minutes by default: longer than a lease or a batch wait,
 * short next to the schedule's 60 s and 300 s). Its message was lost, or is stuck
 * behind a crash back-off.
 */
export function isStalled(state: Pick<DeliveryState, "next_attempt_at">, now: number, stalledAfterMs: number): boolean {
  return state.next_attempt_at !== null && now - state.next_attempt_at > stalledAfterMs;
}

/**
 * How close to its due time a pending delivery stops taking "resend now": from then on
 * its owner message may be making that very attempt (it runs up to the attempt timeout
 * before it is logged), and a resend would send it twice. The timeout plus 5 s.
 */
export function resendMarginMs(attemptTimeoutMs: number): number {
  return attemptTimeoutMs + 5_000;
}

/**
 * Whether a pending delivery takes "resend now" at `now`: its next attempt is not due
 * within the margin (then the schedule is about to make it anyway), or it is stalled
 * (its owner is gone: a redeliver takes it over).
 */
export function canResendNow(
  state: Pick<DeliveryState, "next_attempt_at">,
  now: number,
  rules: { stalledAfterMs: number; attemptTimeoutMs: number },
): boolean {
  if (state.next_attempt_at === null) return true;
  return (
    isStalled(state, now, rules.stalledAfterMs) || state.next_attempt_at - now > resendMarginMs(rules.attemptTimeoutMs)
  );
}

/** The id this message acts and logs as (see above). */
export function ownerOf(message: { id: string; body: Pick<DeliveryMessage, "owner"> }): string {
  return message.body.owner ?? message.id;
}

export function planMessage(
  messageId: string,
  message: Pick<DeliveryMessage, "redeliver_after" | "lease" | "take_over" | "claim">,
  state: DeliveryState | undefined,
  now: number,
  rules: { stalledAfterMs: number; attemptTimeoutMs: number },
): Plan {
  const plan = planFromState(messageId, message, state, now, rules);
  return plan.kind === "attempt" && state !== undefined && state.first_message_id !== messageId
    ? { ...plan, storedEvent: true }
    : plan;
}

/**
 * Whether this message is the take-over of the claim the delivery is under: it follows the
 * claimed attempt, and carries that claim's id. A take-over queued before claims had ids
 * (2026-11-30) holds only a claim of that time, `sweep`: under a later claim it is
 * dropped, and the later one's take-over makes the attempt (the delivery of one whose
 * claim wrote no owner at all stalls again, and the next sweep claims it anew).
 */
function holdsClaim(message: Pick<DeliveryMessage, "take_over" | "claim">, state: DeliveryState): boolean {
  const claimedBy = message.claim === undefined ? LEGACY_CLAIM_OWNER : claimOwner(message.claim);
  return message.take_over === state.last_attempt && state.last_message_id === claimedBy;
}

function planFromState(
  messageId: string,
  message: Pick<DeliveryMessage, "redeliver_after" | "lease" | "take_over" | "claim">,
  state: DeliveryState | undefined,
  now: number,
  rules: { stalledAfterMs: number; attemptTimeoutMs: number },
): Plan {
  const { stalledAfterMs } = rules;
  const lease = message.lease;
  if (lease !== undefined && (state?.last_attempt ?? 0) < lease.attempt) {
    // A sweep claimed the delivery since (the lease's message was late past the stall
    // threshold, in a backed-up lane): its take-over makes this attempt, unless this is
    // the take-over's own follower.
    if (state !== undefined && isClaimed(state.last_message_id) && !holdsClaim(message, state)) {
      return { kind: "drop", reason: "not_owner" };
    }
    const remainingMs = lease.until - now;
    if (remainingMs > DUE_TOLERANCE_MS) return { kind: "wait", delaySeconds: Math.ceil(remainingMs / 1000) };
    // The handed-off attempt was never logged: make it now, as it would have been (a
    // redeliver of a pending delivery was a scheduled attempt too).
    return {
      kind: "attempt",
      attempt: lease.attempt,
      scheduled: lease.scheduled ?? message.redeliver_after === undefined,
    };
  }
  // Once a take-over or a redeliver has made its attempt, it owns the delivery like any
  // owner: its marker only says which attempt it may follow.
  const owns = state !== undefined && state.last_message_id === messageId;
  if (message.take_over !== undefined && !owns) {
    // The sweep claimed the delivery after exactly this attempt (src/delivery/sweep.ts),
    // and has not claimed it again since.
    return state !== undefined && state.next_attempt_at !== null && holdsClaim(message, state)
      ? { kind: "attempt", attempt: state.last_attempt + 1, scheduled: true }
      : { kind: "drop", reason: "stale_take_over" };
  }
  if (message.redeliver_after !== undefined && !owns) {
    // A finished delivery gets one attempt. A pending one (stalled or not: "resend now")
    // gets its next scheduled attempt now, and this message owns the schedule from then
    // on: the old owner, when it comes, is no longer the owner and is dropped. Unless the
    // scheduled attempt is due by now: its owner is making it, and one is enough.
    return state !== undefined && state.last_attempt === message.redeliver_after && canResendNow(state, now, rules)
      ? { kind: "attempt", attempt: state.last_attempt + 1, scheduled: state.next_attempt_at !== null }
      : { kind: "drop", reason: "stale_redeliver" };
  }
  if (state === undefined) return { kind: "attempt", attempt: 1, scheduled: true };
  if (state.next_attempt_at === null) return { kind: "drop", reason: "finished" };
  if (state.last_message_id !== messageId) {
    return isStalled(state, now, stalledAfterMs)
      ? { kind: "attempt", attempt: state.last_attempt + 1, scheduled: true }
      : { kind: "drop", reason: "not_owner" };
  }
  const remainingMs = state.next_attempt_at - now;
  return remainingMs > DUE_TOLERANCE_MS
    ? { kind: "wait", delaySeconds: Math.ceil(remainingMs / 1000) }
    : { kind: "attempt", attempt: state.last_attempt + 1, scheduled: true };
}
