/**
 * Every SQL statement the delivery pipeline runs against the `attempts` table.
 * The schema and the reasons for its shape are in migrations/ and src/store/README.md.
 */
import { deflateToHex } from "./codec";
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
  /**
   * The queue message that made attempt 1 (its body is the stored event), or a claim's
   * owner when a sweep claimed the delivery right after attempt 1 (src/store/stalled.ts).
   */
  first_message_id: string;
  /** When the next scheduled attempt is due; null when the delivery is finished. */
  next_attempt_at: number | null;
}

/**
 * The state of each delivery that has at least one attempt. One query, by primary key,
 * the ids in one JSON parameter (D1 binds at most 100 values to a statement). It reads a
 * delivery's first and last attempts only, each found by the key: a delivery redelivered
 * again and again has as many rows, and every message of it would read them all.
 */
export async function readDeliveryStates(
  db: LogDb,
  deliveryIds: readonly string[],
): Promise<Map<string, DeliveryState>> {
  const states = new Map<string, DeliveryState>();
  if (deliveryIds.length === 0) return states;
  const { results } = await db
    .prepare(
      `SELECT a.delivery_id, a.attempt, a.message_id, a.next_attempt_at
         FROM json_each(?) AS ids
         JOIN attempts a ON a.delivery_id = ids.value AND a.attempt IN (
           (SELECT MIN(attempt) FROM attempts m WHERE m.delivery_id = ids.value),
           (SELECT MAX(attempt) FROM attempts m WHERE m.delivery_id = ids.value))
        ORDER BY a.delivery_id, a.attempt`,
    )
    .bind(JSON.stringify(deliveryIds))
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

/**
 * Why one statement per chunk of rows, the rows in one JSON parameter: D1's binding sends
 * every bound value as JSON, a BLOB as an array of numbers (about 3.5 characters a byte),
 * and checks each one. Bound one by one, a batch of 100 rows was 1,800 values and ~90,000
 * numbers; as one JSON string per chunk, with the compressed columns in hex (2 characters
 * a byte, turned back into BLOBs by `unhex`), it is one value. The rows and the rows
 * written are the same (src/store/README.md).
 *
 * `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint of the SELECT.
 * RETURNING names the rows that were new: a conflicting row is not returned.
 */
const INSERT_ATTEMPTS = `INSERT INTO attempts (
    delivery_id, attempt, org_id, job_id, event_type, message_id, attempted_at, response_time_ms,
    status_code, outcome, error, error_detail, next_attempt_at, url, url_from_event, response_truncated,
    request_body, exchange)
  SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7,
         value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, value->>14, value->>15,
         unhex(value->>16), unhex(value->>17)
    FROM json_each(?) WHERE true
  ON CONFLICT (delivery_id, attempt) DO NOTHING
  RETURNING delivery_id, attempt`;

/**
 * Only a delivery's last attempt keeps `next_attempt_at` (migrations/0002): logging
 * attempt n clears it on the attempts before, so `attempts_pending_by_org` holds exactly the
 * pending deliveries. Costs a row written only when there was a retry. The JSON array
 * holds `[delivery_id, attempt]` pairs.
 */
const CLEAR_EARLIER_NEXT = `UPDATE attempts SET next_attempt_at = NULL
  FROM (SELECT value->>0 AS delivery_id, value->>1 AS attempt FROM json_each(?)) AS later
  WHERE attempts.delivery_id = later.delivery_id AND attempts.attempt < later.attempt
    AND attempts.next_attempt_at IS NOT NULL`;

/**
 * A chunk's JSON closes before the row that would take it past this many characters
 * (ASCII, but for the small text columns). One row is at most about 1.2 MB (see
 * RESPONSE_BODY_LIMIT_MAX_BYTES in src/config.ts), so no chunk reaches D1's 2 MB limit.
 */
const CHUNK_CHARS = 1_000_000;

/** A log row ready to be written: the record, with its bulky columns compressed (in hex). */
export interface EncodedAttempt {
  record: AttemptRecord;
  requestBodyHex: string | null;
  exchangeHex: string | null;
}

/** Compresses a record's bulky columns (src/store/codec.ts). */
export function encodeAttempt(record: AttemptRecord): EncodedAttempt {
  const exchange: Exchange | null =
    record.signatures === null
      ? null
      : { signatures: record.signatures, response: { headers: record.response_headers, body: record.response_body } };
  return {
    record,
    requestBodyHex: record.request_body === null ? null : deflateToHex(record.request_body),
    exchangeHex: exchange === null ? null : deflateToHex(JSON.stringify(exchange)),
  };
}

/**
 * Writes the attempts of one queue batch in one round trip (`DB.batch`, a transaction).
 * Returns, per row, whether it was new: false means the same attempt number was
 * already logged (a duplicate message raced this one), and the caller must not act on it.
 */
export async function writeAttempts(db: LogDb, rows: readonly EncodedAttempt[]): Promise<boolean[]> {
  if (rows.length === 0) return [];
  const insert = db.prepare(INSERT_ATTEMPTS);
  const chunks: string[][] = [[]];
  let chars = 0;
  for (const row of rows) {
    const json = JSON.stringify(jsonRow(row));
    if (chars + json.length > CHUNK_CHARS && chunks.at(-1)!.length > 0) {
      chunks.push([]);
      chars = 0;
    }
    chunks.at(-1)!.push(json);
    chars += json.length + 1;
  }
  const later = rows.filter(({ record }) => record.attempt > 1).map(({ record: r }) => [r.delivery_id, r.attempt]);
  const results = await db.batch<{ delivery_id: string; attempt: number }>([
    ...chunks.map((chunk) => insert.bind(`[${chunk.join(",")}]`)),
    ...(later.length > 0 ? [db.prepare(CLEAR_EARLIER_NEXT).bind(JSON.stringify(later))] : []),
  ]);
  const inserted = new Set(results.slice(0, chunks.length).flatMap((r) => r.results.map(keyOf)));
  // A key twice in `rows` was inserted by its first row only (json_each keeps the order).
  return rows.map(({ record }) => inserted.delete(keyOf(record)));
}

function keyOf(row: { delivery_id: string; attempt: number }): string {
  return `${row.delivery_id} ${row.attempt}`;
}

/** A row as INSERT_ATTEMPTS reads it: the columns in order, the compressed ones in hex. */
function jsonRow({ record: r, requestBodyHex, exchangeHex }: EncodedAttempt): unknown[] {
  return [
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
    requestBodyHex,
    exchangeHex,
  ];
}

/** `encodeAttempt` then `writeAttempts`. */
export function insertAttempts(db: LogDb, records: readonly AttemptRecord[]): Promise<boolean[]> {
  return writeAttempts(db, records.map(encodeAttempt));
}
