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
  /** Where it was sent; null when there was no URL. */
  url: string | null;
}

export interface AttemptDetailRow extends AttemptSummaryRow {
  /** Null when nothing was sent (no URL, a refused URL, an internal failure). */
  signatures: AttemptSignatures | null;
  response_headers: Record<string, string> | null;
  response_body: string | null;
  response_truncated: boolean;
  /** The delivery's body, from its attempt 1. */
  request_body: string;
}

/**
 * Index rows one page may read when a filter is not in the index (a delivery's status,
 * the event type, `outcome=succeeded`). Without a bound, a filter that matches little
 * would read an org's whole log in one query, and D1 runs one query at a time per
 * database: every org of the shard would wait. Such a page reads the index from its
 * cursor down to the budget-th entry at most (a range, so it stops there); one that ends
 * there before it fills up gives `scannedTo`, that entry, for the next page's cursor.
 */
export const SCAN_BUDGET = 2000;

/** A page of a list: its rows, and where the read stopped when the budget ended it first. */
export interface ListPage<Row, Position> {
  rows: Row[];
  /**
   * The budget-th index entry from the cursor, when there is one: a page that came back
   * short of its limit read down to it, and the next page goes on after it.
   */
  scannedTo?: Position;
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
 * The time range of `attempted_at` on the table aliased `alias` (the second column of
 * the org indexes, so a range narrows the index search rather than filtering after it).
 */
function rangeConditions(alias: string, q: TimeRange, where: string[], params: unknown[]): void {
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
  outcome, error, error_detail, url`;

/** Attempts newest first: `ORDER BY attempted_at DESC, delivery_id DESC, attempt DESC`. */
export async function listAttempts(
  db: LogDb,
  q: AttemptQuery,
  budget = SCAN_BUDGET,
): Promise<ListPage<AttemptSummaryRow, AttemptPosition>> {
  if (q.delivery_ids?.length === 0) return { rows: [] }; // a filter nothing matches: no round trip
  const where: string[] = [];
  const params: unknown[] = [];
  orgConditions("", q, where, params);
  // `outcome = 'failed'` has an index of its own (attempts_failed_by_org).
  if (q.outcome === "failed") where.push("outcome = 'failed'");
  rangeConditions("", q, where, params);
  if (q.after) {
    where.push("(attempted_at, delivery_id, attempt) < (?, ?, ?)");
    params.push(q.after.attempted_at, q.after.delivery_id, q.after.attempt);
  }
  const post: string[] = [];
  const postParams: unknown[] = [];
  if (q.outcome === "succeeded") post.push("outcome = 'succeeded'");
  if (q.event_type !== undefined) {
    post.push("event_type = ?");
    postParams.push(q.event_type);
  }
  const order = "ORDER BY attempted_at DESC, delivery_id DESC, attempt DESC";
  return readPage<AttemptSummaryRow, AttemptPosition>(db, {
    select: (filters) => `SELECT ${SUMMARY_COLUMNS} FROM attempts WHERE ${filters.join(" AND ")} ${order} LIMIT ?`,
    floor: `SELECT attempted_at, delivery_id, attempt FROM attempts WHERE ${where.join(" AND ")} ${order}`,
    key: ["attempted_at", "delivery_id", "attempt"],
    where,
    params,
    post,
    postParams,
    byPrimaryKey: q.delivery_ids !== undefined,
    limit: q.limit,
    budget,
  });
}

/**
 * One page of a list. When every row the index finds is one of the page's (no filter
 * beyond the index), or the rows are a few found by primary key, it is one query. Under
 * a filter the index does not hold (see SCAN_BUDGET) it is two in one round trip: the
 * page, bounded below by the budget-th entry of its index walk (the floor: `floor` with an
 * OFFSET, read from the index alone), so that it stops there at the latest; and that
 * entry, for the next page's cursor when the page ends there.
 */
async function readPage<Row, Position>(
  db: LogDb,
  o: {
    /** The page's query, given its conditions: `SELECT … WHERE <conditions> ORDER BY … LIMIT ?`. */
    select: (conditions: string[]) => string;
    /** The page's index walk, selecting its sort key: `SELECT <key> FROM … WHERE … ORDER BY …`. */
    floor: string;
    /** The sort key's columns, as the page's query names them. */
    key: readonly string[];
    /** Conditions the index holds, and their values. */
    where: readonly string[];
    params: readonly unknown[];
    /** Conditions it does not, and their values. */
    post: readonly string[];
    postParams: readonly unknown[];
    byPrimaryKey: boolean;
    limit: number;
    budget: number;
  },
): Promise<ListPage<Row, Position>> {
  if (o.post.length === 0 || o.byPrimaryKey) {
    const { results } = await db
      .prepare(o.select([...o.where, ...o.post]))
      .bind(...o.params, ...o.postParams, o.limit)
      .run<Row>();
    return { rows: results };
  }
  const floorSql = `${o.floor} LIMIT 1 OFFSET ${o.budget - 1}`;
  const names = o.key.map((_, i) => `k${i}`).join(", ");
  // With fewer entries than the budget, a row below every real one (numbers sort first).
  const lowest = o.key.map(() => "0").join(", ");
  const floorCte = `WITH floor(${names}) AS (SELECT * FROM (${floorSql}) UNION ALL SELECT ${lowest} LIMIT 1)`;
  const bound = `(${o.key.join(", ")}) >= (SELECT ${names} FROM floor)`;
  const [page, end] = await db.batch([
    db
      .prepare(`${floorCte} ${o.select([...o.where, ...o.post, bound])}`)
      .bind(...o.params, ...o.params, ...o.postParams, o.limit),
    db.prepare(floorSql).bind(...o.params),
  ]);
  const rows = page!.results as Row[];
  const last = (end!.results as Position[])[0];
  return last ? { rows, scannedTo: last } : { rows };
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

export async function listDeliveries(
  db: LogDb,
  q: DeliveryQuery,
  budget = SCAN_BUDGET,
): Promise<ListPage<DeliveryRow, DeliveryPosition>> {
  if (q.delivery_ids?.length === 0) return { rows: [] }; // a filter nothing matches: no round trip
  const where = ["first.attempt = 1"];
  const params: unknown[] = [];
  orgConditions("first.", q, where, params);
  rangeConditions("first.", q, where, params);
  if (q.after) {
    where.push("(first.attempted_at, first.delivery_id) < (?, ?)");
    params.push(q.after.created_at, q.after.delivery_id);
  }
  const post: string[] = [];
  const postParams: unknown[] = [];
  if (q.event_type !== undefined) {
    post.push("first.event_type = ?");
    postParams.push(q.event_type);
  }
  if (q.status) post.push(`(${STATUS_CONDITION[q.status]})`);
  const order = "ORDER BY first.attempted_at DESC, first.delivery_id DESC";
  return readPage<DeliveryRow, DeliveryPosition>(db, {
    select: (filters) => `SELECT ${DELIVERY_COLUMNS} ${DELIVERY_FROM} WHERE ${filters.join(" AND ")} ${order} LIMIT ?`,
    // The walk is over the org's attempt-1 entries (`where` holds `first.attempt = 1`).
    floor: `SELECT first.attempted_at AS created_at, first.delivery_id FROM attempts AS first
      WHERE ${where.join(" AND ")} ${order}`,
    key: ["first.attempted_at", "first.delivery_id"],
    where,
    params,
    post,
    postParams,
    byPrimaryKey: q.delivery_ids !== undefined,
    limit: q.limit,
    budget,
  });
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
