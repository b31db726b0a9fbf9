import { type AttemptRecord, insertAttempts, readDeliveryStates } from "../store/attempts";
import { unsentResponse } from "./attempt";
import type { DeliveryMessage } from "./message";
import { ownerOf } from "./plan";
import { eventColumns } from "./record";

/** The queue whose messages ran out of retries (wrangler.toml `dead_letter_queue`). */
export const DEAD_LETTER_QUEUE = "deliveries-dlq";

/**
 * The dead-letter consumer: a message lands here after `max_retries` runs that could
 * not finish it (a D1 outage that outlasted the back-off, or a bug). Nothing may
 * vanish silently, so its delivery is ended as `failed` with error `internal`: one
 * more log row, numbered after the last real attempt, that sent nothing. The customer
 * sees it in the log and can redeliver it.
 *
 * Deliveries that already finished are left alone, and so are pending ones whose next
 * attempt is not yet due: a live schedule (another message of the same delivery, such
 * as a producer's retry that died on its own) still carries them. The primary key keeps
 * a redelivered dead letter from logging the row twice.
 */
export async function failDeadLetters(batch: MessageBatch<DeliveryMessage>, env: Env): Promise<void> {
  const states = await readDeliveryStates(env.DB, [...new Set(batch.messages.map((m) => m.body.delivery_id))]);
  const records = new Map<string, AttemptRecord>();
  const now = Date.now();
  for (const message of batch.messages) {
    const { body } = message;
    const state = states.get(body.delivery_id);
    const finishedOrLive = state !== undefined && (state.next_attempt_at === null || state.next_attempt_at > now);
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
  await insertAttempts(env.DB, [...records.values()]);
  batch.ackAll();
  console.error(
    JSON.stringify({ event: "deliveries.dead_lettered", messages: batch.messages.length, failed: records.size }),
  );
}
