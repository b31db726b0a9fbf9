import type { LogDb } from "./shards";
/**
 * The read side of the delivery log, for the org API. Every query is scoped to one
 * org, reads one page in one statement, and walks an index (see the EXPLAIN QUERY
 * PLAN test): `attempts_by_org` for the newest-first lists, `attempts_failed_by_org`
 * for `outcome=failed`, the primary key for a delivery's or a job's attempts.
 *
 * Pages are keyset pages: the cursor is the sort key of the last row, so rows
 * inserted while a client pages never shift, skip or repeat what it has not seen.
 */

import type { AttemptOutcome, AttemptSignatures, Exchange } from "./attempts";
import { inflate } from "./codec";

export interface AttemptSummaryRow {
  delivery_id: string;
  attempt: number;
  job_id: string;
  event_type: string;
  status_code: number | null;
  response_time_ms: number;
  attempted_at: number;
  outcome: AttemptOutcome;
  error: string | null;
  error_detail: string | null;
}

export interface AttemptDetailRow extends AttemptSummaryRow {
  url: string | null;
  /** Null when nothing was sent (no URL, a refused URL, an internal failure). */
  signatures: AttemptSignatures | null;
  response_headers: Record<string, string> | null;
  response_body: string | null;
  response_truncated: boolean;
  /** The delivery's body, from its attempt 1. */
  request_body: string;
}

/** Where a page of attempts ends: the sort key of its last row. */
export interface AttemptPosition {
  attempted_at: number;
  delivery_id: string;
  attempt: number;
}

/** A time range, unix ms: `since` inclusive, `until` exclusive. */
export interface TimeRange {
  since?: number;
  until?: number;
}

export interface AttemptQuery extends TimeRange {
  org_id: string;
  /** Only these deliveries (a delivery, or the deliveries of a job). */
  delivery_ids?: readonly string[];
  event_type?: string;
  outcome?: AttemptOutcome;
  after?: AttemptPosition;
  limit: number;
}

/**
 * The org, and the deliveries when the query names them, on the table aliased `alias`.
 * With a delivery filter the primary key finds the few rows; `+org_id` keeps SQLite
 * from preferring the org index (it matches the ORDER BY) and filtering the whole org.
 */
function orgConditions(
  alias: string,
  q: { org_id: string; delivery_ids?: readonly string[] },
  where: string[],
  params: unknown[],
): void {
  where.push(q.delivery_ids ? `+${alias}org_id = ?` : `${alias}org_id = ?`);
  params.push(q.org_id);
  if (q.delivery_ids) {
    where.push(`${alias}delivery_id IN (${q.delivery_ids.map(() => "?").join(", ")})`);
    params.push(...q.delivery_ids);
  }
}

/**
 * The conditions every list shares, on the table aliased `alias`: event type and the
 * time range of its `attempted_at` (the second column of the org indexes, so a range
 * narrows the index search rather than filtering after it).
 */
function sharedConditions(
  alias: string,
  q: { event_type?: string } & TimeRange,
  where: string[],
  params: unknown[],
): void {
  if (q.event_type !== undefined) {
    where.push(`${alias}event_type = ?`);
    params.push(q.event_type);
  }
  if (q.since !== undefined) {
    where.push(`${alias}attempted_at >= ?`);
    params.push(q.since);
  }
  if (q.until !== undefined) {
    where.push(`${alias}attempted_at < ?`);
    params.push(q.until);
  }
}

const SUMMARY_COLUMNS = `delivery_id, attempt, job_id, event_type, status_code, response_time_ms, attempted_at,
  outcome, error, error_detail`;

/** Attempts newest first: `ORDER BY attempted_at DESC, delivery_id DESC, attempt DESC`. */
export async function listAttempts(db: LogDb, q: AttemptQuery): Promise<AttemptSummaryRow[]> {
  if (q.delivery_ids?.length === 0) return []; // a filter nothing matches: no round trip
  const where: string[] = [];
  const params: unknown[] = [];
  orgConditions("", q, where, params);
  if (q.outcome) {
    where.push("outcome = ?");
    params.push(q.outcome);
  }
  sharedConditions("", q, where, params);
  if (q.after) {
    where.push("(attempted_at, delivery_id, attempt) < (?, ?, ?)");
    params.push(q.after.attempted_at, q.after.delivery_id, q.after.attempt);
  }
  const { results } = await db
    .prepare(
      `SELECT ${SUMMARY_COLUMNS} FROM attempts WHERE ${where.join(" AND ")}
        ORDER BY attempted_at DESC, delivery_id DESC, attempt DESC LIMIT ?`,
    )
    .bind(...params, q.limit)
    .run<AttemptSummaryRow>();
  return results;
}

type StoredBlob = number[] | ArrayBuffer;

/** One attempt of this org with everything it sent and got, or null. */
export async function getAttempt(
  db: LogDb,
  orgId: string,
  deliveryId: string,
  attempt: number,
): Promise<AttemptDetailRow | null> {
  const row = await db
    .prepare(
      `SELECT a.delivery_id, a.attempt, a.job_id, a.event_type, a.status_code, a.response_time_ms, a.attempted_at,
              a.outcome, a.error, a.error_detail, a.url, a.response_truncated, a.exchange, first.request_body
         FROM attempts AS a JOIN attempts AS first ON first.delivery_id = a.delivery_id AND first.attempt = 1
        WHERE a.delivery_id = ? AND a.attempt = ? AND a.org_id = ?`,
    )
    .bind(deliveryId, attempt, orgId)
    .first<
      AttemptSummaryRow & {
        url: string | null;
        response_truncated: number;
        exchange: StoredBlob | null;
        request_body: StoredBlob;
      }
    >();
  if (!row) return null;
  const { exchange, request_body, response_truncated, ...summary } = row;
  const sent = exchange === null ? null : (JSON.parse(inflate(exchange)) as Exchange);
  return {
    ...summary,
    signatures: sent?.signatures ?? null,
    response_headers: sent?.response.headers ?? null,
    response_body: sent?.response.body ?? null,
    response_truncated: response_truncated === 1,
    request_body: inflate(request_body),
  };
}

/** A delivery, as its attempts describe it. */
export interface DeliveryRow {
  delivery_id: string;
  job_id: string;
  event_type: string;
  /** The event's own URL, when it overrode the org default. */
  event_webhook_url: string | null;
  /** When attempt 1 started (the delivery appeared). */
  created_at: number;
  attempt_count: number;
  last_attempt_at: number;
  last_error: string | null;
  /** Set while the delivery is pending. */
  next_attempt_at: number | null;
  /** 1 when some attempt succeeded. */
  delivered: number;
}

export interface DeliveryPosition {
  created_at: number;
  delivery_id: string;
}

export type DeliveryStatus = "pending" | "delivered" | "failed";

export interface DeliveryQuery extends TimeRange {
  org_id: string;
  delivery_ids?: readonly string[];
  event_type?: string;
  status?: DeliveryStatus;
  after?: DeliveryPosition;
  limit: number;
}

/**
 * Deliveries newest first. A delivery starts with its attempt 1, so the list walks
 * the org's attempts index keeping attempt-1 rows (most rows are), and joins each to
 * its last attempt by primary key.
 */
const DELIVERED = `EXISTS (SELECT 1 FROM attempts AS ok
                 WHERE ok.delivery_id = first.delivery_id AND ok.outcome = 'succeeded')`;
const DELIVERY_COLUMNS = `first.delivery_id, first.job_id, first.event_type,
        CASE WHEN first.url_from_event = 1 THEN first.url END AS event_webhook_url,
        first.attempted_at AS created_at, last.attempt AS attempt_count, last.attempted_at AS last_attempt_at,
        last.error AS last_error, last.next_attempt_at, ${DELIVERED} AS delivered`;
/** A delivery's status as SQL (the same rule as `deliveryStatus` in src/api/log-schemas.ts). */
const STATUS_CONDITION: Record<DeliveryStatus, string> = {
  delivered: DELIVERED,
  pending: `NOT ${DELIVERED} AND last.next_attempt_at IS NOT NULL`,
  failed: `NOT ${DELIVERED} AND last.next_attempt_at IS NULL`,
};
const DELIVERY_FROM = `FROM attempts AS first
   JOIN attempts AS last ON last.delivery_id = first.delivery_id
    AND last.attempt = (SELECT MAX(attempt) FROM attempts AS m WHERE m.delivery_id = first.delivery_id)`;

export async function listDeliveries(db: LogDb, q: DeliveryQuery): Promise<DeliveryRow[]> {
  if (q.delivery_ids?.length === 0) return []; // a filter nothing matches: no round trip
  const where = ["first.attempt = 1"];
  const params: unknown[] = [];
  orgConditions("first.", q, where, params);
  sharedConditions("first.", q, where, params);
  if (q.status) where.push(`(${STATUS_CONDITION[q.status]})`);
  if (q.after) {
    where.push("(first.attempted_at, first.delivery_id) < (?, ?)");
    params.push(q.after.created_at, q.after.delivery_id);
  }
  const { results } = await db
    .prepare(
      `SELECT ${DELIVERY_COLUMNS} ${DELIVERY_FROM} WHERE ${where.join(" AND ")}
        ORDER BY first.attempted_at DESC, first.delivery_id DESC LIMIT ?`,
    )
    .bind(...params, q.limit)
    .run<DeliveryRow>();
  return results;
}

/** One delivery of this org with its body, or null. */
export async function getDelivery(
  db: LogDb,
  orgId: string,
  deliveryId: string,
): Promise<(DeliveryRow & { body: string }) | null> {
  const row = await db
    .prepare(
      `SELECT ${DELIVERY_COLUMNS}, first.request_body AS body ${DELIVERY_FROM}
        WHERE first.delivery_id = ? AND first.attempt = 1 AND first.org_id = ?`,
    )
    .bind(deliveryId, orgId)
    .first<DeliveryRow & { body: StoredBlob }>();
  return row && { ...row, body: inflate(row.body) };
}
