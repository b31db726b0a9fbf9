/**
 * Pending deliveries whose schedule stopped: the stall sweep's statements.
 *
 * `attempts_pending_by_org (org_id, next_attempt_at)` (migrations/0005) indexes exactly
 * the pending deliveries (a delivery's last attempt is the only one that keeps
 * `next_attempt_at`), so the sweep reads the overdue ones and nothing else, however long
 * the log is. It is ordered by org first so that the sweep can be fair: it serves the
 * orgs with overdue deliveries side by side, each with a share, instead of the shard's
 * oldest overdue deliveries whoever's they are, which let an org with a big overdue
 * backlog keep every other org's stalled delivery waiting for as many minutes as its
 * backlog had hundreds.
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
 * Orgs one sweep serves per shard: a claim statement each (D1 takes 1,000 queries per
 * invocation, and the sweep's one invocation serves every shard), and each org's share
 * is at least `limit / SWEEP_ORGS`.
 */
export const SWEEP_ORGS = 50;

/**
 * How many orgs with pending deliveries one walk visits (two index seeks each) looking
 * for overdue ones. A walk that stops here records where, and the next sweep goes on.
 */
export const SWEEP_WALK_LIMIT = 10_000;

/**
 * The orgs with a delivery due before ?1, in id order after ?4 (up to ?5 if not null),
 * at most ?3 of them. The recursive part hops from org to org through the index (one
 * seek each: no org's backlog is read), visiting at most ?2 orgs; the row of the ?2nd
 * org visited comes too, overdue or not (`n` = ?2), so a walk that stopped there goes on.
 */
export const OVERDUE_ORGS = `
  WITH RECURSIVE walk(org_id, n) AS (
    SELECT (SELECT org_id FROM attempts INDEXED BY attempts_pending_by_org
             WHERE next_attempt_at IS NOT NULL AND org_id > ?4 AND (?5 IS NULL OR org_id <= ?5)
             ORDER BY org_id LIMIT 1), 1
    UNION ALL
    SELECT (SELECT a.org_id FROM attempts AS a INDEXED BY attempts_pending_by_org
             WHERE a.next_attempt_at IS NOT NULL AND a.org_id > walk.org_id AND (?5 IS NULL OR a.org_id <= ?5)
             ORDER BY a.org_id LIMIT 1), walk.n + 1
      FROM walk WHERE walk.org_id IS NOT NULL AND walk.n < ?2
  )
  SELECT org_id, n, overdue FROM (
    SELECT walk.org_id, walk.n,
           EXISTS (SELECT 1 FROM attempts AS a INDEXED BY attempts_pending_by_org
                    WHERE a.org_id = walk.org_id AND a.next_attempt_at < ?1) AS overdue
      FROM walk WHERE walk.org_id IS NOT NULL
  ) WHERE overdue OR n = ?2 LIMIT ?3 + 1`;

/**
 * Claims the oldest overdue deliveries of org ?4: at most ?3, due before ?2. Claiming
 * sets `next_attempt_at = ?1` ("due now"), so another sweep leaves them alone until they
 * are overdue again; one statement picks and claims, so two sweeps at once cannot claim
 * a delivery twice. Of each delivery picked, only the last attempt keeps a due time.
 * (A row value `(delivery_id, attempt)`, or a second test against ?2 outside the
 * subquery, makes SQLite scan a whole index instead of looking each delivery up.)
 */
export const CLAIM_OVERDUE = `UPDATE attempts SET next_attempt_at = ?1
   WHERE delivery_id IN (SELECT delivery_id FROM attempts INDEXED BY attempts_pending_by_org
                          WHERE org_id = ?4 AND next_attempt_at < ?2 ORDER BY next_attempt_at LIMIT ?3)
     AND next_attempt_at IS NOT NULL
  RETURNING delivery_id, attempt, org_id, job_id, event_type`;

const READ_CURSOR = "SELECT next_org_id FROM sweep_progress WHERE id = 1";
const WRITE_CURSOR = `INSERT INTO sweep_progress (id, next_org_id) VALUES (1, ?)
  ON CONFLICT (id) DO UPDATE SET next_org_id = excluded.next_org_id`;

/** Overdue orgs in id order after `after` (up to `upTo`), and where a walk that stopped stopped. */
async function overdueOrgs(
  db: LogDb,
  walk: { overdueBefore: number; wanted: number; after: string; upTo: string | null; limit: number },
): Promise<{ orgs: string[]; stoppedAt: string | null }> {
  const { results } = await db
    .prepare(OVERDUE_ORGS)
    .bind(walk.overdueBefore, walk.limit, walk.wanted, walk.after, walk.upTo)
    .run<{ org_id: string; n: number; overdue: number }>();
  const orgs = results
    .filter((r) => r.overdue === 1)
    .map((r) => r.org_id)
    .slice(0, walk.wanted);
  const stoppedAt = results.find((r) => r.n === walk.limit)?.org_id ?? null;
  return { orgs, stoppedAt };
}

/**
 * Claims up to `limit` deliveries whose next attempt was due before `overdueBefore`: an
 * equal share for each of up to SWEEP_ORGS orgs, each its oldest first. The orgs are
 * taken in turn, by id from where the last sweep stopped (`sweep_progress`) and round
 * again, so that every org with an overdue delivery is served within a few minutes
 * however many others have big backlogs. An org with fewer than its share leaves the
 * rest unused until the next sweep. Returns them with their stored events. A walk visits
 * at most `walkLimit` orgs with pending deliveries (SWEEP_WALK_LIMIT; smaller in tests).
 */
export async function claimStalledDeliveries(
  db: LogDb,
  overdueBefore: number,
  now: number,
  limit: number,
  walkLimit = SWEEP_WALK_LIMIT,
): Promise<StalledDelivery[]> {
  const cursor = (await db.prepare(READ_CURSOR).first<{ next_org_id: string }>())?.next_org_id ?? "";
  const walk = { overdueBefore, wanted: SWEEP_ORGS, after: cursor, upTo: null, limit: walkLimit };
  let { orgs, stoppedAt } = await overdueOrgs(db, walk);
  if (stoppedAt === null && orgs.length < SWEEP_ORGS && cursor !== "") {
    // The walk passed the last org: round again from the first, up to where it started.
    const again = await overdueOrgs(db, { ...walk, wanted: SWEEP_ORGS - orgs.length, after: "", upTo: cursor });
    orgs = [...orgs, ...again.orgs];
    stoppedAt = again.stoppedAt;
  }
  const next = stoppedAt ?? orgs.at(-1);
  if (next === undefined) return [];
  const saveCursor = db.prepare(WRITE_CURSOR).bind(next);
  if (orgs.length === 0) {
    await saveCursor.run();
    return [];
  }
  const share = Math.max(1, Math.floor(limit / orgs.length));
  // One round trip (a transaction): each org's claim, then the cursor.
  const claim = db.prepare(CLAIM_OVERDUE);
  const results = await db.batch<Omit<StalledDelivery, "webhook_url" | "body">>([
    ...orgs.map((org) => claim.bind(now, overdueBefore, share, org)),
    saveCursor,
  ]);
  const claimed = results.slice(0, orgs.length).flatMap((r) => r.results);
  const events = new Map<string, { body: string; webhook_url: string | null }>();
  for (let i = 0; i < claimed.length; i += STORED_EVENTS_PER_READ) {
    const ids = claimed.slice(i, i + STORED_EVENTS_PER_READ).map((c) => c.delivery_id);
    for (const [id, event] of await readStoredEvents(db, ids)) events.set(id, event);
  }
  return claimed.flatMap((row) => {
    const event = events.get(row.delivery_id);
    // Attempt 1 holds the event and is never deleted while its delivery is pending.
    return event === undefined ? [] : [{ ...row, ...event }];
  });
}

/** D1 binds at most 100 values per statement. */
const STORED_EVENTS_PER_READ = 100;

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
