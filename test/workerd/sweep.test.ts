import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { DeliveryMessage } from "../../src/delivery/message";
import { SWEEP_CRON, SWEEP_LIMIT } from "../../src/delivery/sweep";
import worker from "../../src/index";
import { insertAttempts } from "../../src/store/attempts";
import {
  CLAIM_ALL_OVERDUE,
  CLAIM_OVERDUE,
  COUNT_OVERDUE,
  claimStalledDeliveries,
  OVERDUE_ORGS,
  readStoredEvents,
  SWEEP_ORGS,
  SWEEP_ORGS_WITH_BACKLOG,
  SWEEP_WALK_LIMIT,
  shareOut,
} from "../../src/store/stalled";
import {
  attemptRecord,
  attemptsOf,
  call,
  countingDb,
  fakeDate,
  jobEvent,
  logDbOf,
  messageFor,
  orgKey,
  receiver,
  runConsumer,
  uniqueId,
} from "./helpers";

/**
 * Nothing stays silently stuck in `pending` (src/delivery/sweep.ts): a delivery whose
 * queue message is taken away is picked up again by the every-minute sweep and goes on
 * with its schedule. Time moves with a fake `Date`; the sweep's messages are caught on
 * their way to the queue and run here.
 */

const advance = fakeDate();

/** Runs `work`, catching what it queues on the fast lane (kept off the real queue) as messages to run here. */
async function queuedBy(work: () => Promise<unknown>): Promise<Array<{ id: string; body: DeliveryMessage }>> {
  const sent: DeliveryMessage[] = [];
  const capture = async (messages: Iterable<MessageSendRequest<unknown>>) => {
    for (const m of messages) sent.push(m.body as DeliveryMessage);
    return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendBatchResponse;
  };
  const send = vi
    .spyOn(env.DELIVERIES, "send")
    .mockImplementation(async (body) => void (await capture([{ body }])) as never);
  const sendBatch = vi.spyOn(env.DELIVERIES, "sendBatch").mockImplementation(capture);
  try {
    await work();
  } finally {
    send.mockRestore();
    sendBatch.mockRestore();
  }
  return sent.map((body) => ({ id: uniqueId("msg"), body }));
}

/** Runs the every-minute cron; answers the messages it queued. */
function sweep(): Promise<Array<{ id: string; body: DeliveryMessage }>> {
  return queuedBy(() =>
    worker.scheduled(createScheduledController({ cron: SWEEP_CRON, scheduledTime: Date.now() }), env),
  );
}

/** A delivery of `orgId` whose attempt 1 failed and whose next attempt was due at `dueAt`. */
function overdueSince(orgId: string, dueAt: number) {
  return attemptRecord({
    delivery_id: `dlv_${crypto.randomUUID().replaceAll("-", "")}`,
    org_id: orgId,
    outcome: "failed",
    error: "http_status",
    status_code: 500,
    next_attempt_at: dueAt,
  });
}

/** Backlogs written straight into the log; gone after their test, so none is swept by another. */
const backlogs: string[] = [];
afterEach(async () => {
  const ids = backlogs.splice(0);
  await env.DB.prepare("DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(ids))
    .run();
});

async function insertAll(records: ReturnType<typeof attemptRecord>[]) {
  backlogs.push(...records.map((r) => r.delivery_id));
  for (let i = 0; i < records.length; i += 50) await insertAttempts(env.DB, records.slice(i, i + 50));
}

/** A delivery whose attempt 1 failed, and whose retry message then disappeared. */
async function stalledAfterAttempt1(replies: Parameters<ReturnType<typeof receiver>["script"]>[0]["replies"]) {
  const orgId = uniqueId("org");
  const hook = receiver(uniqueId("hook"));
  await hook.script({ replies });
  const event = jobEvent(orgId, uniqueId("job"));
  const message = { id: uniqueId("msg"), body: await messageFor(event, hook.url) };
  expect((await runConsumer([message])).retried.get(message.id)).toBe(60);
  return { orgId, hook, event, message };
}

describe("the stall sweep", () => {
  it("picks up a delivery whose message was lost and carries its schedule to the end", async () => {
    const { hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 500 }, { status: 200 }]);
    advance(60 + 60);
    expect(await sweep()).toEqual([]); // due a minute ago: not yet stalled

    advance(5 * 60);
    const [takeOver, ...more] = await sweep();
    expect(more).toEqual([]);
    expect(takeOver!.body).toMatchObject({
      delivery_id: message.body.delivery_id,
      take_over: 1,
      webhook_url: message.body.webhook_url,
    });
    expect(new TextDecoder().decode(takeOver!.body.body)).toBe(new TextDecoder().decode(message.body.body));
    expect(await sweep()).toEqual([]); // claimed: not queued again meanwhile

    expect((await runConsumer([takeOver!])).retried.get(takeOver!.id)).toBe(300);
    advance(300);
    const last = await runConsumer([{ ...takeOver!, attempts: 2 }]);
    expect(last.acked).toEqual([takeOver!.id]);

    const attempts = await attemptsOf(message.body.delivery_id);
    expect(attempts.map((a) => [a.attempt, a.status_code, a.outcome])).toEqual([
      [1, 500, "failed"],
      [2, 500, "failed"],
      [3, 200, "succeeded"],
    ]);
    const requests = await hook.requests();
    expect(requests.map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2", "3"]);
    expect(new Set(requests.map((r) => r.body)).size).toBe(1);

    // The lost message, should it turn up after all, owns nothing any more.
    advance(3600);
    expect((await runConsumer([{ ...message, attempts: 2 }])).acked).toEqual([message.id]);
    expect(await hook.requests()).toHaveLength(3);
  });

  it("drops the late owner that turns up before the take-over's attempt: one attempt 2, not two", async () => {
    const { hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200 }]);
    advance(60 + 6 * 60); // its retry is late (a crash back-off, a backed-up lane), not lost
    const [takeOver] = await sweep();
    // The owner comes now, while the take-over waits in the queue.
    expect((await runConsumer([{ ...message, attempts: 2 }])).acked).toEqual([message.id]);
    expect(await hook.requests()).toHaveLength(1);
    expect((await runConsumer([takeOver!])).acked).toEqual([takeOver!.id]);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
  });

  it("drops a late owner's lease follower after a claim: the take-over makes the attempt", async () => {
    const { hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200 }]);
    // The owner handed attempt 2 off, its row was never written, and the lease's message
    // waited in a backed-up lane past the stall threshold.
    const follower = {
      id: uniqueId("msg"),
      body: { ...message.body, owner: message.id, lease: { attempt: 2, until: Date.now(), scheduled: true } },
    };
    advance(60 + 6 * 60);
    const [takeOver] = await sweep();
    expect((await runConsumer([follower])).acked).toEqual([follower.id]);
    expect(await hook.requests()).toHaveLength(1);
    // The take-over's own follower (its attempt handed off, its row lost) still makes it.
    const takeOverFollower = {
      id: uniqueId("msg"),
      body: { ...takeOver!.body, owner: takeOver!.id, lease: { attempt: 2, until: Date.now(), scheduled: true } },
    };
    await runConsumer([takeOverFollower]);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
  });

  it("makes attempt 2 once when a take-over and a later claim's take-over run at the same time", async () => {
    // Attempt 2 answers after half a second (the tests' timeout is 1 s): both take-overs would be under way at once.
    const { hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200, delayMs: 500 }]);
    advance(60 + 6 * 60);
    const [first] = await sweep();
    // The first take-over waits in a backed-up lane past the stall threshold itself: claimed again.
    advance(6 * 60);
    const [second] = await sweep();
    expect(second!.body).toMatchObject({ delivery_id: message.body.delivery_id, take_over: 1 });
    expect(second!.body.claim).not.toBe(first!.body.claim);

    // They reach two runs at once: only the latest claim's take-over sends.
    const runs = await Promise.all([runConsumer([first!]), runConsumer([second!])]);
    expect(runs.flatMap((r) => r.acked).sort()).toEqual([first!.id, second!.id].sort());
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
  });

  it("makes attempt 2 once when a redeliver of a stalled delivery and the minute's sweep meet", async () => {
    const { orgId, hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200, delayMs: 500 }]);
    const key = await orgKey(orgId);
    advance(60 + 6 * 60);
    const [resend] = await queuedBy(async () => {
      const res = await call("POST", `/v1/deliveries/${message.body.delivery_id}/redeliver`, { token: key });
      expect(res.status).toBe(202);
    });
    // The resend's attempt 2 is under way when the sweep runs: the sweep finds the
    // delivery already taken over, and queues nothing for it.
    const resent = runConsumer([resend!]);
    await vi.waitUntil(async () => (await hook.requests()).length === 2, { timeout: 5_000, interval: 20 });
    const swept = (await sweep()).filter((m) => m.body.delivery_id === message.body.delivery_id);
    await Promise.all([resent, swept.length > 0 && runConsumer(swept)]);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
    expect(swept).toEqual([]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
  });

  it("gives a stalled delivery back when a redeliver cannot queue its take-over: the next sweep takes it", async () => {
    const { orgId, hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200 }]);
    const key = await orgKey(orgId);
    advance(60 + 6 * 60);
    const refuse = async () => {
      throw new Error("queue unavailable");
    };
    vi.spyOn(env.DELIVERIES, "send").mockImplementation(refuse);
    vi.spyOn(env.DELIVERIES, "sendBatch").mockImplementation(refuse);
    const res = await call("POST", `/v1/deliveries/${message.body.delivery_id}/redeliver`, { token: key });
    expect(res.status).toBe(500);
    vi.restoreAllMocks();
    // Still stalled, not "due now" for another five minutes: the sweep of this minute takes it over.
    const [takeOver] = (await sweep()).filter((m) => m.body.delivery_id === message.body.delivery_id);
    expect(takeOver).toBeDefined();
    await runConsumer([takeOver!]);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
  });

  it("answers a redeliver that finds the sweep's claim first with 409: the take-over makes the attempt", async () => {
    const { orgId, hook, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200 }]);
    const key = await orgKey(orgId);
    advance(60 + 6 * 60);
    const [takeOver] = await sweep();
    const resent = await queuedBy(async () => {
      const res = await call("POST", `/v1/deliveries/${message.body.delivery_id}/redeliver`, { token: key });
      expect(res.status).toBe(409);
    });
    expect(resent).toEqual([]);
    await runConsumer([takeOver!]);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
  });

  it("leaves pending deliveries that are on time, finished ones, and attempts that were retried", async () => {
    const onTime = await stalledAfterAttempt1([{ status: 500 }, { status: 200 }]);
    advance(61);
    // Retried and delivered: attempt 1's next_attempt_at is cleared.
    await runConsumer([{ ...onTime.message, attempts: 2 }]);
    advance(3600);
    const swept = await sweep();
    expect(swept.map((m) => m.body.delivery_id)).not.toContain(onTime.message.body.delivery_id);
  });

  it("reads only overdue deliveries, through the pending index, and no org's backlog", async () => {
    const now = Date.now();
    const plans = [
      env.DB.prepare(`EXPLAIN QUERY PLAN ${OVERDUE_ORGS}`).bind(now, SWEEP_WALK_LIMIT, SWEEP_ORGS, "", "org_m", 201),
      env.DB.prepare(`EXPLAIN QUERY PLAN ${CLAIM_OVERDUE}`).bind(now, now, 66, "org_a", "sweep:x"),
      env.DB.prepare(`EXPLAIN QUERY PLAN ${CLAIM_ALL_OVERDUE}`).bind(now, now, '["org_a","org_b"]', "sweep:x"),
      env.DB.prepare(`EXPLAIN QUERY PLAN ${COUNT_OVERDUE}`).bind(now, 201, '["org_a","org_b"]'),
    ];
    for (const plan of await env.DB.batch<{ detail: string }>(plans)) {
      const steps = plan.results.map((r) => r.detail).join("\n");
      expect(steps).toMatch(/USING (COVERING )?INDEX attempts_pending_by_org/);
      // Every read is a search: a scan of the log, or of the pending index, would read a big org's whole backlog.
      expect(steps).not.toMatch(/SCAN (a|attempts)\b/);
    }
  });

  it("walks past a big backlog, overdue or not, reading a bounded part of it", async () => {
    // An org with 1,000 pending deliveries (half overdue) after the walk's upper bound, and in it.
    const prefix = uniqueId("org");
    const now = Date.now();
    const big = Array.from({ length: 1000 }, (_, i) => overdueSince(`${prefix}_b`, now + (i % 2 ? 1 : -1) * 600_000));
    await insertAll([overdueSince(`${prefix}_a`, now - 600_000), ...big]);
    const walk = (upTo: string) =>
      env.DB.prepare(OVERDUE_ORGS)
        .bind(now, SWEEP_WALK_LIMIT, SWEEP_ORGS, `${prefix}_`, upTo, 201)
        .run<{ org_id: string; overdue: number }>();
    const bounded = await walk(`${prefix}_a`);
    expect(bounded.results.map((r) => [r.org_id, r.overdue])).toEqual([[`${prefix}_a`, 1]]);
    expect(bounded.meta.rows_read).toBeLessThan(20);
    const through = await walk(`${prefix}_c`);
    expect(through.results.map((r) => [r.org_id, r.overdue])).toEqual([
      [`${prefix}_a`, 1],
      [`${prefix}_b`, 201],
    ]);
    expect(through.meta.rows_read).toBeLessThan(250);
  });

  it("serves every org with a stalled delivery, however many older ones another org has", async () => {
    const due = Date.now() - 60 * 60_000;
    // Two orgs with 300 overdue deliveries each, all older than the third org's one.
    const [hogA, hogB, quiet] = [uniqueId("org"), uniqueId("org"), uniqueId("org")];
    const backlog = [hogA, hogB].flatMap((org) => Array.from({ length: 300 }, (_, i) => overdueSince(org, due - i)));
    await insertAll(backlog);
    const stalled = overdueSince(quiet, due + 60_000);
    await insertAll([stalled]);

    const first = await sweep();
    expect(first.map((m) => m.body.delivery_id)).toContain(stalled.delivery_id);
    expect(first.length).toBeLessThanOrEqual(SWEEP_LIMIT);
    // The orgs served get equal shares, each its oldest first.
    const shares = Map.groupBy(first, (m) => m.body.org_id);
    // The quiet org's one, and the rest of the sweep split between the backlogs.
    expect(first).toHaveLength(SWEEP_LIMIT);
    expect(shares.get(quiet)).toHaveLength(1);
    expect(Math.abs(shares.get(hogA)!.length - shares.get(hogB)!.length)).toBeLessThanOrEqual(1);
    const oldestOfA = backlog
      .filter((r) => r.org_id === hogA)
      .sort((a, b) => a.next_attempt_at! - b.next_attempt_at!)
      .slice(0, shares.get(hogA)!.length);
    expect(new Set(shares.get(hogA)!.map((m) => m.body.delivery_id))).toEqual(
      new Set(oldestOfA.map((r) => r.delivery_id)),
    );

    // The next sweep goes on with the backlogs, and claims nothing twice.
    const second = await sweep();
    expect(second.filter((m) => first.some((f) => f.body.delivery_id === m.body.delivery_id))).toEqual([]);
    expect(second.filter((m) => m.body.org_id === hogA).length).toBeGreaterThan(0);
    expect(second.filter((m) => m.body.org_id === hogB).length).toBeGreaterThan(0);
  });

  it("takes the orgs in turn when more than one sweep's worth have backlogs", async () => {
    // More orgs with backlogs than a sweep serves; the ones due latest come last by id.
    const prefix = uniqueId("org");
    const orgs = Array.from(
      { length: SWEEP_ORGS_WITH_BACKLOG + 10 },
      (_, i) => `${prefix}_${String(i).padStart(3, "0")}`,
    );
    const due = Date.now() - 60 * 60_000;
    await insertAll(
      orgs.flatMap((org, i) => Array.from({ length: 10 }, (_, k) => overdueSince(org, due + i * 10 + k))),
    );

    const served = new Set<string>();
    for (const round of [1, 2]) {
      const swept = await sweep();
      expect(swept.length, `sweep ${round}`).toBeLessThanOrEqual(SWEEP_LIMIT);
      for (const m of swept) served.add(m.body.org_id);
    }
    expect(orgs.filter((org) => !served.has(org))).toEqual([]);
  });

  it("claims a whole sweep's worth when many orgs have one stalled delivery each", async () => {
    const prefix = uniqueId("org");
    const stalled = Array.from({ length: 300 }, (_, i) =>
      overdueSince(`${prefix}_${String(i).padStart(3, "0")}`, Date.now() - 3600_000),
    );
    await insertAll(stalled);
    const mine = (messages: Awaited<ReturnType<typeof sweep>>) =>
      messages.filter((m) => m.body.org_id.startsWith(prefix)).map((m) => m.body.delivery_id);
    const first = mine(await sweep());
    expect(first.length).toBeGreaterThanOrEqual(SWEEP_LIMIT - 10); // other tests' leftovers may share it
    const second = mine(await sweep());
    expect([...first, ...second].sort()).toEqual(stalled.map((r) => r.delivery_id).sort());
  });

  it("ends a pending delivery whose event is gone as failed, instead of claiming it again", async () => {
    // Attempt 2 of a delivery whose attempt 1 retention deleted (a redeliver logged just after).
    const orphan = { ...overdueSince(uniqueId("org"), Date.now() - 3600_000), attempt: 2 };
    await insertAll([{ ...orphan, request_body: null, url_from_event: null }]);
    const errors = vi.spyOn(console, "error");
    const swept = await sweep();
    expect(swept.map((m) => m.body.delivery_id)).not.toContain(orphan.delivery_id);
    expect((await attemptsOf(orphan.delivery_id)).map((a) => [a.attempt, a.next_attempt_at])).toEqual([[2, null]]);
    expect(errors.mock.calls.map(([line]) => String(line)).join("\n")).toMatch(
      new RegExp(`"deliveries.sweep_abandoned".*${orphan.delivery_id}`),
    );
    errors.mockRestore();
  });
});

describe("shareOut", () => {
  it.each([
    [[1, 1, 300, 300], 200, [1, 1, 99, 99]],
    [[201], 200, [200]],
    [[3, 3], 200, [3, 3]],
    [[10, 10, 10], 20, [7, 7, 6]],
    [Array(200).fill(1), 200, Array(200).fill(1)],
    [[50, 2, 201, 5], 100, [47, 2, 46, 5]],
  ])("shares %j out of %i as %j", (overdue, limit, shares) => {
    expect(shareOut(overdue, limit)).toEqual(shares);
    expect(shareOut(overdue, limit).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(limit);
  });
});

describe("claimStalledDeliveries", () => {
  it("goes on where a walk that reached its limit stopped, past orgs with nothing overdue", async () => {
    const prefix = uniqueId("org");
    const now = Date.now();
    // Twelve orgs whose deliveries are pending on time, then one with a stalled delivery.
    const onTime = Array.from({ length: 12 }, (_, i) =>
      overdueSince(`${prefix}_${String(i).padStart(2, "0")}`, now + 60_000),
    );
    const stalled = overdueSince(`${prefix}_99`, now - 3600_000);
    await insertAll([...onTime, stalled]);
    const { results } = await env.DB.prepare(
      "SELECT count(DISTINCT org_id) AS orgs FROM attempts WHERE next_attempt_at IS NOT NULL",
    ).run<{ orgs: number }>();
    const walks = Math.ceil(results[0]!.orgs / 5) + 1;

    // Each walk visits five orgs (other tests' overdue ones are claimed on the way).
    const claimed: string[] = [];
    for (let i = 0; i < walks && !claimed.includes(stalled.delivery_id); i++) {
      const found = await claimStalledDeliveries(env.DB, now - 60_000, now, SWEEP_LIMIT, 5);
      claimed.push(...found.stalled.map((d) => d.delivery_id));
    }
    expect(claimed).toContain(stalled.delivery_id);
    expect(claimed.filter((id) => onTime.some((r) => r.delivery_id === id))).toEqual([]);
  });
  it("starts the next sweep at the first org it left out, when the walk stopped just past it", async () => {
    // 205 orgs with one overdue delivery each, next to each other in id order.
    const prefix = uniqueId("org");
    const orgs = Array.from({ length: 205 }, (_, i) => `${prefix}_${String(i).padStart(3, "0")}`);
    const now = Date.now();
    await insertAll(orgs.map((org) => overdueSince(org, now - 3600_000)));
    await env.DB.prepare("INSERT OR REPLACE INTO sweep_progress (id, next_org_id) VALUES (1, ?)")
      .bind(`${prefix}_`)
      .run();
    // The walk visits 201 orgs: it finds one more overdue org than a sweep serves.
    const first = await claimStalledDeliveries(env.DB, now - 60_000, now, SWEEP_LIMIT, SWEEP_ORGS + 1);
    expect(new Set(first.stalled.map((d) => d.org_id))).toEqual(new Set(orgs.slice(0, SWEEP_ORGS)));
    // The orgs served have a new overdue delivery by the next sweep; it begins with the 201st.
    await insertAll(orgs.slice(0, SWEEP_ORGS).map((org) => overdueSince(org, now - 3600_000)));
    const second = await claimStalledDeliveries(env.DB, now - 60_000, now, SWEEP_LIMIT, SWEEP_ORGS + 1);
    const servedNext = new Set(second.stalled.map((d) => d.org_id));
    expect(orgs.slice(SWEEP_ORGS).filter((org) => !servedNext.has(org))).toEqual([]);
  });
});

describe("taking a stalled delivery over", () => {
  it("a producer's re-send takes it over and sends the stored event, not the re-sent one", async () => {
    const { hook, event, message } = await stalledAfterAttempt1([{ status: 500 }, { status: 200 }]);
    advance(60 + 6 * 60);
    const changed = { ...event, data: { ...event.data, output_url: "https://changed.example/x.png" } };
    const resent = { id: uniqueId("msg"), body: await messageFor(changed, message.body.webhook_url) };
    const run = await runConsumer([resent]);
    expect(run.acked).toEqual([resent.id]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
    const requests = await hook.requests();
    expect(requests[1]!.body).toBe(requests[0]!.body);
  });

  it("a re-send that took it over keeps sending the stored event at the attempts it owns after", async () => {
    const { hook, event, message } = await stalledAfterAttempt1([{ status: 500 }]);
    advance(60 + 6 * 60);
    const changed = { ...event, data: { ...event.data, output_url: "https://changed.example/x.png" } };
    const resent = { id: uniqueId("msg"), body: await messageFor(changed, message.body.webhook_url) };
    // Attempt 2 fails too: the re-sent message owns the schedule now, and makes attempt 3.
    expect((await runConsumer([resent])).retried.get(resent.id)).toBe(300);
    advance(301);
    const last = await runConsumer([{ ...resent, attempts: 2 }]);
    expect(last.acked).toEqual([resent.id]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "failed"],
      [2, "failed"],
      [3, "failed"],
    ]);
    const bodies = (await hook.requests()).map((r) => r.body);
    expect(bodies).toEqual([bodies[0], bodies[0], bodies[0]]);
  });

  it("a redeliver takes it over, and the schedule goes on from it", async () => {
    const { orgId, message } = await stalledAfterAttempt1([{ status: 500 }]);
    const key = await orgKey(orgId);
    advance(60 + 6 * 60);
    const sent: DeliveryMessage[] = [];
    vi.spyOn(env.DELIVERIES, "send").mockImplementation(
      async (body) => void sent.push(body as DeliveryMessage) as never,
    );
    expect((await call("POST", `/v1/deliveries/${message.body.delivery_id}/redeliver`, { token: key })).status).toBe(
      202,
    );
    const redeliver = { id: uniqueId("msg"), body: sent[0]! };
    expect((await runConsumer([redeliver])).retried.get(redeliver.id)).toBe(300);
    advance(300);
    const last = await runConsumer([{ ...redeliver, attempts: 2 }]);
    expect(last.acked).toEqual([redeliver.id]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.next_attempt_at])).toEqual([
      [1, null],
      [2, null],
      [3, null],
    ]);
  });
});

describe("migrations/0002", () => {
  it("leaves next_attempt_at only on a delivery's last attempt, for rows logged before it", async () => {
    const deliveryId = `dlv_${"a".repeat(32)}`;
    backlogs.push(deliveryId); // pending and long overdue: not for the sweeps of other tests
    const orgId = uniqueId("org");
    // As rows looked before 0002: attempt 1 kept its next_attempt_at after attempt 2 was logged.
    await insertAttempts(env.DB, [
      attemptRecord({
        delivery_id: deliveryId,
        org_id: orgId,
        attempt: 1,
        outcome: "failed",
        error: "http_status",
        status_code: 500,
        next_attempt_at: 1,
      }),
    ]);
    await insertAttempts(env.DB, [
      attemptRecord({
        delivery_id: deliveryId,
        org_id: orgId,
        attempt: 2,
        outcome: "failed",
        error: "http_status",
        status_code: 500,
        next_attempt_at: 2,
        request_body: null,
        url_from_event: null,
      }),
    ]);
    await env.DB.prepare("UPDATE attempts SET next_attempt_at = 1 WHERE delivery_id = ? AND attempt = 1")
      .bind(deliveryId)
      .run();
    const migration = env.TEST_MIGRATIONS.find((m) => m.name.startsWith("0002"))!;
    const dataStep = migration.queries.find((q) => q.trimStart().startsWith("UPDATE"))!;
    await env.DB.prepare(dataStep).run();
    expect((await attemptsOf(deliveryId)).map((a) => [a.attempt, a.next_attempt_at])).toEqual([
      [1, null],
      [2, 2],
    ]);
  });
});

describe("the stored events a sweep reads", () => {
  it("come back whole for a full sweep's 200, big ones that do not compress too", async () => {
    const orgId = uniqueId("org");
    // 48 KiB of random bytes as hex in a JSON string: 96 KiB of text that deflate barely shrinks below 48 KiB.
    const noise = Array.from(crypto.getRandomValues(new Uint8Array(49_152)), (b) => b.toString(16).padStart(2, "0"));
    const bodies = Array.from({ length: SWEEP_LIMIT }, (_, i) =>
      JSON.stringify({ type: "job.completed", data: { i, noise: i % 40 === 0 ? noise.join("") : "" } }),
    );
    const ids = bodies.map(() => uniqueId("dlv"));
    await insertAttempts(
      await logDbOf(orgId),
      ids.map((id, i) =>
        attemptRecord({
          delivery_id: id,
          org_id: orgId,
          request_body: bodies[i]!,
          url_from_event: i % 2 === 0,
          url: `https://h${i}.example.com/hook`,
        }),
      ),
    );
    const counted = countingDb(await logDbOf(orgId));
    const events = await readStoredEvents(counted.db, [...ids, uniqueId("dlv")]);
    // 50 at a time, the bodies as hex text: as arrays of numbers, 200 such BLOBs would take ~100 MB.
    expect(counted.runs()).toHaveLength(Math.ceil((SWEEP_LIMIT + 1) / 50));
    for (const sql of counted.runs()) expect(sql).toContain("hex(request_body)");
    expect(events.size).toBe(SWEEP_LIMIT);
    ids.forEach((id, i) => {
      expect(events.get(id)).toEqual({
        body: bodies[i],
        webhook_url: i % 2 === 0 ? `https://h${i}.example.com/hook` : null,
      });
    });
  });
});
