import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { insertAttempts } from "../../src/store/attempts";
import { deleteExpiredDeliveries, type RetentionRun } from "../../src/store/retention";
import type { LogDb } from "../../src/store/shards";
import {
  attemptRecord,
  attemptsOf,
  jobEvent,
  logDbOf,
  messageFor,
  orgsOnShard,
  receiver,
  runConsumer,
  uniqueId,
} from "./helpers";

afterEach(() => {
  vi.useRealTimers();
});

const DAY = 86_400_000;

/** Delivers one event at a moment `daysAgo` in the past (to no URL at all with `url: null`). */
async function deliveredDaysAgo(
  daysAgo: number,
  orgId: string,
  replies: Array<{ status: number }> = [{ status: 200 }],
  url?: null,
) {
  vi.setSystemTime(Date.now() - daysAgo * DAY);
  const hook = receiver(uniqueId("retention"));
  await hook.script({ replies });
  const message = {
    id: uniqueId("msg"),
    body: await messageFor(jobEvent(orgId, uniqueId("job")), url === null ? null : hook.url),
  };
  await runConsumer([message]);
  vi.setSystemTime(Date.now() + daysAgo * DAY);
  return message;
}

it("deletes finished deliveries a day past LOG_RETENTION_DAYS, all their attempts, and keeps the rest", async () => {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  const [orgA, orgB] = [uniqueId("org"), uniqueId("org")];
  const old = await deliveredDaysAgo(32, orgA);
  const inGrace = await deliveredDaysAgo(30.5, orgA); // no longer redelivered, not yet deleted
  const oldFailed = await deliveredDaysAgo(45, orgB, [], null); // failed: no_webhook_url
  const recent = await deliveredDaysAgo(29, orgA);
  const today = await deliveredDaysAgo(0, orgB);

  const controller = createScheduledController({ scheduledTime: Date.now(), cron: "*/10 * * * *" });
  await worker.scheduled(controller, env);

  expect(await attemptsOf(old.body.delivery_id)).toHaveLength(0);
  expect(await attemptsOf(oldFailed.body.delivery_id)).toHaveLength(0);
  expect(await attemptsOf(recent.body.delivery_id)).toHaveLength(1);
  expect(await attemptsOf(inGrace.body.delivery_id)).toHaveLength(1);
  expect(await attemptsOf(today.body.delivery_id)).toHaveLength(1);
});

it("deletes old attempts whose delivery lost its attempt 1", async () => {
  const orgId = uniqueId("org");
  const deliveryId = `dlv_${"e".repeat(32)}`;
  const old = Date.now() - 40 * DAY;
  await insertAttempts(await logDbOf(orgId), [
    attemptRecord({
      delivery_id: deliveryId,
      attempt: 4,
      org_id: orgId,
      attempted_at: old,
      url_from_event: null,
      signatures: null,
      request_body: null,
    }),
  ]);
  expect(await attemptsOf(deliveryId)).toHaveLength(1);
  await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
  expect(await attemptsOf(deliveryId)).toHaveLength(0);
});

it("keeps an old delivery whose latest attempt is recent", async () => {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  const orgId = uniqueId("org");
  const message = await deliveredDaysAgo(40, orgId, [], null); // failed: no_webhook_url
  // The customer sets a URL and redelivers it today.
  const hook = receiver(uniqueId("retention"));
  await runConsumer([{ id: uniqueId("msg"), body: { ...message.body, webhook_url: hook.url, redeliver_after: 1 } }]);
  expect(await attemptsOf(message.body.delivery_id)).toHaveLength(2);

  await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
  expect(await attemptsOf(message.body.delivery_id)).toHaveLength(2);
});

it("keeps a delivery still pending, however long ago its next attempt was due", async () => {
  const orgId = uniqueId("org");
  const deliveryId = `dlv_${"f".repeat(32)}`;
  const old = Date.now() - 40 * DAY;
  // Its schedule was lost and the sweep could not take it for a month: still not finished.
  await insertAttempts(await logDbOf(orgId), [
    attemptRecord({
      delivery_id: deliveryId,
      org_id: orgId,
      attempted_at: old,
      outcome: "failed",
      status_code: 500,
      error: "http_status",
      next_attempt_at: old + 60_000,
    }),
  ]);
  await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
  expect(await attemptsOf(deliveryId)).toHaveLength(1);
});

/** A shard's database that counts the statements run through it, one by one or in a batch (D1 counts each). */
function counted(db: D1Database): { db: LogDb; statements: () => number } {
  let n = 0;
  const inner = new WeakMap<object, D1PreparedStatement>();
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      run: () => {
        n++;
        return statement.run();
      },
      first: () => {
        n++;
        return statement.first();
      },
    };
    inner.set(wrapped, statement);
    return wrapped as unknown as D1PreparedStatement;
  };
  const batch = (statements: D1PreparedStatement[]) => {
    n += statements.length;
    return db.batch(statements.map((s) => inner.get(s) ?? s));
  };
  return { db: { prepare: (sql: string) => wrap(db.prepare(sql)), batch } as LogDb, statements: () => n };
}

it("spends at most its budget of statements a run, and goes on where the last one stopped", async () => {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  const orgs = await orgsOnShard("DB", 4);
  const expired = [];
  for (const orgId of orgs) expired.push(await deliveredDaysAgo(31, orgId));
  await env.DB.prepare("DELETE FROM retention_progress").run(); // from the shard's first org
  const cutoff = Date.now() - 30 * DAY;
  const runs: RetentionRun[] = [];
  while (!runs.at(-1)?.complete) {
    const shard = counted(env.DB);
    runs.push(await deleteExpiredDeliveries(shard.db, cutoff, 6));
    expect(shard.statements()).toBeLessThanOrEqual(6);
    expect(runs.length).toBeLessThan(50);
  }
  // Six statements clear one org a run at most: four orgs took four runs or more.
  expect(runs.length).toBeGreaterThanOrEqual(4);
  for (const message of expired) expect(await attemptsOf(message.body.delivery_id)).toHaveLength(0);
});

it("clears an org past one chunk in a run, when its deliveries were retried", async () => {
  const [orgId] = await orgsOnShard("DB", 1);
  const db = await logDbOf(orgId!);
  const old = Date.now() - 40 * DAY;
  // 700 expired deliveries, every tenth with a second attempt: a chunk of 500 deletes
  // more than 500 rows.
  const records = Array.from({ length: 700 }, (_, i) => {
    const delivery_id = `dlv_${String(i).padStart(32, "c")}`;
    const first = attemptRecord({ delivery_id, org_id: orgId!, attempted_at: old + i });
    return i % 10 === 0
      ? [
          { ...first, outcome: "failed" as const, status_code: 500, error: "http_status" as const },
          attemptRecord({
            delivery_id,
            org_id: orgId!,
            attempt: 2,
            attempted_at: old + i + 60_000,
            url_from_event: null,
            request_body: null,
          }),
        ]
      : [first];
  });
  for (let i = 0; i < records.length; i += 100) await insertAttempts(db, records.slice(i, i + 100).flat());
  await env.DB.prepare("INSERT OR REPLACE INTO retention_progress (id, next_org_id) VALUES (1, ?)").bind(orgId!).run();
  await deleteExpiredDeliveries(db, Date.now() - 30 * DAY, 100);
  const left = await db
    .prepare("SELECT COUNT(*) AS n FROM attempts WHERE org_id = ?")
    .bind(orgId!)
    .first<{ n: number }>();
  expect(left!.n).toBe(0);
});

/**
 * Orgs of their own on DB, sorted after every other test's (`~` sorts after hex), each
 * with a delivery a day old; the last also with one 40 days old.
 */
async function orgsWithOneOldAtTheEnd(n: number) {
  const prefix = `org_~${crypto.randomUUID().slice(0, 8)}`;
  const orgs = Array.from({ length: n }, (_, i) => `${prefix}_${String(i).padStart(2, "0")}`);
  const delivery = (orgId: string, attempted_at: number) =>
    attemptRecord({ delivery_id: `dlv_${crypto.randomUUID().replaceAll("-", "")}`, org_id: orgId, attempted_at });
  const recent = orgs.map((orgId) => delivery(orgId, Date.now() - DAY));
  const old = delivery(orgs.at(-1)!, Date.now() - 40 * DAY);
  await insertAttempts(env.DB, [...recent, old]);
  await env.DB.prepare("INSERT OR REPLACE INTO retention_progress (id, next_org_id) VALUES (1, ?)")
    .bind(orgs[0]!)
    .run();
  return { old, recent };
}

it("passes over orgs with nothing old inside its walk, spending no statement on them", async () => {
  const { old, recent } = await orgsWithOneOldAtTheEnd(12);
  const shard = counted(env.DB);
  // Six statements: the progress read and write, the walk, and the one org with an old delivery.
  const run = await deleteExpiredDeliveries(shard.db, Date.now() - 30 * DAY, 6);
  expect(run).toMatchObject({ complete: true, orgs: 1, attempts_deleted: 1 });
  expect(shard.statements()).toBeLessThanOrEqual(6);
  expect(await attemptsOf(old.delivery_id)).toHaveLength(0);
  for (const r of recent) expect(await attemptsOf(r.delivery_id)).toHaveLength(1);
});

it("stops a long walk where it reached its limit, and the next run goes on from there", async () => {
  const { old } = await orgsWithOneOldAtTheEnd(6);
  const runs: RetentionRun[] = [];
  while (!runs.at(-1)?.complete) {
    runs.push(await deleteExpiredDeliveries(env.DB, Date.now() - 30 * DAY, 100, 3));
    expect(runs.length).toBeLessThan(10);
  }
  // Orgs 1-3, then 3-5 (the walk's last is visited again), then 5-7, where the old one is
  // (the 7th, when there is one, belongs to another test, as do any runs after).
  expect(runs.slice(0, 3).map((r) => r.attempts_deleted)).toEqual([0, 0, 1]);
  expect(await attemptsOf(old.delivery_id)).toHaveLength(0);
});
