import type { LogDb } from "./shards";

/**
 * The daily retention sweep: a delivery is deleted, all its attempts together, once
 * its newest attempt is older than the cutoff and nothing is scheduled after it.
 * Deleting whole deliveries (never single attempts) keeps the invariant that every
 * delivery in the log has its attempt 1, which holds the body.
 *
 * It walks org by org so that every statement is an index search on
 * `attempts_by_org`: the orgs themselves are found with a skip scan (one index seek
 * per org), and each org is cleared in chunks so no statement runs long.
 */

const CHUNK = 500;

const ORGS = `WITH RECURSIVE orgs(org_id) AS (
    SELECT MIN(org_id) FROM attempts
    UNION ALL
    SELECT (SELECT MIN(org_id) FROM attempts WHERE org_id > orgs.org_id) FROM orgs WHERE orgs.org_id IS NOT NULL
  ) SELECT org_id FROM orgs WHERE org_id IS NOT NULL`;

const DELETE_EXPIRED = `DELETE FROM attempts WHERE delivery_id IN (
    SELECT first.delivery_id FROM attempts AS first
     WHERE first.org_id = ?1 AND first.attempted_at < ?2 AND first.attempt = 1
       AND NOT EXISTS (SELECT 1 FROM attempts AS later
                        WHERE later.delivery_id = first.delivery_id
                          AND (later.attempted_at >= ?2 OR later.next_attempt_at >= ?2))
     LIMIT ${CHUNK})`;

/**
 * Old attempts whose delivery lost its attempt 1: a redeliver whose attempt was logged
 * just after the sweep deleted the rest of its delivery. Without attempt 1 nothing can
 * show them in full, so they go with the next sweep.
 */
const DELETE_ORPHANS = `DELETE FROM attempts WHERE org_id = ?1 AND attempted_at < ?2 AND attempt > 1
    AND NOT EXISTS (SELECT 1 FROM attempts AS first
                     WHERE first.delivery_id = attempts.delivery_id AND first.attempt = 1)`;

export async function deleteExpiredDeliveries(
  db: LogDb,
  cutoff: number,
): Promise<{ orgs: number; attempts_deleted: number }> {
  const { results: orgs } = await db.prepare(ORGS).run<{ org_id: string }>();
  const expired = db.prepare(DELETE_EXPIRED);
  const orphans = db.prepare(DELETE_ORPHANS);
  let deleted = 0;
  for (const { org_id } of orgs) {
    for (;;) {
      const { meta } = await expired.bind(org_id, cutoff).run();
      deleted += meta.changes;
      if (meta.changes === 0) break;
    }
    deleted += (await orphans.bind(org_id, cutoff).run()).meta.changes;
  }
  return { orgs: orgs.length, attempts_deleted: deleted };
}
