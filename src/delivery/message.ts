import { toHex } from "../encoding";

/**
 * The queue message that carries one delivery from ingest to the consumer, and the
 * delivery id both sides agree on.
 *
 * The message holds the body as the exact UTF-8 bytes serialised once at ingest:
 * every attempt sends (and signs) those bytes, and nothing downstream re-serialises
 * the event. Messages are sent with `contentType: "v8"` so the bytes travel as bytes;
 * as JSON they could double in size (escaped quotes) and break the 128 KB message cap.
 */

export const EVENT_TYPES = ["job.completed", "job.failed"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The largest delivered body: a queue message holds 128 KB, the body gets half. */
export const MAX_BODY_BYTES = 65_536;

export interface DeliveryMessage {
  delivery_id: string;
  org_id: string;
  job_id: string;
  event_type: EventType;
  /** The per-event URL; null means the org default at attempt time. */
  webhook_url: string | null;
  /** `{"type":…,"data":…}` as UTF-8, exactly as it is sent. */
  body: Uint8Array;
  /**
   * Set on a manual redeliver: the attempt number that was last when it was asked
   * for. The consumer makes one attempt after it, once, and only if nothing else
   * happened to the delivery in between.
   */
  redeliver_after?: number;
  /**
   * The id of the queue message that owns this delivery's schedule, when that is not
   * this message: a delivery moved to another lane travels as a new message, and
   * keeps its owner (src/delivery/plan.ts). Unset: this message's own id.
   */
  owner?: string;
  /**
   * Set when the fast or bulk lane handed attempt `attempt` off to run in the background: it may
   * still be running (and be logged) until `until` (unix ms). Until then this message only
   * waits; after it, an attempt that never got logged is made again. `scheduled` is that
   * attempt's: false for a finished delivery's redeliver (one attempt, no retries). Unset
   * in messages queued before 2026-11-30: then it follows from `redeliver_after`.
   */
  lease?: { attempt: number; until: number; scheduled?: boolean };
  /**
   * Set by the stall sweep (or a redeliver of a stalled delivery): the last attempt of the
   * pending delivery it claimed. The message takes the delivery over and makes the next
   * attempt, if nothing happened to it in between.
   */
  take_over?: number;
  /**
   * With `take_over`: the claim's id (src/store/stalled.ts). The take-over is void once
   * the delivery is claimed again. Unset in take-overs queued before 2026-11-30.
   */
  claim?: string;
}

/** Options for every `send`/`sendBatch` of a `DeliveryMessage`. */
export const DELIVERY_MESSAGE_CONTENT_TYPE = "v8" satisfies QueueContentType;

const encoder = new TextEncoder();

/**
 * The delivery id of an event: a hash of `(org_id, type, job_id)`. A producer that
 * retries gets the same id, so the customer gets one delivery, and a job's deliveries
 * can be found from its id alone (`deliveryIdsForJob`), without an index.
 */
export async function deliveryIdFor(orgId: string, type: EventType, jobId: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(JSON.stringify([orgId, type, jobId])));
  return `dlv_${toHex(new Uint8Array(digest, 0, 16))}`;
}

/** Every delivery id a job can have in an org (one per event type). */
export function deliveryIdsForJob(orgId: string, jobId: string): Promise<string[]> {
  return Promise.all(EVENT_TYPES.map((type) => deliveryIdFor(orgId, type, jobId)));
}

/**
 * Serialises the delivered body once: `{"type", "data"}` in that order, `data` with every
 * value as sent, written compactly (`JSON.stringify`: an object's integer-like keys come
 * first, as JavaScript orders them).
 */
export function encodeEventBody(type: EventType, data: unknown): Uint8Array {
  return encoder.encode(JSON.stringify({ type, data }));
}

/**
 * The message for a new event: its id (from `ids`, taken from `data`), its body
 * serialised once from `data` (`encodeEventBody`), and where it goes.
 */
export async function newDeliveryMessage(
  type: EventType,
  ids: { org_id: string; job_id: string },
  data: unknown,
  webhookUrl: string | null,
): Promise<DeliveryMessage> {
  return {
    delivery_id: await deliveryIdFor(ids.org_id, type, ids.job_id),
    org_id: ids.org_id,
    job_id: ids.job_id,
    event_type: type,
    webhook_url: webhookUrl,
    body: encodeEventBody(type, data),
  };
}

/** A delivery as the log keeps it: enough to send it again (src/store/log.ts, src/store/stalled.ts). */
export interface StoredDelivery {
  delivery_id: string;
  org_id: string;
  job_id: string;
  event_type: string;
  webhook_url: string | null;
  /** The body as attempt 1 sent it. */
  body: string;
}

/**
 * The message that sends a stored delivery again: the stored body is the text attempt 1
 * sent, so its bytes (and every signature over them) are the same. `resume` says how the
 * message joins the delivery's history: after a manual redeliver, or taking over a stall.
 */
export function resumeDeliveryMessage(
  stored: StoredDelivery,
  resume: { redeliver_after: number } | { take_over: number; claim: string },
): DeliveryMessage {
  return {
    delivery_id: stored.delivery_id,
    org_id: stored.org_id,
    job_id: stored.job_id,
    event_type: stored.event_type as EventType,
    webhook_url: stored.webhook_url,
    body: encoder.encode(stored.body),
    ...resume,
  };
}

/**
 * An upper bound of a message's size on the queue, for splitting `sendBatch` calls
 * under the 256 KB limit: the body bytes plus its text fields and some framing.
 */
export function messageSizeEstimate(message: DeliveryMessage): number {
  return (
    message.body.byteLength +
    2 *
      (message.delivery_id.length +
        message.org_id.length +
        message.job_id.length +
        (message.webhook_url?.length ?? 0)) +
    256
  );
}
