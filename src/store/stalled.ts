/**
 * Pending deliveries whose schedule stopped: the stall sweep's statements.
 *
 * `attempts_pending` (migrations/0002) indexes `next_attempt_at` of exactly the pending
 * deliveries (a delivery's last attempt is the only one that keeps it), so the sweep
 * reads the overdue ones and nothing else, however long the log is.
 */
import { inflate } from "./codec";
import type { LogDb } from "./shards";

/** What a stalled delivery needs to be sent again: its event as stored at attempt 1. */
export interface StalledDelivery {
  delivery_id: string;
  /** The last attempt made: the take-over makes the next. */
  attempt: number;
  org_id: string;
  job_id: string;
  event_type: string;
  /** The event's own URL; null when it used the org default. */
  webhook_url: string | null;
  body: string;
}

type StoredBlob = number[] | ArrayBuffer;

/**
 * Claims up to `limit` deliveries whose next attempt was due before `overdueBefore`:
 * each claimed one gets `next_attempt_at = now` ("due now"), so another sweep leaves
 * it alone until it is overdue again, and a concurrent sweep cannot claim it twice (the
 * guard in the UPDATE).
 */
export async function claimStalledDeliveries(
  db: LogDb,
  overdueBefore: number,
  now: number,
  limit: number,
): Promise<StalledDelivery[]> {
  const { results } = await db
    .prepare(
      `SELECT a.delivery_id, a.attempt, a.org_id, a.job_id, a.event_type,
              first.url_from_event, first.url, first.request_body
         FROM attempts AS a JOIN attempts AS first ON first.delivery_id = a.delivery_id AND first.attempt = 1
        WHERE a.next_attempt_at < ? ORDER BY a.next_attempt_at LIMIT ?`,
    )
    .bind(overdueBefore, limit)
    .run<
      Omit<StalledDelivery, "webhook_url" | "body"> & {
        url_from_event: number;
        url: string | null;
        request_body: StoredBlob;
      }
    >();
  if (results.length === 0) return [];
  const claim = db.prepare(
    "UPDATE attempts SET next_attempt_at = ? WHERE delivery_id = ? AND attempt = ? AND next_attempt_at < ?",
  );
  const claimed = await db.batch(results.map((r) => claim.bind(now, r.delivery_id, r.attempt, overdueBefore)));
  return results
    .filter((_, i) => claimed[i]!.meta.changes === 1)
    .map(({ url_from_event, url, request_body, ...row }) => ({
      ...row,
      webhook_url: url_from_event === 1 ? url : null,
      body: inflate(request_body),
    }));
}

/** The stored events of these deliveries (their attempt 1): body and own URL. */
export async function readStoredEvents(
  db: LogDb,
  deliveryIds: readonly string[],
): Promise<Map<string, { body: string; webhook_url: string | null }>> {
  const { results } = await db
    .prepare(
      `SELECT delivery_id, url_from_event, url, request_body FROM attempts
        WHERE delivery_id IN (${deliveryIds.map(() => "?").join(", ")}) AND attempt = 1`,
    )
    .bind(...deliveryIds)
    .run<{ delivery_id: string; url_from_event: number; url: string | null; request_body: StoredBlob }>();
  return new Map(
    results.map((r) => [
      r.delivery_id,
      { body: inflate(r.request_body), webhook_url: r.url_from_event === 1 ? r.url : null },
    ]),
  );
}
