import { createScheduledController, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { BOOKMARK_HEADER } from "../../src/api/org-log";
import { SWEEP_CRON } from "../../src/delivery/sweep";
import worker from "../../src/index";
import { OrgSettings, orgSettings } from "../../src/org/org-settings";
import { placeOrg } from "../../src/org/placement";
import { insertAttempts } from "../../src/store/attempts";
import { allLogShards } from "../../src/store/shards";
import {
  attemptRecord,
  attemptsOf,
  call,
  fakeDate,
  jobEvent,
  logDbOf,
  messageFor,
  orgKey,
  receiver,
  rowsPerStatement,
  runConsumer,
  uniqueId,
} from "./helpers";

/**
 * The log is sharded by org (src/store/shards.ts). wrangler.toml runs two shards, DB and
 * DB_1, so every test of this suite runs the sharded path; these tests look at the
 * shards themselves: where orgs land, that an org's data is on its shard alone, and that
 * a shard in trouble holds up its own orgs and no others.
 */

const advance = fakeDate();
const SHARDS = env.LOG_SHARDS.split(",");

/** A new org whose settings placed it on `shard`. */
async function orgOn(shard: string): Promise<{ orgId: string; key: string }> {
  for (;;) {
    const orgId = uniqueId("org");
    if ((await orgSettings(env, orgId).getLogShard()) === shard) return { orgId, key: await orgKey(orgId) };
  }
}

/** How many attempt rows of `orgId` each shard holds. */
async function rowsByShard(orgId: string): Promise<Record<string, number>> {
  const counts = await Promise.all(
    allLogShards(env).map(async ({ name, db }) => {
      const row = await db
        .prepare("SELECT COUNT(*) AS n FROM attempts WHERE org_id = ?")
        .bind(orgId)
        .first<{ n: number }>();
      return [name, row!.n] as const;
    }),
  );
  return Object.fromEntries(counts);
}

/** A D1 binding that counts the batches (their sizes) and SELECTs made through it. */
function countedDb(db: D1Database) {
  const calls = { batches: [] as number[], rows: [] as number[], selects: 0 };
  const wrapped = {
    prepare(sql: string) {
      if (sql.trimStart().startsWith("SELECT")) calls.selects++;
      return db.prepare(sql);
    },
    batch(statements: D1PreparedStatement[]) {
      calls.batches.push(statements.length);
      calls.rows.push(...rowsPerStatement(statements));
      return db.batch(statements);
    },
    withSession: (constraint?: string) => db.withSession(constraint as never),
    exec: (sql: string) => db.exec(sql),
    dump: () => db.dump(),
  };
  return { db: wrapped as unknown as D1Database, calls };
}

/** A message for a new event of `orgId` to a receiver that answers 200. */
async function eventOf(orgId: string) {
  const hook = receiver(uniqueId("hook"));
  return { hook, message: { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url) } };
}

describe("placement", () => {
  it("spreads orgs evenly over the shards, and records each org's shard for good", async () => {
    const counts = Object.fromEntries(SHARDS.map((s) => [s, 0]));
    for (let i = 0; i < 80; i++) {
      const stub = orgSettings(env, `org_spread_${i}`);
      const shard = (await stub.getLogShard())!;
      counts[shard]!++;
      expect(await stub.getLogShard()).toBe(shard);
    }
    expect(SHARDS).toHaveLength(2);
    // 80 orgs over 2 shards: 40 each on average, and a fixed set of ids.
    for (const shard of SHARDS) expect(counts[shard], shard).toBeGreaterThanOrEqual(25);
  });

  it("keeps an org on its shard when the shards change (adding, closing, listing)", async () => {
    const stub = orgSettings(env, uniqueId("org"));
    const recorded = (await stub.getLogShard())!;
    const other = SHARDS.find((s) => s !== recorded)!;
    for (const shards of [`${recorded},${other},DB_2`, other, `${other},${recorded}`]) {
      const shard = await runInDurableObject(stub, (_instance: OrgSettings, state) =>
        // The object as it starts after a deploy with another shard list.
        new OrgSettings(state, { ...env, LOG_SHARDS: shards }).getLogShard(),
      );
      expect(shard, shards).toBe(recorded);
    }
  });

  it("sends new orgs to an added shard, and moves the hash of no org between the old ones", () => {
    const ids = Array.from({ length: 3000 }, (_, i) => `id_${i}`);
    const before = ids.map((id) => placeOrg(id, ["DB", "DB_1"]));
    const after = ids.map((id) => placeOrg(id, ["DB", "DB_1", "DB_2"]));
    const changed = ids.filter((_, i) => before[i] !== after[i]);
    expect(changed.every((_, i) => after[ids.indexOf(changed[i]!)] === "DB_2")).toBe(true);
    expect(changed.length / ids.length).toBeGreaterThan(0.28); // about a third go to the new one
    expect(changed.length / ids.length).toBeLessThan(0.39);
    // Closing a shard (LOG_SHARDS_CLOSED) leaves the others to new orgs.
    expect(new Set(ids.map((id) => placeOrg(id, ["DB_1"])))).toEqual(new Set(["DB_1"]));
  });
});

describe("an org's data", () => {
  it("lives on its shard alone, and every org route reads it there", async () => {
    const orgs = await Promise.all(SHARDS.map((shard) => orgOn(shard)));
    for (const [i, { orgId, key }] of orgs.entries()) {
      const { hook, message } = await eventOf(orgId);
      await hook.script({ replies: [{ status: 500 }, { status: 200 }] });
      expect((await runConsumer([message])).retried.get(message.id)).toBe(60);
      advance(61);
      await runConsumer([{ ...message, attempts: 2 }]);

      const id = message.body.delivery_id;
      const logs = (await (await call("GET", "/v1/webhook-logs", { token: key })).json()) as { data: unknown[] };
      expect(logs.data).toHaveLength(2);
      expect((await call("GET", `/v1/webhook-logs/att_${id.slice(4)}_2`, { token: key })).status).toBe(200);
      const list = (await (await call("GET", "/v1/deliveries", { token: key })).json()) as { data: unknown[] };
      expect(list.data).toMatchObject([{ id, status: "delivered", attempt_count: 2 }]);
      expect(await (await call("GET", `/v1/deliveries/${id}`, { token: key })).json()).toMatchObject({ id });
      expect((await call("POST", `/v1/deliveries/${id}/redeliver`, { token: key })).status).toBe(202);

      // Everything of this org is on its shard; the other shard has nothing of it.
      expect(await rowsByShard(orgId)).toEqual(Object.fromEntries(SHARDS.map((s) => [s, s === SHARDS[i] ? 2 : 0])));
      // And the other org's key sees none of it.
      const stranger = orgs[1 - i]!;
      expect((await call("GET", `/v1/deliveries/${id}`, { token: stranger.key })).status).toBe(404);
    }
  });
});

describe("a consumer run over orgs on several shards", () => {
  it("reads each shard once and writes each shard once", async () => {
    const orgs = await Promise.all(SHARDS.map((shard) => orgOn(shard)));
    const events = await Promise.all(orgs.flatMap(({ orgId }) => [eventOf(orgId), eventOf(orgId)]));
    // This run's own calls, counted on its own env: other test files may use the same bindings meanwhile.
    const counted = SHARDS.map((name) => countedDb(env[name as "DB"]));
    const runEnv = {
      ...env,
      ...Object.fromEntries(SHARDS.map((name, i) => [name, counted[i]!.db])),
      // No hand-off on a busy machine: a handed-off attempt is logged later, in a write of its own.
      SLOW_ATTEMPT_MS: "10000",
    };
    const run = await runConsumer(
      events.map((e) => e.message),
      "deliveries",
      runEnv,
    );
    expect(run.acked).toHaveLength(4);
    for (const { calls } of counted) expect(calls).toEqual({ batches: [1], rows: [2], selects: 1 });
  });

  it("holds up only the orgs of a shard that fails to read or write", async () => {
    for (const failing of ["prepare", "batch"] as const) {
      const [down, up] = await Promise.all([orgOn(SHARDS[1]!), orgOn(SHARDS[0]!)]);
      const ofDown = await eventOf(down.orgId);
      const ofUp = await eventOf(up.orgId);
      const db = await logDbOf(down.orgId);
      const spy =
        failing === "prepare"
          ? vi.spyOn(db, "prepare").mockImplementation(() => {
              throw new Error("D1_ERROR: shard overloaded");
            })
          : vi.spyOn(db, "batch").mockRejectedValue(new Error("D1_ERROR: shard overloaded"));
      const run = await runConsumer([ofDown.message, ofUp.message]);
      spy.mockRestore();
      expect(run.acked, failing).toEqual([ofUp.message.id]);
      expect(run.retried.get(ofDown.message.id), failing).toBe(30); // back-off, then back
      expect(await attemptsOf(ofUp.message.body.delivery_id)).toHaveLength(1);
      expect(await attemptsOf(ofDown.message.body.delivery_id)).toHaveLength(0);

      // Back on its feet: the message comes back and is logged once.
      const again = await runConsumer([{ ...ofDown.message, attempts: 2 }]);
      expect(again.acked).toEqual([ofDown.message.id]);
      expect(await attemptsOf(ofDown.message.body.delivery_id)).toHaveLength(1);
    }
  });

  it("starts the orgs of a shard that answers at once, however long another shard takes to read", async () => {
    const [slow, quick] = await Promise.all([orgOn(SHARDS[1]!), orgOn(SHARDS[0]!)]);
    const ofSlow = await eventOf(slow.orgId);
    const ofQuick = await eventOf(quick.orgId);
    const db = await logDbOf(slow.orgId);
    let answer: () => void = () => {};
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const prepare = db.prepare.bind(db);
    vi.spyOn(db, "prepare").mockImplementation((sql) => {
      const statement = prepare(sql);
      if (!sql.trimStart().startsWith("SELECT")) return statement;
      // The slow shard's state read answers only when the test says so.
      return {
        bind: (...values: unknown[]) => ({
          run: async () => {
            await answered;
            return statement.bind(...values).run();
          },
        }),
      } as unknown as D1PreparedStatement;
    });
    const running = runConsumer([ofSlow.message, ofQuick.message]);
    await vi.waitUntil(async () => (await ofQuick.hook.requests()).length === 1, { timeout: 5_000, interval: 20 });
    expect(await ofSlow.hook.requests()).toHaveLength(0);
    answer();
    const run = await running;
    expect(run.acked.sort()).toEqual([ofSlow.message.id, ofQuick.message.id].sort());
    expect(await ofSlow.hook.requests()).toHaveLength(1);
  });
});

describe("an org whose shard record is lost or names a shard that is not bound", () => {
  for (const [name, record] of [
    ["lost", null],
    ["not bound", "DB_9"],
  ] as const) {
    it(`(${name}) gets internal errors and an operator log line, never a new, empty log`, async () => {
      const orgId = uniqueId("org");
      const key = await orgKey(orgId);
      const healthy = await eventOf(uniqueId("org"));
      await orgSettings(env, orgId).getWebhook(); // the org exists, placed on a shard
      await runInDurableObject(orgSettings(env, orgId), (_instance: OrgSettings, state) => {
        state.storage.sql.exec("UPDATE org_settings SET log_shard = ?", record);
      });
      const errors = vi.spyOn(console, "error").mockImplementation(() => {});
      try {
        const res = await call("GET", "/v1/webhook-logs", { token: key });
        expect(res.status).toBe(500);
        expect(await res.json()).toMatchObject({ error: { code: "internal" } });

        const { message } = await eventOf(orgId);
        const run = await runConsumer([message, healthy.message]);
        expect(run.acked).toEqual([healthy.message.id]);
        expect(run.retried.has(message.id)).toBe(true);
        expect(await rowsByShard(orgId)).toEqual(Object.fromEntries(SHARDS.map((s) => [s, 0])));

        const lines = errors.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>);
        const faults = lines.filter((l) => l.event === "log_shard.unavailable");
        expect(faults.length).toBeGreaterThanOrEqual(2); // the API read and the consumer run
        for (const fault of faults) expect(fault).toMatchObject({ org_id: orgId, shard: record });
      } finally {
        errors.mockRestore();
      }
    });
  }
});

describe("the crons and the dead-letter queue", () => {
  it("retention sweeps every shard, and a failing one does not stop the others", async () => {
    const DAY = 86_400_000;
    const orgs = await Promise.all(SHARDS.map((shard) => orgOn(shard)));
    const deliveries = await Promise.all(
      orgs.map(async ({ orgId }) => {
        const record = attemptRecord({
          delivery_id: `dlv_${crypto.randomUUID().replaceAll("-", "")}`,
          org_id: orgId,
          attempted_at: Date.now() - 40 * DAY,
        });
        await insertAttempts(await logDbOf(orgId), [record]);
        return record.delivery_id;
      }),
    );
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const broken = vi.spyOn(await logDbOf(orgs[1]!.orgId), "prepare").mockImplementation(() => {
      throw new Error("D1_ERROR: shard down");
    });
    await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
    broken.mockRestore();
    errors.mockRestore();
    expect(await attemptsOf(deliveries[0]!)).toHaveLength(0);
    expect(await attemptsOf(deliveries[1]!)).toHaveLength(1);
    await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
    expect(await attemptsOf(deliveries[1]!)).toHaveLength(0);
  });

  it("the stall sweep finds stalled deliveries on every shard", async () => {
    const orgs = await Promise.all(SHARDS.map((shard) => orgOn(shard)));
    const stalled = await Promise.all(
      orgs.map(async ({ orgId }) => {
        const { hook, message } = await eventOf(orgId);
        await hook.script({ replies: [{ status: 500 }] });
        await runConsumer([message]); // its retry message then disappears
        return message.body.delivery_id;
      }),
    );
    advance(3600);
    const sent: string[] = [];
    const sendBatch = vi.spyOn(env.DELIVERIES, "sendBatch").mockImplementation(async (messages) => {
      for (const m of messages) sent.push((m.body as { delivery_id: string }).delivery_id);
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendBatchResponse;
    });
    const send = vi.spyOn(env.DELIVERIES, "send").mockImplementation(async (body) => {
      sent.push((body as { delivery_id: string }).delivery_id);
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendResponse;
    });
    await worker.scheduled(createScheduledController({ cron: SWEEP_CRON, scheduledTime: Date.now() }), env);
    sendBatch.mockRestore();
    send.mockRestore();
    expect(sent).toEqual(expect.arrayContaining(stalled));
  });

  it("ends dead letters on each org's shard; a shard that fails keeps only its own", async () => {
    const [down, up] = await Promise.all([orgOn(SHARDS[1]!), orgOn(SHARDS[0]!)]);
    const ofDown = await eventOf(down.orgId);
    const ofUp = await eventOf(up.orgId);
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const broken = vi.spyOn(await logDbOf(down.orgId), "batch").mockRejectedValue(new Error("D1_ERROR: down"));
    const run = await runConsumer([ofDown.message, ofUp.message], "deliveries-dlq");
    broken.mockRestore();
    errors.mockRestore();
    expect(run.acked).toEqual([ofUp.message.id]);
    expect(run.retried.has(ofDown.message.id)).toBe(true);
    expect(await attemptsOf(ofUp.message.body.delivery_id)).toMatchObject([{ error: "internal" }]);
    expect(await rowsByShard(up.orgId)).toMatchObject({ [SHARDS[0]!]: 1, [SHARDS[1]!]: 0 });
    expect(await attemptsOf(ofDown.message.body.delivery_id)).toHaveLength(0);
  });
});

describe("reads through the Sessions API", () => {
  it("answers with a bookmark, takes it back, and refuses one it never gave out", async () => {
    const { key } = await orgOn(SHARDS[1]!);
    const first = await call("GET", "/v1/deliveries", { token: key });
    const bookmark = first.headers.get(BOOKMARK_HEADER);
    expect(bookmark).toMatch(/^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/);
    const next = await call("GET", "/v1/webhook-logs", { token: key, headers: { [BOOKMARK_HEADER]: bookmark! } });
    expect(next.status).toBe(200);
    expect(next.headers.get(BOOKMARK_HEADER)! >= bookmark!).toBe(true); // bookmarks sort by time
    // A filter that can match nothing reads nothing, and gives back the bookmark it was sent.
    const none = await call("GET", `/v1/webhook-logs?job_id=job_1&delivery_id=dlv_${"0".repeat(32)}`, {
      token: key,
      headers: { [BOOKMARK_HEADER]: bookmark! },
    });
    expect(await none.json()).toEqual({ data: [], next_cursor: null });
    expect(none.headers.get(BOOKMARK_HEADER)).toBe(bookmark);
    const bad = await call("GET", "/v1/deliveries", { token: key, headers: { [BOOKMARK_HEADER]: "x' OR 1=1" } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "invalid_request" } });
  });

  it("decides a redeliver on the primary, and reads lists from any replica", async () => {
    const { orgId, key } = await orgOn(SHARDS[0]!);
    const { message } = await eventOf(orgId);
    await runConsumer([message]);
    const withSession = vi.spyOn(await logDbOf(orgId), "withSession");
    await call("GET", "/v1/deliveries", { token: key });
    await call("POST", `/v1/deliveries/${message.body.delivery_id}/redeliver`, { token: key });
    expect(withSession.mock.calls.map(([constraint]) => constraint)).toEqual(["first-unconstrained", "first-primary"]);
  });
});
