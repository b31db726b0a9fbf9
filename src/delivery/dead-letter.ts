import { readConfig } from "../config";
import { logShardOf } from "../org/log-shard";
import { type AttemptRecord, insertAttempts, readDeliveryStates } from "../store/attempts";
import { unsentResponse } from "./attempt";
import type { DeliveryMessage } from "./message";
import { isStalled, ownerOf } from "./plan";
import { eventColumns } from "./record";
import { type Requeue, requeue } from "./requeue";
import { crashBackoffSeconds } from "./retry-policy";
import { groupByShard, type ShardRecord } from "./shard-groups";

/** The queue whose messages ran out of retries (wrangler.toml `dead_letter_queue`). */
export const DEAD_LETTER_QUEUE = "deliveries-dlq";

/** The longest a dead letter waits between its tries (see below). */
const DEAD_LETTER_MAX_BACKOFF_SECONDS = 3600;

/**
 * The dead-letter consumer: a message lands here after `max_retries` runs that could
 * not finish it (a D1 outage that outlasted the back-off, or a bug). Nothing may
 * vanish silently, so its delivery is ended as `failed` with error `internal`: one
 * more log row, numbered after the last real attempt, that sent nothing. The customer
 * sees it in the log and can redeliver it.
 *
 * Deliveries that already finished are left alone, and so are pending ones whose next
 * attempt is not yet due, or due but owned by another message and not stalled: a live
 * schedule (the owner, while this dead letter was a producer's retry that died on its
 * own, say) still carries them, and may be making that very attempt; a row of ours
 * logged first would make its real attempt unloggable. A stalled one is the sweep's or
 * ours, whichever comes first. The primary key keeps a redelivered dead letter from
 * logging the row twice.
 *
 * Two dead letters are not what they seem by that rule:
 * - The owner itself, with its next attempt ahead: it logged an attempt, and its wait for
 *   the next one (a retry with a delay) was one retry past `max_retries`. It *is* the live
 *   schedule, so it goes back to the fast lane as a new message that keeps its owner, due
 *   when the next attempt is (the sweep would find it only once stalled, 5 minutes late).
 * - A redeliver of a finished delivery that was never made: the API answered 202 for it,
 *   so its ending is logged (`internal`), as for a delivery that never got an attempt.
 *
 * The row goes to the org's log shard. A shard that cannot be written, or an org whose
 * shard is unknown, keeps its messages here for another try (the DLQ has retries of its
 * own: 90, backing off from 30 s to an hour, about 3.5 days, within the queue's 4-day
 * message retention), with a log line for the operator each time; the other shards go on.
 * Past those, the message is gone: an outage that long is the operator's to repair.
 */
export async function failDeadLetters(batch: MessageBatch<DeliveryMessage>, env: Env): Promise<void> {
  // Each org's shard, from this isolate's memory or its object; then each shard on its own,
  // so one that fails keeps only its own messages for another try.
  const recordOf = async (org: string): Promise<ShardRecord> => {
    try {
      return { ok: true, value: await logShardOf(env, org) };
    } catch (error) {
      return { ok: false, error };
    }
  };
  const placements = await Promise.all(groupByShard(env, batch.messages, recordOf));
  const groups = placements.flatMap((p) => p.groups);
  const unplaced = placements.flatMap((p) => p.unplaced);
  const tryAgain = (message: Message<DeliveryMessage>) =>
    message.retry({ delaySeconds: crashBackoffSeconds(message.attempts, DEAD_LETTER_MAX_BACKOFF_SECONDS) });
  const { stalledAfterMs } = readConfig(env);
  let failed = 0;
  await Promise.all(
    groups.map(async (group) => {
      let ended: Awaited<ReturnType<typeof failInShard>>;
      try {
        ended = await failInShard(group.db, group.messages, stalledAfterMs);
      } catch (error) {
        for (const message of group.messages) tryAgain(message);
        logDeadLetterFault("write_log", group.messages.length, error);
        return;
      }
      failed += ended.failed;
      const rescheduled = new Set(ended.rescheduled.map(({ message }) => message));
      for (const message of group.messages) if (!rescheduled.has(message)) message.ack();
      await requeue(env, "fast", ended.rescheduled, (chunk, error) => {
        for (const { message } of chunk) tryAgain(message);
        logDeadLetterFault("requeue", chunk.length, error);
      });
    }),
  );
  for (const { message } of unplaced) tryAgain(message);
  if (unplaced.length > 0) logDeadLetterFault("log_shard", unplaced.length, unplaced[0]!.error);
  console.error(JSON.stringify({ event: "deliveries.dead_lettered", messages: batch.messages.length, failed }));
}

/**
 * Logs the `internal` ending of the deliveries of one shard's dead letters, and names the
 * dead letters that are their delivery's live schedule (to be queued again, with the delay
 * left until their next attempt).
 */
async function failInShard(
  db: D1Database,
  messages: readonly Message<DeliveryMessage>[],
  stalledAfterMs: number,
): Promise<{ failed: number; rescheduled: Requeue[] }> {
  const states = await readDeliveryStates(db, [...new Set(messages.map((m) => m.body.delivery_id))]);
  const records = new Map<string, AttemptRecord>();
  const rescheduled: Requeue[] = [];
  const now = Date.now();
  for (const message of messages) {
    const { body } = message;
    const state = states.get(body.delivery_id);
    const owner = state !== undefined && state.last_message_id === ownerOf(message);
    if (owner && state.next_attempt_at !== null && state.next_attempt_at > now) {
      rescheduled.push({ message, delaySeconds: Math.ceil((state.next_attempt_at - now) / 1000) });
      continue;
    }
    const unmadeRedeliver =
      state !== undefined &&
      state.next_attempt_at === null &&
      body.redeliver_after !== undefined &&
      state.last_attempt === body.redeliver_after;
    const finishedOrLive =
      state !== undefined &&
      !unmadeRedeliver &&
      (state.next_attempt_at === null ||
        state.next_attempt_at > now ||
        (!owner && !isStalled(state, now, stalledAfterMs)));
    if (finishedOrLive || records.has(body.delivery_id)) continue;
    const attempt = (state?.last_attempt ?? 0) + 1;
    records.set(body.delivery_id, {
      delivery_id: body.delivery_id,
      attempt,
      org_id: body.org_id,
      job_id: body.job_id,
      event_type: body.event_type,
      message_id: ownerOf(message),
      attempted_at: now,
      url: body.webhook_url,
      ...eventColumns(attempt, body),
      ...unsentResponse("internal", "the delivery could not be processed and its retries ran out; redeliver it"),
      outcome: "failed",
      next_attempt_at: null,
      signatures: null,
    });
  }
  await insertAttempts(db, [...records.values()]);
  return { failed: records.size, rescheduled };
}

function logDeadLetterFault(stage: string, messages: number, error: unknown): void {
  console.error(
    JSON.stringify({
      event: "deliveries.dead_letter_fault",
      stage,
      messages,
      error: error instanceof Error ? error.message.slice(0, 200) : String(error),
    }),
  );
}
