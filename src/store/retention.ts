import { readProgress, writeProgress } from "./progress";
import type { LogDb } from "./shards";

/**
 * The retention sweep (every 10 minutes): a delivery is deleted, all its attempts
 * together, once its newest attempt is older than the cutoff and nothing is scheduled
 * after it. Deleting whole deliveries (never single attempts) keeps the invariant that
 * every delivery in the log has its attempt 1, which holds the body.
 *
 * It walks org by org so that every statement is an index search on
 * `attempts_by_org`: the orgs themselves are found with a skip scan (one index seek
 * per org, and one more to see whether the org has anything older than the cutoff), and
 * each org with old attempts is cleared in chunks so no statement runs long. Orgs with
 * nothing that old cost no statement of their own: they are passed over inside the walk.
 * A run spends at most a budget of statements on a shard and records the org it stopped
 * at (`retention_progress`); the next run goes on from there, and after the shard's last
 * org starts over. D1 takes a limited number of queries per invocation, shared by the
 * shards: a shard with many orgs, or a day with many expired deliveries, takes several
 * runs, never a failed one.
 */

const CHUNK = 500;

const DAY_MS = 86_400_000;

/**
 * How long past LOG_RETENTION_DAYS a finished delivery is kept before it is deleted. The
 * API takes no redeliver of a delivery past LOG_RETENTION_DAYS (`isPastRetention`), so a
 * redeliver it accepted has a day to make its attempt, which renews the delivery, before
 * retention could delete it: its 202 does not end in nothing sent, and its attempt is
 * never logged without the attempt 1 that holds the body.
 */
export const RETENTION_GRACE_MS = DAY_MS;

/** The cutoff of a retention run at `now`: finished deliveries with no attempt since are deleted. */
export function retentionCutoff(now: number, retentionDays: number): number {
  return now - retentionDays * DAY_MS - RETENTION_GRACE_MS;
}

/** Whether a finished delivery is past the retention the API promises, so no longer redelivered. */
export function isPastRetention(
  delivery: { last_attempt_at: number; next_attempt_at: number | null },
  now: number,
  retentionDays: number,
): boolean {
  return delivery.next_attempt_at === null && delivery.last_attempt_at < now - retentionDays * DAY_MS;
}

/** Statements one run may spend in all (D1 allows 1,000 queries per Worker invocation). */
export const RETENTION_STATEMENTS_PER_RUN = 800;

/**
 * Orgs one walk visits at most (two index seeks each). A walk that stops here records
 * where, and the next run goes on from there.
 */
export const RETENTION_WALK_LIMIT = 10_000;

/**
 * Up to ?2 orgs of the shard that have attempts older than ?4, in id order from ?1 on,
 * visiting at most ?3 orgs; the ?3rd org visited comes too (`n` = ?3), old attempts or
 * not, so that a walk that stopped there goes on from it. The walk is lazy: it ends as
 * soon as ?2 rows are found.
 */
const ORGS_FROM = `WITH RECURSIVE walk(org_id, n) AS (
    SELECT (SELECT MIN(org_id) FROM attempts WHERE org_id >= ?1), 1
    UNION ALL
    SELECT (SELECT MIN(org_id) FROM attempts WHERE org_id > walk.org_id), n + 1 FROM walk
     WHERE walk.org_id IS NOT NULL AND n < ?3
  )
  SELECT org_id, n, EXISTS (SELECT 1 FROM attempts WHERE org_id = walk.org_id AND attempted_at < ?4) AS old
    FROM walk
   WHERE org_id IS NOT NULL
     AND (n = ?3 OR EXISTS (SELECT 1 FROM attempts WHERE org_id = walk.org_id AND attempted_at < ?4))
   LIMIT ?2`;

/** A delivery is finished when no attempt of it is recent and none has a next attempt scheduled. */
const DELETE_EXPIRED = `DELETE FROM attempts WHERE delivery_id IN (
    SELECT first.delivery_id FROM attempts AS first
     WHERE first.org_id = ?1 AND first.attempted_at < ?2 AND first.attempt = 1
       AND NOT EXISTS (SELECT 1 FROM attempts AS later
                        WHERE later.delivery_id = first.delivery_id
                          AND (later.attempted_at >= ?2 OR later.next_attempt_at IS NOT NULL))
     LIMIT ${CHUNK})`;

/**
 * Old attempts whose delivery lost its attempt 1: a redeliver whose attempt was logged
 * just after the sweep deleted the rest of its delivery. Without attempt 1 nothing can
 * show them in full; they go once they are older than the cutoff themselves.
 */
const DELETE_ORPHANS = `DELETE FROM attempts WHERE org_id = ?1 AND attempted_at < ?2 AND attempt > 1
    AND NOT EXISTS (SELECT 1 FROM attempts AS first
                     WHERE first.delivery_id = attempts.delivery_id AND first.attempt = 1)`;

export interface RetentionRun {
  /** Orgs cleared in this run. */
  orgs: number;
  attempts_deleted: number;
  /** True when the run reached the shard's last org (the next one starts over). */
  complete: boolean;
}

/** One run on one shard, within `budget` statements (at least 5), visiting at most `walkLimit` orgs. */
export async function deleteExpiredDeliveries(
  db: LogDb,
  cutoff: number,
  budget: number,
  walkLimit = RETENTION_WALK_LIMIT,
): Promise<RetentionRun> {
  const from = await readProgress(db, "retention_progress");
  // Each org costs two statements at least, so the budget never reaches the list's end
  // unless the walk ended first.
  const { results: orgs } = await db
    .prepare(ORGS_FROM)
    .bind(from, budget, walkLimit, cutoff)
    .run<{ org_id: string; n: number; old: number }>();
  let spent = 3; // the progress read, the org list, the progress write
  const expired = db.prepare(DELETE_EXPIRED);
  const orphans = db.prepare(DELETE_ORPHANS);
  let deleted = 0;
  let cleared = 0;
  let stoppedAt: string | null = null;
  for (const { org_id, n, old } of orgs) {
    // An org without old attempts is the walk's last (n = walkLimit): the next run starts there.
    if (!old || spent + 2 > budget) {
      stoppedAt = org_id;
      break;
    }
    let more = true;
    while (more && spent + 1 < budget) {
      const { meta } = await expired.bind(org_id, cutoff).run();
      spent++;
      deleted += meta.changes;
      // `changes` counts attempts: a chunk of CHUNK deliveries deleted CHUNK rows or more.
      more = meta.changes >= CHUNK;
    }
    if (more) {
      stoppedAt = org_id; // the rest of this org's expired deliveries, next run
      break;
    }
    deleted += (await orphans.bind(org_id, cutoff).run()).meta.changes;
    spent++;
    cleared++;
    if (n === walkLimit) stoppedAt = org_id; // the walk stopped here, not at the shard's last org
  }
  await writeProgress(db, "retention_progress", stoppedAt ?? "").run();
  return { orgs: cleared, attempts_deleted: deleted, complete: stoppedAt === null };
}
