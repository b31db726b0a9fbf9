/**
 * Every SQL statement the delivery pipeline runs against the `attempts` table.
 * The schema and the reasons for its shape are in migrations/ and src/store/README.md.
 */
import { deflate } from "./codec";
import type { LogDb } from "./shards";

export type AttemptOutcome = "succeeded" | "failed";

/** Why an attempt failed; null in the log when it succeeded. The `error` CHECK in migrations/ lists the same. */
export const ATTEMPT_ERRORS = [
  "timeout",
  "network_error",
  "http_status",
  "redirect",
  "no_webhook_url",
  "invalid_url",
  "internal",
] as const;
export type AttemptError = (typeof ATTEMPT_ERRORS)[number];

/** One row of `attempts`, as the consumer writes it. Times are unix ms. */
export interface AttemptRecord {
  delivery_id: string;
  attempt: number;
  org_id: string;
  job_id: string;
  event_type: string;
  message_id: string;
  attempted_at: number;
  response_time_ms: number;
  status_code: number | null;
  outcome: AttemptOutcome;
  error: AttemptError | null;
  /** Why it failed, in a short sentence of our own (migrations/0002). */
  error_detail: string | null;
  next_attempt_at: number | null;
  url: string | null;
  /** Attempt 1 only: whether `url` was the event's own (it overrode the org default). */
  url_from_event: boolean | null;
  /** What signed the request; the other headers follow from the row. Null when nothing was sent. */
  signatures: AttemptSignatures | null;
  response_headers: Record<string, string> | null;
  response_body: string | null;
  response_truncated: boolean;
  /** Attempt 1 only: the event body (stored once per delivery). */
  request_body: string | null;
}

/** The two signature header values of an attempt (src/delivery/signing.ts makes them). */
export interface AttemptSignatures {
  zupertry: string;
  standard: string;
}

/** The `exchange` column: what was sent that the row cannot rebuild, and what came back. */
export interface Exchange {
  signatures: AttemptSignatures;
  response: { headers: Record<string, string> | null; body: string | null };
}

/** What the consumer needs to know about a delivery to decide what a message does. */
export interface DeliveryState {
  /** The highest attempt number logged. */
  last_attempt: number;
  /** The queue message that made the last attempt (it owns the schedule). */
  last_message_id: string;
  /** The queue message that made attempt 1: its body is the stored event. */
  first_message_id: string;
  /** When the next scheduled attempt is due; null when the delivery is finished. */
  next_attempt_at: number | null;
}

/** The state of each delivery that has at least one attempt. One query, by primary key. */
export async function readDeliveryStates(
  db: LogDb,
  deliveryIds: readonly string[],
): Promise<Map<string, DeliveryState>> {
  const states = new Map<string, DeliveryState>();
  if (deliveryIds.length === 0) return states;
  const { results } = await db
    .prepare(
      `SELECT delivery_id, attempt, message_id, next_attempt_at FROM attempts
        WHERE delivery_id IN (${deliveryIds.map(() => "?").join(",")}) ORDER BY delivery_id, attempt`,
    )
    .bind(...deliveryIds)
    .run<{ delivery_id: string; attempt: number; message_id: string; next_attempt_at: number | null }>();
  for (const row of results) {
    states.set(row.delivery_id, {
      last_attempt: row.attempt,
      last_message_id: row.message_id,
      first_message_id: states.get(row.delivery_id)?.first_message_id ?? row.message_id,
      next_attempt_at: row.next_attempt_at,
    });
  }
  return states;
}

const INSERT_ATTEMPT = `INSERT INTO attempts (
    delivery_id, attempt, org_id, job_id, event_type, message_id, attempted_at, response_time_ms,
    status_code, outcome, error, error_detail, next_attempt_at, url, url_from_event, response_truncated,
    request_body, exchange)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (delivery_id, attempt) DO NOTHING`;

/**
 * Only a delivery's last attempt keeps `next_attempt_at` (migrations/0002): logging
 * attempt n clears it on the attempts before, so `attempts_pending_by_org` holds exactly the
 * pending deliveries. Costs a row written only when there was a retry.
 */
const CLEAR_EARLIER_NEXT = `UPDATE attempts SET next_attempt_at = NULL
  WHERE delivery_id = ? AND attempt < ? AND next_attempt_at IS NOT NULL`;

/** A log row ready to be written: the record, with its bulky columns compressed. */
export interface EncodedAttempt {
  record: AttemptRecord;
  requestBody: Uint8Array | null;
  exchange: Uint8Array | null;
}

/** Compresses a record's bulky columns (src/store/codec.ts). */
export function encodeAttempt(record: AttemptRecord): EncodedAttempt {
  const exchange: Exchange | null =
    record.signatures === null
      ? null
      : { signatures: record.signatures, response: { headers: record.response_headers, body: record.response_body } };
  return {
    record,
    requestBody: record.request_body === null ? null : deflate(record.request_body),
    exchange: exchange === null ? null : deflate(JSON.stringify(exchange)),
  };
}

/**
 * Writes the attempts of one queue batch in one round trip (`DB.batch`, a transaction).
 * Returns, per row, whether it was new: false means the same attempt number was
 * already logged (a duplicate message raced this one), and the caller must not act on it.
 */
export async function writeAttempts(db: LogDb, rows: readonly EncodedAttempt[]): Promise<boolean[]> {
  if (rows.length === 0) return [];
  const statement = db.prepare(INSERT_ATTEMPT);
  const clear = db.prepare(CLEAR_EARLIER_NEXT);
  const later = rows.filter(({ record }) => record.attempt > 1);
  const results = await db.batch([
    ...rows.map(({ record: r, requestBody, exchange }) =>
      statement.bind(
        r.delivery_id,
        r.attempt,
        r.org_id,
        r.job_id,
        r.event_type,
        r.message_id,
        r.attempted_at,
        r.response_time_ms,
        r.status_code,
        r.outcome,
        r.error,
        r.error_detail,
        r.next_attempt_at,
        r.url,
        r.url_from_event === null ? null : r.url_from_event ? 1 : 0,
        r.response_truncated ? 1 : 0,
        requestBody,
        exchange,
      ),
    ),
    ...later.map(({ record }) => clear.bind(record.delivery_id, record.attempt)),
  ]);
  return results.slice(0, rows.length).map((result) => result.meta.changes === 1);
}

/** `encodeAttempt` then `writeAttempts`. */
export function insertAttempts(db: LogDb, records: readonly AttemptRecord[]): Promise<boolean[]> {
  return writeAttempts(db, records.map(encodeAttempt));
}
