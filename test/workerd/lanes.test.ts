import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { handOffLeaseMarginMs } from "../../src/delivery/lanes";
import type { DeliveryMessage } from "../../src/delivery/message";
import { endpointOf } from "../../src/org/endpoint-health";
import { OrgSettings, orgSettings } from "../../src/org/org-settings";
import { SCHEMA_VERSION } from "../../src/org/schema";
import { insertAttempts } from "../../src/store/attempts";
import {
  attemptRecord,
  attemptsOf,
  call,
  fakeDate,
  jobEvent,
  logDbOf,
  messageFor,
  orgKey,
  orgsOnShard,
  receiver,
  runConsumer,
  runLanes,
  uniqueId,
  withOrgObjects,
} from "./helpers";

/**
 * The lanes (src/delivery/lanes.ts), run as the queues would run them: which lane a
 * delivery takes, how a hanging endpoint is moved aside without holding a healthy run,
 * and how its schedule goes on. ATTEMPT_TIMEOUT_MS is 1000 in these tests; `laneEnv`
 * hands attempts off after 300 ms.
 */

const laneEnv = { ...env, SLOW_ATTEMPT_MS: "300" };

const advance = fakeDate();

type Hook = ReturnType<typeof receiver>;

async function message(orgId: string, url: string | null) {
  return { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), url) };
}

async function hook(replies: Parameters<Hook["script"]>[0]["replies"] = [{}], origin: "first" | "second" = "first") {
  const h = receiver(uniqueId("hook"), { origin });
  await h.script({ replies });
  return h;
}

/** Puts an org's endpoint in the slow lane, as one timeout would. */
async function markSlow(orgId: string, url: string) {
  await orgSettings(env, orgId).reportAttempts([
    {
      origin: endpointOf(url)!,
      at: Date.now(),
      outcome: "failed",
      error: "timeout",
      response_time_ms: 1000,
      slow: true,
    },
  ]);
}

/** Logs attempt 1 of `m` as failed, for its own message, with attempt 2 due in `dueInMs`. */
async function logFailedFirstAttempt(
  orgId: string,
  m: { id: string; body: DeliveryMessage },
  error: "timeout" | "http_status",
  dueInMs: number,
) {
  await insertAttempts(await logDbOf(orgId), [
    attemptRecord({
      delivery_id: m.body.delivery_id,
      org_id: orgId,
      message_id: m.id,
      outcome: "failed",
      status_code: error === "timeout" ? null : 500,
      error,
      next_attempt_at: Date.now() + dueInMs,
    }),
  ]);
}

async function health(orgId: string, url: string) {
  return orgSettings(env, orgId).getEndpointHealth(endpointOf(url)!);
}

describe("the fast lane", () => {
  it("moves a delivery to an endpoint in the slow lane there unattempted, and the slow lane delivers it", async () => {
    const orgId = uniqueId("org");
    const h = await hook();
    await markSlow(orgId, h.url);
    const m = await message(orgId, h.url);

    const { fast, slow, moved } = await runLanes([m]);
    expect(fast.acked).toEqual([m.id]);
    expect(fast.toSlowLane).toEqual([{ body: { ...m.body, owner: m.id }, delaySeconds: undefined }]);
    expect(slow!.acked).toEqual([moved[0]!.id]);
    const requests = await h.requests();
    expect(requests).toHaveLength(1);
    expect(requests[0]!.text).toBe(new TextDecoder().decode(m.body.body));
    // Logged as made by the message that owns the delivery, whichever lane carried it.
    expect(await attemptsOf(m.body.delivery_id)).toMatchObject([{ attempt: 1, outcome: "succeeded" }]);
    const { results } = await (await logDbOf(m.body.org_id))
      .prepare("SELECT message_id FROM attempts WHERE delivery_id = ?")
      .bind(m.body.delivery_id)
      .run();
    expect(results).toEqual([{ message_id: m.id }]);
  });

  it("moves a batch of large events in as many sends as the queue's 256 KB take", async () => {
    const orgId = uniqueId("org");
    const h = await hook();
    await markSlow(orgId, h.url);
    // Ten 60 KB events: 600 KB, three sends' worth.
    const output_url = `https://storage.example/${"x".repeat(60_000)}`;
    const messages = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const event = jobEvent(orgId, uniqueId("job"));
        Object.assign(event.data, { output_url });
        return { id: uniqueId("msg"), body: await messageFor(event, h.url) };
      }),
    );
    expect(messages[0]!.body.body.byteLength).toBeGreaterThan(60_000);

    const { fast, slow } = await runLanes(messages);
    expect(fast.acked.sort()).toEqual(messages.map((m) => m.id).sort());
    expect(fast.retried.size).toBe(0);
    expect(slow!.acked).toHaveLength(10);
    expect(await h.requests()).toHaveLength(10);
  });

  it("moves a pending delivery whose endpoint turned slow; the slow lane makes attempt 2, for its owner", async () => {
    const orgId = uniqueId("org");
    const h = await hook([{ status: 500 }, { status: 200 }]);
    const m = await message(orgId, h.url);
    expect((await runConsumer([m])).retried.get(m.id)).toBe(60);

    await markSlow(orgId, h.url);
    advance(60);
    const { fast, slow, moved } = await runLanes([{ ...m, attempts: 2 }]);
    expect(fast.acked).toEqual([m.id]);
    expect(moved[0]!.body.owner).toBe(m.id);
    expect(slow!.acked).toEqual([moved[0]!.id]);
    expect((await attemptsOf(m.body.delivery_id)).map((a) => [a.attempt, a.outcome])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);

    // Another message of the same delivery (a producer's retry) owns nothing in either lane.
    const stranger = { id: uniqueId("msg"), body: { ...m.body, owner: uniqueId("msg") } };
    expect((await runConsumer([stranger], "deliveries-slow")).acked).toEqual([stranger.id]);
    expect(await h.requests()).toHaveLength(2);
  });

  it("hands off an attempt past SLOW_ATTEMPT_MS: the run ends without it, and its endpoint moves aside", async () => {
    const [orgA, orgB] = [uniqueId("org"), uniqueId("org")];
    const hanging = await hook([{ delayMs: 3000 }]);
    const quick = await hook([{ delayMs: 120 }]);
    // Org A's endpoint hangs: three of its deliveries take their share of the six
    // connections; the fourth waits while org B's deliveries (five waves of three, 120 ms
    // each) use the rest, past the 300 ms hand-off, and the run ends well before the
    // 1 s timeout.
    const stuck = await Promise.all(Array.from({ length: 3 }, () => message(orgA, hanging.url)));
    const a4 = await message(orgA, hanging.url);
    const healthy = await Promise.all(Array.from({ length: 15 }, () => message(orgB, quick.url)));

    const runStarted = Date.now();
    const run = await runConsumer([...stuck, a4, ...healthy], "deliveries", laneEnv);
    const runEnded = Date.now();
    // The healthy deliveries are delivered and logged; the hanging attempts are still running.
    for (const m of healthy) expect(await attemptsOf(m.body.delivery_id)).toMatchObject([{ outcome: "succeeded" }]);
    for (const m of stuck) expect(await attemptsOf(m.body.delivery_id)).toEqual([]);
    expect(run.acked.sort()).toEqual([...stuck, a4, ...healthy].map((m) => m.id).sort());
    // a4 never started here: its endpoint turned slow while it waited for a connection.
    expect(await hanging.requests()).toHaveLength(3);
    const [a1] = stuck;
    const followUp = run.toSlowLane.find((r) => r.body.delivery_id === a1!.body.delivery_id)!;
    expect(run.toSlowLane.find((r) => r.body.delivery_id === a4.body.delivery_id)).toEqual({
      body: { ...a4.body, owner: a4.id },
      delaySeconds: undefined,
    });
    expect(followUp.body).toMatchObject({
      owner: a1!.id,
      lease: { attempt: 1, until: expect.any(Number), scheduled: true },
    });
    // The lease: the attempt's start + its 1 s timeout + 5 s for its row to be written.
    expect(followUp.body.lease!.until).toBeGreaterThanOrEqual(runStarted + 1_000 + 5_000);
    expect(followUp.body.lease!.until).toBeLessThanOrEqual(runEnded + 1_000 + 5_000);
    expect(followUp.delaySeconds).toBeGreaterThanOrEqual(5);
    const moved = await health(orgA, hanging.url);
    expect(moved?.lane).toBe("slow");
    // "slow" from the hand-off, or "timeout" when the background attempts' 1 s timeouts
    // were reported first (a loaded machine reads the health later).
    expect(["slow", "timeout"]).toContain(moved?.lane_reason);
    expect(await health(orgB, quick.url)).toMatchObject({ lane: "fast", success_rate_24h: 1 });

    // In the background the attempts run to their timeout and are logged, on the schedule.
    await run.background;
    const [logged] = await attemptsOf(a1!.body.delivery_id);
    expect(logged).toMatchObject({ attempt: 1, outcome: "failed", error: "timeout" });
    expect(logged!.next_attempt_at! - Date.now()).toBeGreaterThan(55_000);
    expect(await health(orgA, hanging.url)).toMatchObject({ lane: "slow", lane_reason: "timeout", timeouts_24h: 3 });

    // The follow-up waits out the schedule in the slow lane, then makes attempt 2 there.
    const followMessage = { id: uniqueId("msg"), body: followUp.body };
    const early = await runConsumer([followMessage], "deliveries-slow", laneEnv);
    expect(early.retried.get(followMessage.id)).toBeGreaterThan(50);
    advance(61);
    const second = await runConsumer([{ ...followMessage, attempts: 2 }], "deliveries-slow", laneEnv);
    expect(second.retried.get(followMessage.id)).toBe(300);
    expect((await attemptsOf(a1!.body.delivery_id)).map((a) => [a.attempt, a.error])).toEqual([
      [1, "timeout"],
      [2, "timeout"],
    ]);
    expect(await hanging.requests()).toHaveLength(4);
  });

  it("logs each handed-off attempt as it ends, not when the run's last one does", async () => {
    const orgId = uniqueId("org");
    const early = await hook([{ delayMs: 3000 }]);
    // Another org's endpoint answers 40 times in 50 ms (far under the 300 ms hand-off),
    // up to 5 at a time, then hangs: its last attempt starts ~0.4 s after the first one
    // above (well within the run's 1.5 s for it), and both are handed off.
    const late = await hook([...Array.from({ length: 40 }, () => ({ delayMs: 50 })), { delayMs: 3000 }], "second");
    const first = await message(orgId, early.url);
    const other = uniqueId("org");
    const toLate = await Promise.all(Array.from({ length: 41 }, () => message(other, late.url)));
    const run = await runConsumer([first, ...toLate], "deliveries", laneEnv);
    const handedOff = run.toSlowLane.map((r) => r.body.delivery_id);
    expect(handedOff).toHaveLength(2);
    expect(handedOff).toContain(first.body.delivery_id);
    const last = handedOff.find((id) => id !== first.body.delivery_id)!;

    // The first attempt times out (1 s) well before the last one does: its row is
    // there while the last attempt still runs, for the lease that follows it.
    await vi.waitUntil(async () => (await attemptsOf(first.body.delivery_id)).length > 0, {
      timeout: 3_000,
      interval: 20,
    });
    expect(await attemptsOf(last)).toEqual([]);
    await run.background;
    expect(await attemptsOf(last)).toMatchObject([{ attempt: 1, error: "timeout" }]);
  });

  it("keeps one endpoint's flood from holding the run: past 5 × SLOW_ATTEMPT_MS its rest moves aside", async () => {
    // 90 events to an endpoint answering in 200 ms, well under a 400 ms hand-off: over 6
    // connections, 3 s of attempts. The run starts them for 2 s, then moves the rest.
    const busyEnv = { ...env, SLOW_ATTEMPT_MS: "400" };
    const flooding = uniqueId("org");
    const steady = await hook([{ delayMs: 200 }]);
    const quick = await hook([{}], "second");
    const flood = await Promise.all(Array.from({ length: 90 }, () => message(flooding, steady.url)));
    const others = await Promise.all([1, 2, 3].map(() => message(uniqueId("org"), quick.url)));

    const { fast, slow, moved } = await runLanes([...flood, ...others], busyEnv);
    expect(fast.acked).toHaveLength(93);
    for (const m of others) expect(await attemptsOf(m.body.delivery_id)).toMatchObject([{ outcome: "succeeded" }]);
    // Moved in time, not as a slow endpoint: it keeps its fast lane for the next events.
    expect(moved.length).toBeGreaterThanOrEqual(10);
    expect(moved.length).toBeLessThanOrEqual(80);
    expect(await health(flooding, steady.url)).toMatchObject({ lane: "fast" });
    // The slow lane delivers the rest: every event once, at attempt 1.
    expect(slow!.acked).toHaveLength(moved.length);
    for (const m of flood) {
      expect(await attemptsOf(m.body.delivery_id)).toMatchObject([{ attempt: 1, outcome: "succeeded" }]);
    }
    expect(await steady.requests()).toHaveLength(90);
  });

  it("releases the rest of the batch when every connection is held by handed-off attempts", async () => {
    const hangingA = await hook([{ delayMs: 3000 }]);
    const hangingC = await hook([{ delayMs: 3000 }], "second");
    const ok = await hook();
    // Two orgs, three hanging attempts each (an org alone holds at most four connections),
    // then a third org's delivery, in that order.
    const [orgA, orgC, third] = await orgsOnShard("DB", 3);
    const stuck = [
      ...(await Promise.all(Array.from({ length: 3 }, () => message(orgA!, hangingA.url)))),
      ...(await Promise.all(Array.from({ length: 3 }, () => message(orgC!, hangingC.url)))),
    ];
    const waiting = await message(third!, ok.url);
    // It has been released nine times already: one more retry would be its queue's tenth
    // (max_retries), and the dead-letter queue would fail it without a single attempt.
    const run = await runConsumer([...stuck, { ...waiting, attempts: 10 }], "deliveries", laneEnv);
    expect(await ok.requests()).toHaveLength(0);
    expect(run.toSlowLane).toHaveLength(6);
    // So it goes back to the fast lane's tail as a new message, owner kept; not retried.
    expect(run.retried.has(waiting.id)).toBe(false);
    expect(run.acked).toContain(waiting.id);
    expect(run.putBack).toEqual([{ body: { ...waiting.body, owner: waiting.id }, delaySeconds: undefined }]);
    await run.background;
    const next = await runConsumer([{ id: uniqueId("msg"), body: run.putBack[0]!.body }], "deliveries", laneEnv);
    expect(next.acked).toHaveLength(1);
    expect(await attemptsOf(waiting.body.delivery_id)).toMatchObject([{ attempt: 1, message_id: waiting.id }]);
  });

  it("retries a released delivery when it cannot be put back on its lane", async () => {
    const hanging = await hook([{ delayMs: 3000 }]);
    const ok = await hook();
    const [orgA, orgC, third] = await orgsOnShard("DB", 3);
    const stuck = await Promise.all([
      ...Array.from({ length: 3 }, () => message(orgA!, hanging.url)),
      ...Array.from({ length: 3 }, () => message(orgC!, hanging.url)),
    ]);
    const waiting = await message(third!, ok.url);
    vi.spyOn(env.DELIVERIES_BULK, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const run = await runConsumer([...stuck, waiting], "deliveries-bulk", laneEnv);
    expect(run.retried.get(waiting.id)).toBe(0);
    expect(run.acked).not.toContain(waiting.id);
    await run.background;
  });

  describe("an org whose new endpoints keep hanging (per-event URLs, a new host each time)", () => {
    const hung = (origin: string) => ({
      origin,
      at: Date.now(),
      outcome: "in_flight" as const,
      error: null,
      response_time_ms: 300,
      slow: true,
    });
    const hangingHosts = ["https://a.hang.example", "https://b.hang.example", "https://c.hang.example"];

    it("moves its deliveries to endpoints it never reached aside, once 3 hung within 10 minutes", async () => {
      const [orgId, other] = [uniqueId("org"), uniqueId("org")];
      const byDefault = await hook();
      await orgSettings(env, orgId).setWebhookUrl(byDefault.url);
      await runConsumer([await message(orgId, null)], "deliveries", laneEnv); // its default answers well
      await orgSettings(env, orgId).reportAttempts(hangingHosts.map(hung));

      // A fourth new endpoint (one that works): moved aside unattempted, delivered by the
      // slow lane. The org's default, which it has reached, stays fast; so does another
      // org's delivery to the same host.
      const fresh = await hook([{}], "second");
      const [mine, byDefaultNow, theirs] = [
        await message(orgId, fresh.url),
        await message(orgId, null),
        await message(other, fresh.url),
      ];
      const { fast, slow, moved } = await runLanes([mine, byDefaultNow, theirs], laneEnv);
      expect(moved.map((m) => m.body.delivery_id)).toEqual([mine.body.delivery_id]);
      expect(fast.acked.sort()).toEqual([mine.id, byDefaultNow.id, theirs.id].sort());
      expect(slow!.acked).toHaveLength(1);
      for (const m of [mine, byDefaultNow, theirs]) {
        expect(await attemptsOf(m.body.delivery_id)).toMatchObject([{ attempt: 1, outcome: "succeeded" }]);
      }
    });

    it("keeps them fast with 2 such endpoints, and again 10 minutes after the third", async () => {
      const orgId = uniqueId("org");
      const settings = orgSettings(env, orgId);
      // A default just set, never sent to yet: the rule leaves it to its own health.
      await settings.setWebhookUrl("https://default.example/hook");
      const newHost = "https://new.example";
      await settings.reportAttempts(hangingHosts.slice(0, 2).map(hung));
      expect((await settings.getDeliverySettings([newHost])).slow_endpoints).toEqual([]);
      // The third timed out, then failed fast twice (its reason became `failing`): it hung all the same.
      const failed = (error: "timeout" | "http_status") => ({
        ...hung(hangingHosts[2]!),
        outcome: "failed" as const,
        error,
        slow: error === "timeout",
      });
      await settings.reportAttempts([failed("timeout"), failed("http_status"), failed("http_status")]);
      expect(await settings.getEndpointHealth(hangingHosts[2]!)).toMatchObject({ lane_reason: "failing" });
      expect((await settings.getDeliverySettings([newHost])).slow_endpoints).toEqual([newHost]);
      advance(10 * 60 + 1);
      expect((await settings.getDeliverySettings([newHost])).slow_endpoints).toEqual([]);
      // The three hanging ones stay in the slow lane by their own health all the while.
      expect((await settings.getDeliverySettings(hangingHosts)).slow_endpoints.sort()).toEqual(hangingHosts);
    });
  });

  it("keeps the org default in the fast lane when only a per-event URL hangs", async () => {
    const orgId = uniqueId("org");
    const byDefault = await hook();
    const perEvent = await hook([{ delayMs: 3000 }], "second");
    await orgSettings(env, orgId).setWebhookUrl(byDefault.url);

    const run = await runConsumer(
      [await message(orgId, perEvent.url), await message(orgId, null)],
      "deliveries",
      laneEnv,
    );
    await run.background;
    expect(await health(orgId, perEvent.url)).toMatchObject({ lane: "slow", lane_reason: "timeout" });
    expect(await health(orgId, byDefault.url)).toMatchObject({ lane: "fast" });

    const [toDefault, toPerEvent] = [await message(orgId, null), await message(orgId, perEvent.url)];
    const next = await runConsumer([toDefault, toPerEvent], "deliveries", laneEnv);
    expect(next.toSlowLane.map((r) => r.body.delivery_id)).toEqual([toPerEvent.body.delivery_id]);
    expect(await byDefault.requests()).toHaveLength(2);
  });

  it("takes a slow endpoint back after three good answers in the slow lane", async () => {
    const orgId = uniqueId("org");
    const h = await hook();
    await markSlow(orgId, h.url);
    for (let i = 0; i < 3; i++) {
      const { moved } = await runLanes([await message(orgId, h.url)]);
      expect(moved).toHaveLength(1);
    }
    expect(await health(orgId, h.url)).toMatchObject({ lane: "fast", lane_reason: null });
    const { moved } = await runLanes([await message(orgId, h.url)]);
    expect(moved).toHaveLength(0);
    expect(await h.requests()).toHaveLength(4);
  });

  it("delivers and logs as usual when the org's object cannot take the health report", async () => {
    const orgId = uniqueId("org");
    const h = await hook();
    const m = await message(orgId, h.url);
    const faulty = withOrgObjects(env, { reportAttempts: () => Promise.reject(new Error("Durable Object reset")) });
    const run = await runConsumer([m], "deliveries", faulty);
    expect(run.acked).toEqual([m.id]);
    expect(await attemptsOf(m.body.delivery_id)).toMatchObject([{ outcome: "succeeded" }]);
  });
});

describe("a hand-off's lease", () => {
  it("waits 5 s past the timeout for the attempt's row, or less when the schedule's first delay is shorter", () => {
    // The lease never makes attempt 2 later than the schedule would: with retries after
    // 2 s (tests, the e2e suite), it waits 2 s, not 5.
    expect(handOffLeaseMarginMs([60, 300])).toBe(5_000);
    expect(handOffLeaseMarginMs([2, 3])).toBe(2_000);
    expect(handOffLeaseMarginMs([])).toBe(5_000);
  });
});

describe("the bulk lane (an org's events beyond FAST_LANE_ORG_LIMIT)", () => {
  it("delivers as the fast lane does: slow endpoints move aside, a hanging attempt is handed off", async () => {
    // Health is per org and origin: org A's endpoint is known to be slow; org B's starts hanging.
    const [orgA, orgB] = [uniqueId("org"), uniqueId("org")];
    const known = await hook([{ delayMs: 3000 }], "second");
    await markSlow(orgA, known.url);
    const hanging = await hook([{ delayMs: 3000 }], "second");
    const failing = await hook([{ status: 500 }]);
    const quick = await hook();
    const [toKnown, stuck, toFailing, fine] = [
      await message(orgA, known.url),
      await message(orgB, hanging.url),
      await message(orgB, failing.url),
      await message(orgB, quick.url),
    ];

    const run = await runConsumer([toKnown, stuck, toFailing, fine], "deliveries-bulk", laneEnv);
    // The run did not wait for the hanging attempt (1 s timeout): handed off at 300 ms, it
    // is still running, unlogged, when the run has ended.
    expect(await attemptsOf(stuck.body.delivery_id)).toEqual([]);
    expect(await known.requests()).toHaveLength(0);
    expect(run.toSlowLane.map((r) => [r.body.delivery_id, r.body.lease?.attempt ?? null])).toEqual([
      [toKnown.body.delivery_id, null],
      [stuck.body.delivery_id, 1],
    ]);
    expect(await attemptsOf(fine.body.delivery_id)).toMatchObject([{ outcome: "succeeded" }]);
    // A failed attempt's retry stays in the lane that made it, on the schedule.
    expect(run.retried.get(toFailing.id)).toBe(60);
    expect(run.acked.sort()).toEqual([toKnown.id, stuck.id, fine.id].sort());
    await run.background;
    expect(await attemptsOf(stuck.body.delivery_id)).toMatchObject([{ attempt: 1, error: "timeout" }]);
  });
});

describe("the slow lane", () => {
  it("waits for every attempt to end: nothing is handed off there", async () => {
    const orgId = uniqueId("org");
    const hanging = await hook([{ delayMs: 3000 }]);
    const ok = await hook();
    const [stuck, fine] = [await message(orgId, hanging.url), await message(orgId, ok.url)];
    const run = await runConsumer([stuck, fine], "deliveries-slow", laneEnv);
    expect(run.toSlowLane).toEqual([]);
    expect(run.retried.get(stuck.id)).toBe(60);
    expect(await attemptsOf(stuck.body.delivery_id)).toMatchObject([{ error: "timeout" }]);
    expect(await attemptsOf(fine.body.delivery_id)).toMatchObject([{ outcome: "succeeded" }]);
  });

  it("refuses a queue no lane reads: its run fails loudly, nothing is attempted", async () => {
    const h = await hook();
    const m = await message(uniqueId("org"), h.url);
    await expect(runConsumer([m], "deliveries-typo")).rejects.toThrow('no lane reads the queue "deliveries-typo"');
    expect(await h.requests()).toHaveLength(0);
  });

  it("makes a handed-off attempt again when its lease ends and it was never logged", async () => {
    const orgId = uniqueId("org");
    const h = await hook();
    const base = await message(orgId, h.url);
    const leased: { id: string; body: DeliveryMessage } = {
      id: uniqueId("msg"),
      body: { ...base.body, owner: base.id, lease: { attempt: 1, until: Date.now() + 6000 } },
    };
    const early = await runConsumer([leased], "deliveries-slow");
    expect(early.retried.get(leased.id)).toBeGreaterThanOrEqual(5);
    expect(await h.requests()).toHaveLength(0);

    advance(7);
    const late = await runConsumer([{ ...leased, attempts: 2 }], "deliveries-slow");
    expect(late.acked).toEqual([leased.id]);
    expect(await attemptsOf(base.body.delivery_id)).toMatchObject([{ attempt: 1, outcome: "succeeded" }]);
    expect(await h.requests()).toHaveLength(1);
  });

  it("keeps the schedule when a handed-off attempt is logged late, as its lease's message remade it", async () => {
    const orgId = uniqueId("org");
    const h = await hook([{ status: 500, delayMs: 200 }]);
    const base = await message(orgId, h.url);
    const leased: { id: string; body: DeliveryMessage } = {
      id: uniqueId("msg"),
      body: { ...base.body, owner: base.id, lease: { attempt: 1, until: Date.now() - 1000, scheduled: true } },
    };
    // The lease has ended with attempt 1 unlogged: the message makes it again. While it
    // runs, the background work's row lands after all (a slow write): a timeout, attempt
    // 2 due in 60 s. Both rows are the owner's, base.id's.
    const running = runConsumer([leased], "deliveries-slow");
    await vi.waitUntil(async () => (await h.requests()).length === 1, { timeout: 5_000, interval: 20 });
    await logFailedFirstAttempt(orgId, base, "timeout", 60_000);
    const run = await running;
    // Its own row was not new. No other message carries the delivery on (the fast-lane
    // one was acked when it handed the attempt off), so this one is not dropped: it reads
    // the log again, owns the delivery, and makes attempt 2 when due.
    expect(run.acked).toEqual([]);
    expect(run.retried.get(leased.id)).toBe(0);
    const again = await runConsumer([{ ...leased, attempts: 2 }], "deliveries-slow");
    expect(again.retried.get(leased.id)).toBeGreaterThanOrEqual(59);
    advance(61);
    const second = await runConsumer([{ ...leased, attempts: 3 }], "deliveries-slow");
    expect(second.retried.get(leased.id)).toBe(300);
    expect((await attemptsOf(base.body.delivery_id)).map((a) => [a.attempt, a.error])).toEqual([
      [1, "timeout"],
      [2, "http_status"],
    ]);
  });

  it("makes a resend's handed-off attempt again as scheduled: the delivery keeps its last attempt", async () => {
    const orgId = uniqueId("org");
    const h = await hook([{ status: 500 }]);
    const base = await message(orgId, h.url);
    // Attempt 1 failed; attempt 2 was resent now ("resend now", redeliver_after: 1) and
    // handed off, and the background work died before logging it.
    await logFailedFirstAttempt(orgId, base, "http_status", 200_000);
    const resendId = uniqueId("msg");
    const leased: { id: string; body: DeliveryMessage } = {
      id: uniqueId("msg"),
      body: {
        ...base.body,
        redeliver_after: 1,
        owner: resendId,
        lease: { attempt: 2, until: Date.now() - 1000, scheduled: true },
      },
    };
    const run = await runConsumer([leased], "deliveries-slow");
    // Attempt 2 failed too; attempt 3, the schedule's last, follows in 300 s.
    expect(run.retried.get(leased.id)).toBe(300);
    const rows = await attemptsOf(base.body.delivery_id);
    expect(rows.map((a) => [a.attempt, a.message_id])).toEqual([
      [1, base.id],
      [2, resendId],
    ]);
    expect(rows[1]!.next_attempt_at! - Date.now()).toBeGreaterThan(295_000);
  });
});

/** Stops the clock (until the test's end): a test that counts milliseconds moves it itself. */
function freezeDate() {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: false, now: Date.now() });
}

describe("each org's share of the slow lane", () => {
  /** Two attempts at once per org; ATTEMPT_TIMEOUT_MS is 1000, so each is expected to take 1 s. */
  const shareEnv = { ...laneEnv, SLOW_LANE_ORG_SHARE: "2" };

  it("sends an org's moves beyond its share to the overflow lane; another org's still take the slow lane", async () => {
    const [flooding, other] = [uniqueId("org"), uniqueId("org")];
    const [hanging, slowish] = [await hook([{ delayMs: 3000 }]), await hook()];
    await markSlow(flooding, hanging.url);
    await markSlow(other, slowish.url);
    const flood = await Promise.all(Array.from({ length: 8 }, () => message(flooding, hanging.url)));
    const late = await message(other, slowish.url);

    const run = await runConsumer([...flood, late], "deliveries", shareEnv);
    expect(run.acked.sort()).toEqual([...flood, late].map((m) => m.id).sort());
    const ids = (sent: typeof run.toSlowLane) => sent.map((m) => m.body.delivery_id);
    expect(ids(run.toSlowLane)).toEqual([...flood.slice(0, 2), late].map((m) => m.body.delivery_id));
    expect(ids(run.toOverflowLane)).toEqual(flood.slice(2).map((m) => m.body.delivery_id));
    // The same messages either way: the same owner, bytes and no delay.
    expect(run.toOverflowLane[0]).toEqual({
      body: { ...flood[2]!.body, owner: flood[2]!.id },
      delaySeconds: undefined,
    });
    expect(await hanging.requests()).toHaveLength(0);
  });

  it("gives the share back as the attempts it let in would have ended", async () => {
    freezeDate();
    const orgId = uniqueId("org");
    const h = await hook();
    await markSlow(orgId, h.url);
    const first = await runConsumer(
      await Promise.all([1, 2, 3].map(() => message(orgId, h.url))),
      "deliveries",
      shareEnv,
    );
    expect([first.toSlowLane.length, first.toOverflowLane.length]).toEqual([2, 1]);

    advance(0.5); // half of the expected attempt time: room for one
    const half = await runConsumer(await Promise.all([1, 2].map(() => message(orgId, h.url))), "deliveries", shareEnv);
    expect([half.toSlowLane.length, half.toOverflowLane.length]).toEqual([1, 1]);

    advance(1);
    const later = await runConsumer(
      await Promise.all([1, 2, 3].map(() => message(orgId, h.url))),
      "deliveries",
      shareEnv,
    );
    expect([later.toSlowLane.length, later.toOverflowLane.length]).toEqual([2, 1]);
  });

  it("gives the share back by the endpoint's response time: one answering in 300 ms frees it in 300 ms", async () => {
    freezeDate();
    const orgId = uniqueId("org");
    const h = await hook();
    // In the slow lane for its failures, but it answers in 300 ms (SLOW_ATTEMPT_MS here).
    await orgSettings(env, orgId).reportAttempts(
      [1, 2, 3].map((i) => ({
        origin: endpointOf(h.url)!,
        at: Date.now() + i,
        outcome: "failed" as const,
        error: "http_status" as const,
        response_time_ms: 300,
        slow: false,
      })),
    );
    expect(await health(orgId, h.url)).toMatchObject({ lane: "slow", lane_reason: "failing" });
    const flood = () => Promise.all(Array.from({ length: 8 }, () => message(orgId, h.url)));
    // 150 ms of the share each (300 ms, two at a time): 6 fit within the 1 s timeout.
    const first = await runConsumer(await flood(), "deliveries", shareEnv);
    expect([first.toSlowLane.length, first.toOverflowLane.length]).toEqual([6, 2]);
    advance(0.3); // a hanging endpoint's attempts would still hold the whole share
    const next = await runConsumer(await flood(), "deliveries", shareEnv);
    expect([next.toSlowLane.length, next.toOverflowLane.length]).toEqual([2, 6]);
  });

  it("counts an endpoint that just started hanging at the timeout, not at its healthy average", async () => {
    const orgId = uniqueId("org");
    const h = await hook([{ delayMs: 3000 }]);
    const healthy = { origin: endpointOf(h.url)!, outcome: "succeeded" as const, error: null, slow: false };
    await orgSettings(env, orgId).reportAttempts(
      [1, 2, 3].map((i) => ({ ...healthy, at: Date.now() - 10_000 + i, response_time_ms: 50 })),
    );
    // This run's own reports are not taken: the share must not rest on them arriving first.
    const unreported = withOrgObjects(shareEnv, { reportAttempts: () => Promise.resolve() });
    const batch = await Promise.all(Array.from({ length: 6 }, () => message(orgId, h.url)));
    const run = await runConsumer(batch, "deliveries", unreported);
    await run.background;
    // 3 handed off and 3 moved, each counted at the 1 s timeout: 2 fit, not all 6 (at 300 ms).
    expect([run.toSlowLane.length, run.toOverflowLane.length]).toEqual([2, 4]);
  });

  it("the overflow lane delivers as the slow lane does: attempts run to their end, retries stay", async () => {
    const orgId = uniqueId("org");
    const h = await hook([{ status: 503 }, { delayMs: 500 }]);
    await markSlow(orgId, h.url);
    const base = await message(orgId, h.url);
    const moved = { id: uniqueId("msg"), body: { ...base.body, owner: base.id } };

    const run = await runConsumer([moved], "deliveries-overflow", shareEnv);
    expect(run.retried.get(moved.id)).toBe(60);
    advance(60);
    // 500 ms, past SLOW_ATTEMPT_MS (300 ms here): the run waits for it, as the slow lane does.
    const again = await runConsumer([{ ...moved, attempts: 2 }], "deliveries-overflow", shareEnv);
    expect(again.acked).toEqual([moved.id]);
    expect([...run.toSlowLane, ...run.toOverflowLane, ...again.toSlowLane, ...again.toOverflowLane]).toEqual([]);
    expect(await attemptsOf(base.body.delivery_id)).toMatchObject([
      { attempt: 1, outcome: "failed", message_id: base.id },
      { attempt: 2, outcome: "succeeded", message_id: base.id },
    ]);
    const requests = await h.requests();
    expect(requests.map((r) => r.text)).toEqual([1, 2].map(() => new TextDecoder().decode(base.body.body)));
  });

  it("moves every delivery to the slow lane when the org's object cannot answer about its share", async () => {
    const orgId = uniqueId("org");
    const h = await hook();
    await markSlow(orgId, h.url);
    const faulty = withOrgObjects(shareEnv, {
      admitToSlowLane: () => Promise.reject(new Error("Durable Object reset")),
    });
    const flood = await Promise.all(Array.from({ length: 5 }, () => message(orgId, h.url)));
    const run = await runConsumer(flood, "deliveries", faulty);
    expect(run.acked).toHaveLength(5);
    expect([run.toSlowLane.length, run.toOverflowLane.length]).toEqual([5, 0]);
  });
});

describe("endpoint health through the API", () => {
  it("GET /v1/webhook shows the default endpoint's health, lane included", async () => {
    const orgId = uniqueId("org");
    const key = await orgKey(orgId);
    const h = await hook([{ status: 200 }, { delayMs: 3000 }]);
    await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: h.url } });
    const fresh = (await (await call("GET", "/v1/webhook", { token: key })).json()) as {
      health: Record<string, unknown>;
    };
    expect(fresh.health).toMatchObject({
      endpoint: endpointOf(h.url),
      lane: "fast",
      attempts_24h: 0,
      success_rate_24h: null,
    });

    await runConsumer([await message(orgId, null)]);
    await runConsumer([await message(orgId, null)]);
    const res = await call("GET", "/v1/webhook", { token: key });
    expect((await res.json()) as unknown).toMatchObject({
      webhook_url: h.url,
      health: {
        endpoint: endpointOf(h.url),
        lane: "slow",
        lane_reason: "timeout",
        success_rate_24h: 0.5,
        attempts_24h: 2,
        timeouts_24h: 1,
        consecutive_failures: 1,
        last_success_at: expect.any(String),
        last_error: "timeout",
        recent: ["ok", "timeout"],
      },
    });
  });
});

describe("the org object's storage", () => {
  it("migrates an object created before schema versions: settings kept, health added", async () => {
    const orgId = uniqueId("org");
    const stub = orgSettings(env, orgId);
    const before = await stub.setWebhookUrl("https://before.example/hook");
    // Put the object back in its pre-versioning shape: only org_settings, as v1 made it.
    await runInDurableObject(stub, (_instance: OrgSettings, state) => {
      state.storage.sql.exec("DROP TABLE endpoint_health");
      state.storage.sql.exec("DROP TABLE listener_results");
      state.storage.sql.exec("DROP TABLE schema_version");
      toV1Settings(state.storage.sql);
    });
    const version = await runInDurableObject(stub, (_instance: OrgSettings, state) => {
      new OrgSettings(state, env); // what the runtime does when the object starts
      return state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version;
    });
    expect(version).toBe(SCHEMA_VERSION);
    expect(await stub.getWebhook()).toEqual(before.ok && before.settings);
    // It logged before there were shards: to the one database, bound as DB.
    expect(await stub.getLogShard()).toBe("DB");
    await stub.reportAttempts([
      {
        origin: "https://before.example",
        at: Date.now(),
        outcome: "succeeded",
        error: null,
        response_time_ms: 20,
        slow: false,
      },
    ]);
    expect(await stub.getEndpointHealth("https://before.example")).toMatchObject({ attempts_24h: 1 });
  });

  it("migrates a v2 object on: an org with settings keeps DB as its shard, one without is placed", async () => {
    const existing = orgSettings(env, uniqueId("org"));
    const before = await existing.getWebhook();
    const unset = orgSettings(env, uniqueId("org"));
    await unset.reportAttempts([]); // the object exists, its settings do not yet
    for (const stub of [existing, unset]) {
      await runInDurableObject(stub, (_instance: OrgSettings, state) => {
        toV1Settings(state.storage.sql);
        state.storage.sql.exec("DROP TABLE listener_results");
        state.storage.sql.exec("ALTER TABLE endpoint_health DROP COLUMN demoted_at");
        state.storage.sql.exec("UPDATE schema_version SET version = 2");
        new OrgSettings(state, env);
        expect(state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version).toBe(
          SCHEMA_VERSION,
        );
      });
    }
    expect(await existing.getWebhook()).toEqual(before);
    expect(await existing.getLogShard()).toBe("DB");
    expect(env.LOG_SHARDS.split(",")).toContain(await unset.getLogShard());
  });

  it("migrates a v3 object to v4: settings and health kept, listener results added", async () => {
    const stub = orgSettings(env, uniqueId("org"));
    const before = await stub.setWebhookUrl("https://v3.example/hook");
    await runInDurableObject(stub, (_instance: OrgSettings, state) => {
      state.storage.sql.exec("DROP TABLE listener_results");
      toV4Columns(state.storage.sql);
      state.storage.sql.exec("UPDATE schema_version SET version = 3");
      new OrgSettings(state, env);
      expect(state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM listener_results").one().n).toBe(0);
    });
    expect(await stub.getWebhook()).toEqual(before.ok && before.settings);
    expect(await stub.getListenerResults()).toEqual([]);
  });

  it("migrates a v4 object to v5: its previous secret still signs, endpoints keep their demotions", async () => {
    const orgId = uniqueId("org");
    const stub = orgSettings(env, orgId);
    const { signing_secret: previous } = await stub.getWebhook();
    await markSlow(orgId, "https://v4.example/hook");
    // Another endpoint went aside and came back: its demotion counts on after v5 too.
    await markSlow(orgId, "https://back.example/hook");
    const good = { origin: "https://back.example", outcome: "succeeded" as const, error: null, response_time_ms: 5 };
    await stub.reportAttempts([1, 2, 3].map((i) => ({ ...good, at: Date.now() + i, slow: false })));
    const current = "whsec_dGhlIGN1cnJlbnQgc2VjcmV0IG9mIGEgdjQgb2JqZWN0IQ==";
    const slowSince = await runInDurableObject(stub, (_instance: OrgSettings, state) => {
      toV4Columns(state.storage.sql);
      // A v4 rotation an hour ago: the old secret signs for 23 h more.
      state.storage.sql.exec(
        "UPDATE org_settings SET signing_secret = ?, previous_secret = ?, previous_secret_expires_at = ?",
        current,
        previous,
        Date.now() + 23 * 3600_000,
      );
      state.storage.sql.exec("UPDATE schema_version SET version = 4");
      new OrgSettings(state, env);
      return state.storage.sql
        .exec<{ lane: string; lane_changed_at: number; demoted_at: number }>(
          "SELECT lane, lane_changed_at, demoted_at FROM endpoint_health ORDER BY origin",
        )
        .toArray();
    });
    expect(slowSince.map((h) => h.lane)).toEqual(["fast", "slow"]);
    for (const h of slowSince) expect(h.demoted_at).toBe(h.lane_changed_at);
    expect((await stub.getDeliverySettings()).signing_secrets).toEqual([current, previous]);
  });

  it("answers which of a batch's endpoints are slow, however many it asks about", async () => {
    const orgId = uniqueId("org");
    const origins = Array.from({ length: 150 }, (_, i) => `https://h${i}.example.com`);
    await markSlow(orgId, `${origins[120]}/hook`);
    const settings = await orgSettings(env, orgId).getDeliverySettings(origins);
    expect(settings.slow_endpoints).toEqual([origins[120]]);
  });

  it("keeps at most MAX_ENDPOINTS endpoints, forgetting the least recently used", async () => {
    const stub = orgSettings(env, uniqueId("org"));
    const report = (i: number) => ({
      origin: `https://h${i}.example`,
      at: 1_000_000 + i,
      outcome: "succeeded" as const,
      error: null,
      response_time_ms: 5,
      slow: false,
    });
    await stub.reportAttempts(Array.from({ length: 1001 }, (_, i) => report(i)));
    expect(await stub.getEndpointHealth("https://h0.example")).toBeNull();
    expect(await stub.getEndpointHealth("https://h1.example")).not.toBeNull();
    expect(await stub.getEndpointHealth("https://h1000.example")).not.toBeNull();
    // A new endpoint whose first attempt is still hanging is the most recent, not the least.
    await stub.reportAttempts([{ ...report(2000), outcome: "in_flight", at: 2_000_000, slow: true }]);
    expect(await stub.getEndpointHealth("https://h2000.example")).toMatchObject({ lane: "slow" });
    expect(await stub.getEndpointHealth("https://h1.example")).toBeNull();
  });

  it("never forgets the default's endpoint, however many per-event endpoints come after it", async () => {
    const stub = orgSettings(env, uniqueId("org"));
    expect(await stub.setWebhookUrl("https://h0.example/hook")).toMatchObject({ ok: true });
    const report = (i: number) => ({
      origin: `https://h${i}.example`,
      at: 1_000_000 + i,
      outcome: i === 0 ? ("failed" as const) : ("succeeded" as const),
      error: i === 0 ? ("timeout" as const) : null,
      response_time_ms: i === 0 ? 10_000 : 5,
      slow: i === 0,
    });
    await stub.reportAttempts([report(0)]); // the default hung: slow lane
    await stub.reportAttempts(Array.from({ length: 1000 }, (_, i) => report(i + 1)));
    expect(await stub.getEndpointHealth("https://h0.example")).toMatchObject({ lane: "slow" });
    expect(await stub.getEndpointHealth("https://h1.example")).toBeNull(); // the least recent other
    expect((await stub.getDeliverySettings(["https://h0.example"])).slow_endpoints).toEqual(["https://h0.example"]);
  });
});

/** Drops what schemas v5 and v6 added, as a v4 object has none of it. */
function toV4Columns(sql: SqlStorage): void {
  sql.exec("DROP TABLE redeliver_claims");
  sql.exec("ALTER TABLE org_settings DROP COLUMN previous_secrets");
  sql.exec("ALTER TABLE endpoint_health DROP COLUMN demoted_at");
}

/**
 * Rebuilds org_settings as schema v1 made it (before the log shard column), keeping its
 * row; drops v6's table (a v1 object has none, and the tests drop the others themselves).
 */
function toV1Settings(sql: SqlStorage): void {
  sql.exec("DROP TABLE redeliver_claims");
  sql.exec(`CREATE TABLE v1_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    webhook_url TEXT,
    signing_secret TEXT NOT NULL,
    secret_rotated_at INTEGER,
    previous_secret TEXT,
    previous_secret_expires_at INTEGER
  )`);
  sql.exec(`INSERT INTO v1_settings SELECT id, webhook_url, signing_secret, secret_rotated_at, previous_secret,
    previous_secret_expires_at FROM org_settings`);
  sql.exec("DROP TABLE org_settings");
  sql.exec("ALTER TABLE v1_settings RENAME TO org_settings");
}
