/**
 * Pending deliveries whose schedule stopped: the stall sweep's statements.
 *
 * `attempts_pending_by_org (org_id, next_attempt_at)` (migrations/0005) indexes exactly
 * the pending deliveries (a delivery's last attempt is the only one that keeps
 * `next_attempt_at`), so the sweep reads an entry per org with pending deliveries and
 * the overdue ones, however long the log is. It is ordered by org first so that the
 * sweep can be fair: it serves the
 * orgs with overdue deliveries side by side, each with a share, instead of the shard's
 * oldest overdue deliveries whoever's they are, which let an org with a big overdue
 * backlog keep every other org's stalled delivery waiting for as many minutes as its
 * backlog had hundreds.
 */
import { inflateHex } from "./codec";
import { readProgress, writeProgress } from "./progress";
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

/** Most orgs one sweep serves per shard: at least one delivery each (SWEEP_LIMIT is 200). */
export const SWEEP_ORGS = 200;

/**
 * Most orgs with more than one overdue delivery one sweep serves per shard. Such an org
 * may get less than all of them, which takes a statement of its own (LIMIT), and D1
 * takes 1,000 queries per invocation for every shard the sweep serves; orgs with one
 * overdue delivery are claimed together in one statement.
 */
export const SWEEP_ORGS_WITH_BACKLOG = 50;

/**
 * How many orgs with pending deliveries one walk visits (a few index seeks each) looking
 * for overdue ones. A walk that stops here records where, and the next sweep goes on.
 */
export const SWEEP_WALK_LIMIT = 10_000;

/** Sorts after every org id (ids are ASCII): "no upper bound" for the walk. */
const AFTER_EVERY_ORG = "\u{10FFFF}";

/**
 * The orgs with a delivery due before ?1, in id order after ?4 up to ?5, at most ?3 of
 * them, each with its number of overdue deliveries counted up to ?6. The recursive part
 * hops from org to org through the index (one seek each), visiting at most ?2 orgs; the
 * row of the ?2nd org visited comes too, overdue or not (`n` = ?2), so a walk that
 * stopped there goes on from it. Every bound is a range on `org_id`: an index search
 * that never reads an org's backlog beyond ?6 entries. (`LIMIT -1` keeps SQLite from
 * flattening the inner query, which would count every org twice.)
 */
export const OVERDUE_ORGS = `
  WITH RECURSIVE walk(org_id, n) AS (
    SELECT (SELECT org_id FROM attempts INDEXED BY attempts_pending_by_org
             WHERE next_attempt_at IS NOT NULL AND org_id > ?4 AND org_id <= ?5 ORDER BY org_id LIMIT 1), 1
    UNION ALL
    SELECT (SELECT a.org_id FROM attempts AS a INDEXED BY attempts_pending_by_org
             WHERE a.next_attempt_at IS NOT NULL AND a.org_id > walk.org_id AND a.org_id <= ?5
             ORDER BY a.org_id LIMIT 1), walk.n + 1
      FROM walk WHERE walk.org_id IS NOT NULL AND walk.n < ?2
  )
  SELECT org_id, n, overdue FROM (
    SELECT walk.org_id, walk.n,
           (SELECT count(*) FROM (SELECT 1 FROM attempts AS a INDEXED BY attempts_pending_by_org
                                   WHERE a.org_id = walk.org_id AND a.next_attempt_at < ?1 LIMIT ?6)) AS overdue
      FROM walk WHERE walk.org_id IS NOT NULL LIMIT -1
  ) WHERE overdue > 0 OR n = ?2 LIMIT ?3 + 1`;

const CLAIMED = "RETURNING delivery_id, attempt, org_id, job_id, event_type";

/**
 * The owner a claim gives a delivery (`message_id` of its last attempt): `sweep:` and
 * the claim's own id, which no queue message has. The late owner, if it turns up while
 * the take-over's attempt is under way, is no longer the owner and is dropped, instead of
 * making that same attempt; and a take-over whose claim was claimed again since (it
 * waited in the queue past the stall threshold itself) is dropped too, so that two
 * take-overs of one delivery never both make its next attempt. The take-over owns the
 * delivery once it has logged its attempt. (A claim whose take-over cannot be queued
 * leaves the delivery to the next sweep that finds it overdue.)
 */
export function claimOwner(claim: string): string {
  return `sweep:${claim}`;
}

/** The owner claims wrote before they had ids (2026-11-30). */
export const LEGACY_CLAIM_OWNER = "sweep";

/** Whether a delivery's owner is a claim's: a take-over is due. */
export function isClaimed(ownerId: string | undefined): boolean {
  return ownerId === LEGACY_CLAIM_OWNER || (ownerId?.startsWith("sweep:") ?? false);
}

/**
 * Claims the oldest overdue deliveries of org ?4: at most ?3, due before ?2. Claiming
 * sets `next_attempt_at = ?1` ("due now"), so another sweep leaves them alone until they
 * are overdue again, and their owner to ?5 (`claimOwner`); one statement picks and claims, so
 * two sweeps at once cannot claim a delivery twice. Of each delivery picked, only the last attempt keeps a due time.
 * (A row value `(delivery_id, attempt)`, or a second test against ?2 outside the
 * subquery, makes SQLite scan a whole index instead of looking each delivery up.)
 */
export const CLAIM_OVERDUE = `UPDATE attempts SET next_attempt_at = ?1, message_id = ?5
   WHERE delivery_id IN (SELECT delivery_id FROM attempts INDEXED BY attempts_pending_by_org
                          WHERE org_id = ?4 AND next_attempt_at < ?2 ORDER BY next_attempt_at LIMIT ?3)
     AND next_attempt_at IS NOT NULL
  ${CLAIMED}`;

/** Claims every overdue delivery (due before ?2) of the orgs in the JSON array ?3, as above, for owner ?4. */
export const CLAIM_ALL_OVERDUE = `UPDATE attempts SET next_attempt_at = ?1, message_id = ?4
   WHERE delivery_id IN (SELECT delivery_id FROM attempts INDEXED BY attempts_pending_by_org
                          WHERE org_id IN (SELECT value FROM json_each(?3)) AND next_attempt_at < ?2)
     AND next_attempt_at IS NOT NULL
  ${CLAIMED}`;

/**
 * The overdue deliveries (due before ?1) of each org in the JSON array ?3, counted up to
 * ?2: the walk only tells one from more, so that it reads at most two entries of an org.
 */
export const COUNT_OVERDUE = `SELECT o.value AS org_id,
    (SELECT count(*) FROM (SELECT 1 FROM attempts AS a INDEXED BY attempts_pending_by_org
                            WHERE a.org_id = o.value AND a.next_attempt_at < ?1 LIMIT ?2)) AS overdue
  FROM json_each(?3) AS o`;

/**
 * Pending deliveries that can never be sent again: their attempt 1, which holds the event,
 * is missing. Nothing in this code makes one (retention keeps a pending delivery whole);
 * a bug or a hand-edited database could. They end as `failed`, logged, instead of being
 * claimed again every few minutes.
 */
const ABANDON = `UPDATE attempts SET next_attempt_at = NULL
  WHERE delivery_id IN (SELECT value FROM json_each(?1)) AND next_attempt_at IS NOT NULL`;

/** An org with overdue deliveries, as a walk found it. */
interface OverdueOrg {
  org_id: string;
  /** How many: 1, or 2 for "more" (the walk counts no further). */
  overdue: number;
}

/**
 * Overdue orgs in id order after `after` (up to `upTo`); where a walk that reached its
 * limit stopped; and whether an overdue org was found past the `wanted` ones.
 */
async function walkOverdueOrgs(
  db: LogDb,
  walk: { overdueBefore: number; wanted: number; after: string; upTo: string; limit: number },
): Promise<{ orgs: OverdueOrg[]; stoppedAt: string | null; more: boolean }> {
  const { results } = await db
    .prepare(OVERDUE_ORGS)
    .bind(walk.overdueBefore, walk.limit, walk.wanted, walk.after, walk.upTo, 2)
    .run<OverdueOrg & { n: number }>();
  const overdue = results.filter((r) => r.overdue > 0).map(({ org_id, overdue }) => ({ org_id, overdue }));
  const stoppedAt = results.find((r) => r.n === walk.limit)?.org_id ?? null;
  return { orgs: overdue.slice(0, walk.wanted), stoppedAt, more: overdue.length > walk.wanted };
}

/**
 * How many of each org's overdue deliveries a sweep of `limit` claims: the most equal
 * split (each org gets up to the same level, the orgs before get the remainder first).
 */
export function shareOut(overdue: readonly number[], limit: number): number[] {
  let level = 0;
  const total = (l: number) => overdue.reduce((sum, n) => sum + Math.min(n, l), 0);
  while (total(level + 1) <= limit && overdue.some((n) => n > level)) level++;
  let left = limit - total(level);
  return overdue.map((n) => {
    if (n <= level || left === 0) return Math.min(n, level);
    left--;
    return level + 1;
  });
}

/** What a sweep of one shard claimed, and the deliveries it found it can never send. */
export interface SweepClaim {
  stalled: StalledDelivery[];
  abandoned: string[];
  /** The claim's id: its take-overs carry it (`claimOwner`). */
  claim: string;
}

/**
 * Claims up to `limit` deliveries whose next attempt was due before `overdueBefore`,
 * shared out as equally as their numbers allow over up to SWEEP_ORGS orgs (each its
 * oldest first). The orgs take turns: in id order from where the previous sweep stopped
 * (`sweep_progress`), and round again after the last, so an org's stalled delivery
 * waits for none of the backlogs of others. A walk visits at most `walkLimit`
 * orgs with pending deliveries (SWEEP_WALK_LIMIT; smaller in tests).
 */
export async function claimStalledDeliveries(
  db: LogDb,
  overdueBefore: number,
  now: number,
  limit: number,
  walkLimit = SWEEP_WALK_LIMIT,
): Promise<SweepClaim> {
  // Where the last sweep of this shard stopped: the last org it served or walked to.
  const cursor = await readProgress(db, "sweep_progress");
  // Every org served gets at least one.
  const wanted = Math.min(SWEEP_ORGS, limit);
  const walk = { overdueBefore, wanted, after: cursor, upTo: AFTER_EVERY_ORG, limit: walkLimit };
  const served: OverdueOrg[] = [];
  let withBacklog = 0;
  /** Takes the orgs a walk found while there is room; false when one is left out. */
  const take = (orgs: readonly OverdueOrg[]) => {
    for (const org of orgs) {
      const backlog = org.overdue > 1 ? 1 : 0;
      if (served.length === wanted || withBacklog + backlog > SWEEP_ORGS_WITH_BACKLOG) return false;
      served.push(org);
      withBacklog += backlog;
    }
    return true;
  };
  const first = await walkOverdueOrgs(db, walk);
  let allTaken = take(first.orgs) && !first.more;
  let stoppedAt = first.stoppedAt;
  if (allTaken && stoppedAt === null && served.length < wanted && cursor !== "") {
    // The walk passed the last org: round again from the first, up to where it started.
    const again = await walkOverdueOrgs(db, { ...walk, wanted: wanted - served.length, after: "", upTo: cursor });
    allTaken = take(again.orgs) && !again.more;
    stoppedAt = again.stoppedAt;
  }
  // Past an org left out, the next sweep starts from the last one served.
  const next = (allTaken ? stoppedAt : null) ?? served.at(-1)?.org_id;
  const claim = crypto.randomUUID();
  if (next === undefined) return { stalled: [], abandoned: [], claim };
  const saveCursor = writeProgress(db, "sweep_progress", next);
  if (served.length === 0) {
    await saveCursor.run();
    return { stalled: [], abandoned: [], claim };
  }

  // The orgs with more than one: how many, up to more than the whole sweep.
  const backlogs = served.filter((o) => o.overdue > 1).map((o) => o.org_id);
  if (backlogs.length > 0) {
    const { results: counted } = await db
      .prepare(COUNT_OVERDUE)
      .bind(overdueBefore, limit + 1, JSON.stringify(backlogs))
      .run<OverdueOrg>();
    const counts = new Map(counted.map((c) => [c.org_id, c.overdue]));
    for (const org of served) org.overdue = counts.get(org.org_id) ?? org.overdue;
  }
  const shares = shareOut(
    served.map((o) => o.overdue),
    limit,
  );
  const whole = served.filter((o, i) => shares[i] === o.overdue).map((o) => o.org_id);
  const partial = served.flatMap((o, i) => (shares[i]! < o.overdue ? [{ org: o.org_id, share: shares[i]! }] : []));
  // One round trip (a transaction): the orgs claimed whole, each other org's share, the cursor.
  const claimOne = db.prepare(CLAIM_OVERDUE);
  const statements = [
    ...(whole.length > 0
      ? [db.prepare(CLAIM_ALL_OVERDUE).bind(now, overdueBefore, JSON.stringify(whole), claimOwner(claim))]
      : []),
    ...partial.map(({ org, share }) => claimOne.bind(now, overdueBefore, share, org, claimOwner(claim))),
  ];
  const results = await db.batch<Omit<StalledDelivery, "webhook_url" | "body">>([...statements, saveCursor]);
  const claimed = results.slice(0, statements.length).flatMap((r) => r.results);

  const events = await readStoredEvents(
    db,
    claimed.map((c) => c.delivery_id),
  );
  const abandoned = claimed.filter((row) => !events.has(row.delivery_id)).map((row) => row.delivery_id);
  if (abandoned.length > 0) await db.prepare(ABANDON).bind(JSON.stringify(abandoned)).run();
  return {
    stalled: claimed.flatMap((row) => {
      const event = events.get(row.delivery_id);
      return event === undefined ? [] : [{ ...row, ...event }];
    }),
    abandoned,
    claim,
  };
}

/**
 * Claims one stalled delivery as a sweep would, for a redeliver: only if its last attempt
 * is still `lastAttempt` and it is still due before `overdueBefore` (no sweep claimed it
 * and no attempt was logged since). True when claimed: the caller queues its take-over.
 * A redeliver and a sweep in the same minute then make one take-over between them.
 */
export async function claimStalledDelivery(
  db: LogDb,
  delivery: { orgId: string; deliveryId: string; lastAttempt: number },
  overdueBefore: number,
  now: number,
  claim: string,
): Promise<boolean> {
  const { results } = await db
    .prepare(
      `UPDATE attempts SET next_attempt_at = ?1, message_id = ?2
        WHERE delivery_id = ?3 AND attempt = ?4 AND org_id = ?5 AND next_attempt_at < ?6
        RETURNING delivery_id`,
    )
    .bind(now, claimOwner(claim), delivery.deliveryId, delivery.lastAttempt, delivery.orgId, overdueBefore)
    .run();
  return results.length === 1;
}

/** Stored events read per query: each can be 64 KiB compressed, and a sweep reads up to 200. */
const STORED_EVENTS_PER_READ = 50;

/**
 * The stored events of these deliveries (their attempt 1): body and own URL. The ids go
 * in one bound JSON list (D1 binds at most 100 values to a statement), each looked up by
 * primary key, STORED_EVENTS_PER_READ at a time and the bodies in hex, so that a sweep of
 * 200 events of 64 KiB that do not compress holds a few MB at once, not the ~100 MB their
 * BLOBs would take as arrays of numbers (a Worker has 128 MB).
 */
export async function readStoredEvents(
  db: LogDb,
  deliveryIds: readonly string[],
): Promise<Map<string, { body: string; webhook_url: string | null }>> {
  const events = new Map<string, { body: string; webhook_url: string | null }>();
  const select = db.prepare(
    `SELECT delivery_id, url_from_event, url, hex(request_body) AS request_body FROM attempts
      WHERE delivery_id IN (SELECT value FROM json_each(?)) AND attempt = 1`,
  );
  for (let i = 0; i < deliveryIds.length; i += STORED_EVENTS_PER_READ) {
    const { results } = await select
      .bind(JSON.stringify(deliveryIds.slice(i, i + STORED_EVENTS_PER_READ)))
      .run<{ delivery_id: string; url_from_event: number; url: string | null; request_body: string }>();
    for (const r of results) {
      events.set(r.delivery_id, {
        body: inflateHex(r.request_body),
        webhook_url: r.url_from_event === 1 ? r.url : null,
      });
    }
  }
  return events;
}

/**
 * Undoes `claimStalledDelivery` when its take-over cannot be queued: the delivery is due
 * when it was before (stalled: anyone's to take over, the next sweep's too). The claim's
 * owner stays, so that an undo never touches a delivery that moved on since.
 */
export async function releaseStalledDelivery(
  db: LogDb,
  delivery: { orgId: string; deliveryId: string; lastAttempt: number },
  dueAt: number,
  claim: string,
): Promise<void> {
  await db
    .prepare(
      `UPDATE attempts SET next_attempt_at = ?1
        WHERE delivery_id = ?2 AND attempt = ?3 AND org_id = ?4 AND message_id = ?5 AND next_attempt_at IS NOT NULL`,
    )
    .bind(dueAt, delivery.deliveryId, delivery.lastAttempt, delivery.orgId, claimOwner(claim))
    .run();
}
