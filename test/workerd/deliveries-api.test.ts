import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { deliveryIdFor } from "../../src/delivery/message";
import { OrgSettings, orgSettings } from "../../src/org/org-settings";
import { insertAttempts } from "../../src/store/attempts";
import {
  attemptRecord,
  call,
  hmacHex,
  jobEvent,
  logDbOf,
  messageFor,
  orgKey,
  receiver,
  runConsumer,
  uniqueId,
  watchQueue,
} from "./helpers";

afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * Deliveries, redeliver, the test event and secret rotation, through the HTTP API,
 * with real queue runs where the API enqueues (redeliver, test event).
 */

interface Delivery {
  id: string;
  job_id: string;
  event_type: string;
  status: "pending" | "delivered" | "failed";
  attempt_count: number;
  next_attempt_at: string | null;
  last_error: string | null;
  webhook_url: string | null;
  created_at: string;
  last_attempt_at: string;
}

async function newOrg() {
  const orgId = uniqueId("org");
  const key = await orgKey(orgId);
  const settings = (await (await call("GET", "/v1/webhook", { token: key })).json()) as { signing_secret: string };
  return { orgId, key, secret: settings.signing_secret };
}

async function getJson<T>(path: string, token: string, status = 200): Promise<T> {
  const res = await call("GET", path, { token });
  expect(res.status, path).toBe(status);
  return (await res.json()) as T;
}

/** Runs `f` with the clock moved by `seconds` (Date only: timers and I/O stay real). */
/** Claims a redeliver of `deliveryId` after attempt 1, as the API does first; its token (it must be claimed). */
async function claimedToken(org: ReturnType<typeof orgSettings>, deliveryId: string): Promise<string> {
  const claim = await org.claimRedeliver(deliveryId, 1);
  if (claim.status !== "claimed") throw new Error(`not claimed: ${claim.status}`);
  return claim.token;
}

async function atOffset<T>(seconds: number, f: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  try {
    vi.setSystemTime(Date.now() + seconds * 1000);
    return await f();
  } finally {
    vi.useRealTimers();
  }
}

/** Asks for a redeliver, as the console's button does. */
function redeliver(deliveryId: string, token: string): Promise<Response> {
  return call("POST", `/v1/deliveries/${deliveryId}/redeliver`, { token });
}

/** Waits until the delivery (made through the real queue) is as `done` says. */
async function deliveryWhen(deliveryId: string, token: string, done: (d: Delivery) => boolean): Promise<void> {
  await vi.waitUntil(async () => done(await getJson<Delivery>(`/v1/deliveries/${deliveryId}`, token)), {
    timeout: 10_000,
    interval: 50,
  });
}

/** Runs a delivery's first attempts through the consumer (one run per attempt). */
async function consume(message: Awaited<ReturnType<typeof messageFor>>, runs = 1) {
  const id = uniqueId("msg");
  for (let i = 1; i <= runs; i++) await runConsumer([{ id, body: message, attempts: i }]);
}

describe("GET /v1/deliveries", () => {
  it("shows each delivery's status: delivered, pending with its next attempt, failed", async () => {
    const { orgId, key } = await newOrg();
    const ok = receiver(uniqueId("ok"));
    const down = receiver(uniqueId("down"));
    await down.script({ replies: [{ status: 500 }] });
    const delivered = await messageFor(jobEvent(orgId, uniqueId("job")), ok.url);
    const pending = await messageFor(jobEvent(orgId, uniqueId("job")), down.url);
    const failed = await messageFor(jobEvent(orgId, uniqueId("job")), null); // no URL anywhere
    await consume(delivered);
    await consume(pending);
    await consume(failed);

    const { data, next_cursor } = await getJson<{ data: Delivery[]; next_cursor: string | null }>(
      "/v1/deliveries",
      key,
    );
    expect(next_cursor).toBeNull();
    expect(data.map((d) => [d.id, d.status])).toEqual([
      [failed.delivery_id, "failed"],
      [pending.delivery_id, "pending"],
      [delivered.delivery_id, "delivered"],
    ]);
    expect(data[0]).toMatchObject({
      attempt_count: 1,
      last_error: "no_webhook_url",
      next_attempt_at: null,
      webhook_url: null,
    });
    expect(Date.parse(data[1]!.next_attempt_at!) - Date.parse(data[1]!.last_attempt_at)).toBeGreaterThanOrEqual(60_000);
    expect(data[2]).toMatchObject({
      job_id: delivered.job_id,
      event_type: "job.completed",
      last_error: null,
      webhook_url: ok.url,
    });

    const page1 = await getJson<{ data: Delivery[]; next_cursor: string }>("/v1/deliveries?limit=2", key);
    const page2 = await getJson<{ data: Delivery[]; next_cursor: string | null }>(
      `/v1/deliveries?limit=2&cursor=${page1.next_cursor}`,
      key,
    );
    expect([...page1.data, ...page2.data].map((d) => d.id)).toEqual(data.map((d) => d.id));
    expect(page2.next_cursor).toBeNull();
    expect(
      (await getJson<{ data: Delivery[] }>(`/v1/deliveries?job_id=${pending.job_id}`, key)).data.map((d) => d.id),
    ).toEqual([pending.delivery_id]);
  });

  it("shows one delivery with its payload and its attempts, oldest first", async () => {
    const { orgId, key } = await newOrg();
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    try {
      const flaky = receiver(uniqueId("flaky"));
      await flaky.script({ replies: [{ status: 502 }, { status: 200 }] });
      const event = jobEvent(orgId, uniqueId("job"));
      const message = await messageFor(event, flaky.url);
      const id = uniqueId("msg");
      await runConsumer([{ id, body: message }]);
      vi.setSystemTime(Date.now() + 61_000);
      await runConsumer([{ id, body: message, attempts: 2 }]);
    } finally {
      vi.useRealTimers();
    }
    const [listed] = (await getJson<{ data: Delivery[] }>("/v1/deliveries", key)).data;
    const detail = await getJson<
      Delivery & { payload: unknown; attempts: Array<{ attempt: number; status_code: number }> }
    >(`/v1/deliveries/${listed!.id}`, key);
    expect(detail).toMatchObject({ id: listed!.id, status: "delivered", attempt_count: 2, attempts_truncated: false });
    expect(detail.payload).toMatchObject({ type: "job.completed", data: { job_id: listed!.job_id, org_id: orgId } });
    expect(detail.attempts.map((a) => [a.attempt, a.status_code])).toEqual([
      [1, 502],
      [2, 200],
    ]);
  });

  it("filters by status, event type, delivery id and a time range, and pages within the filter", async () => {
    const { orgId, key } = await newOrg();
    const ok = receiver(uniqueId("ok"));
    const down = receiver(uniqueId("down"));
    await down.script({ replies: [{ status: 500 }] });
    const delivered = await messageFor(jobEvent(orgId, uniqueId("job")), ok.url);
    const failedEvent = {
      type: "job.failed" as const,
      data: { job_id: uniqueId("job"), org_id: orgId, status: "failed" },
    };
    const failedType = await messageFor(failedEvent, ok.url);
    const pending = await messageFor(jobEvent(orgId, uniqueId("job")), down.url);
    const failed = await messageFor(jobEvent(orgId, uniqueId("job")), null);
    await consume(delivered);
    await consume(failedType);
    const between = new Date(Date.now() + 1).toISOString();
    await new Promise((r) => setTimeout(r, 5));
    await consume(pending);
    await consume(failed);

    const ids = async (query: string) =>
      (await getJson<{ data: Delivery[] }>(`/v1/deliveries?${query}`, key)).data.map((d) => d.id);
    expect(await ids("status=failed")).toEqual([failed.delivery_id]);
    expect(await ids("status=pending")).toEqual([pending.delivery_id]);
    expect(await ids("status=delivered")).toEqual([failedType.delivery_id, delivered.delivery_id]);
    expect(await ids("event_type=job.failed")).toEqual([failedType.delivery_id]);
    expect(await ids("status=delivered&event_type=job.completed")).toEqual([delivered.delivery_id]);
    expect(await ids(`delivery_id=${pending.delivery_id}`)).toEqual([pending.delivery_id]);
    expect(await ids(`since=${between}`)).toEqual([failed.delivery_id, pending.delivery_id]);
    expect(await ids(`until=${between}`)).toEqual([failedType.delivery_id, delivered.delivery_id]);
    // A page of a filter holds only matching rows, and its cursor keeps the filter's order.
    const first = await getJson<{ data: Delivery[]; next_cursor: string }>(
      "/v1/deliveries?status=delivered&limit=1",
      key,
    );
    const second = await getJson<{ data: Delivery[]; next_cursor: string | null }>(
      `/v1/deliveries?status=delivered&limit=1&cursor=${first.next_cursor}`,
      key,
    );
    expect([...first.data, ...second.data].map((d) => d.id)).toEqual([failedType.delivery_id, delivered.delivery_id]);
    expect(second.next_cursor).toBeNull();
  });

  it.each([
    ["status=lost", "status"],
    ["event_type=job.started", "event_type"],
    ["since=yesterday", "since"],
    ["since=2026-03-19T10:00:00Z&until=2026-03-19T09:00:00Z", "until"],
    ["stauts=failed", ""],
  ])("answers 400 to ?%s, naming %s", async (query, field) => {
    const { key } = await newOrg();
    const res = await call("GET", `/v1/deliveries?${query}`, { token: key });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: Array<{ path: string[]; keys?: string[] }> } };
    expect(body.error.code).toBe("invalid_request");
    if (field) expect(body.error.details[0]!.path).toEqual([field]);
    else expect(body.error.details[0]!.keys).toEqual(["stauts"]);
  });

  it("answers 404 for an unknown delivery and 400 for something that is not an id", async () => {
    const { key } = await newOrg();
    expect((await call("GET", `/v1/deliveries/dlv_${"0".repeat(32)}`, { token: key })).status).toBe(404);
    expect((await call("GET", "/v1/deliveries/nope", { token: key })).status).toBe(400);
  });
});

/**
 * A delivery that failed for good to an endpoint that answers 200 from now on: what a
 * customer redelivers once the endpoint is fixed. With no retries configured, one
 * failed attempt ends the delivery as failed.
 */
async function failedToFixedEndpoint(name: string) {
  const { orgId, key } = await newOrg();
  const hook = receiver(uniqueId(name));
  await hook.script({ replies: [{ status: 500 }, { status: 200 }] });
  const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
  await runConsumer([{ id: uniqueId("msg"), body: message }], "deliveries", { ...env, RETRY_DELAYS_SECONDS: "" });
  return { key, hook, message };
}

describe("POST /v1/deliveries/{id}/redeliver", () => {
  it("makes one more attempt of a failed delivery: numbering continues, same bytes, current secret", async () => {
    const { key, hook, message } = await failedToFixedEndpoint("fixed");
    expect((await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key)).status).toBe("failed");

    // The customer rotates the secret after fixing their endpoint, then redelivers.
    const rotated = (await (await call("POST", "/v1/webhook/rotate-secret", { token: key })).json()) as {
      signing_secret: string;
    };
    const res = await redeliver(message.delivery_id, key);
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ delivery_id: message.delivery_id, status: "queued" });

    await deliveryWhen(message.delivery_id, key, (d) => d.status === "delivered");
    const detail = await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key);
    expect(detail).toMatchObject({ attempt_count: 2, last_error: null, next_attempt_at: null });
    const [first, second] = await hook.requests();
    expect(second!.headers["x-zupertry-attempt"]).toBe("2");
    expect(second!.body).toBe(first!.body);
    expect(second!.headers["x-zupertry-signature"]).toBe(await hmacHex(rotated.signing_secret, second!.text));
  });

  it("resends a pending delivery now; once it succeeds, the scheduled retry sends nothing", async () => {
    const { orgId, key } = await newOrg();
    const hook = receiver(uniqueId("fixed"));
    await hook.script({ replies: [{ status: 500 }, { status: 200 }] });
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
    const owner = uniqueId("msg");
    await runConsumer([{ id: owner, body: message }]); // attempt 1 failed: attempt 2 due in 60 s
    const before = await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key);
    expect(before).toMatchObject({ status: "pending", attempt_count: 1 });

    const res = await redeliver(message.delivery_id, key);
    expect(res.status).toBe(202);
    await deliveryWhen(message.delivery_id, key, (d) => d.status === "delivered");
    const after = await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key);
    expect(after).toMatchObject({ attempt_count: 2, next_attempt_at: null });
    expect(Date.parse(after.last_attempt_at)).toBeLessThan(Date.parse(before.next_attempt_at!));

    // The scheduled retry's message comes back when due: it no longer owns the delivery.
    const run = await atOffset(61, () => runConsumer([{ id: owner, body: message, attempts: 2 }]));
    expect(run.acked).toEqual([owner]);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
    expect((await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key)).attempt_count).toBe(2);
  });

  it("answers 409 for a delivery past the log retention, which is about to be deleted", async () => {
    const { key, hook, message } = await failedToFixedEndpoint("expiring");
    const res = await atOffset(30 * 86_400 + 60, () => redeliver(message.delivery_id, key));
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ code: "conflict", message: expect.stringMatching(/30-day log retention/) });
    // A day earlier it is redelivered as usual.
    expect((await atOffset(29 * 86_400, () => redeliver(message.delivery_id, key))).status).toBe(202);
    await deliveryWhen(message.delivery_id, key, (d) => d.status === "delivered");
    expect(await hook.requests()).toHaveLength(2);
  });

  it("answers 409 once the next attempt is due: the schedule is making it", async () => {
    const { orgId, key } = await newOrg();
    const down = receiver(uniqueId("down"));
    await down.script({ replies: [{ status: 500 }] });
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), down.url);
    await runConsumer([{ id: uniqueId("msg"), body: message }]); // attempt 2 due in 60 s
    // 3 s before it: within the attempt timeout (1 s here) + 5 s.
    const res = await atOffset(57, () => redeliver(message.delivery_id, key));
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ code: "conflict", message: expect.stringMatching(/is due now \(20/) });
    expect(await down.requests()).toHaveLength(1);
  });

  it("keeps a delivery delivered when a redeliver after its success fails: the receiver had it", async () => {
    const { orgId, key } = await newOrg();
    const hook = receiver(uniqueId("then-down"));
    await hook.script({ replies: [{ status: 200 }, { status: 500 }] });
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
    await runConsumer([{ id: uniqueId("msg"), body: message }]);
    expect((await redeliver(message.delivery_id, key)).status).toBe(202);
    await deliveryWhen(message.delivery_id, key, (d) => d.attempt_count === 2);
    expect((await hook.requests()).map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
    const delivery = await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key);
    expect(delivery).toMatchObject({ status: "delivered", attempt_count: 2, next_attempt_at: null });
    const listed = await getJson<{ data: Delivery[] }>(`/v1/deliveries?status=delivered&job_id=${message.job_id}`, key);
    expect(listed.data.map((d) => d.id)).toEqual([message.delivery_id]);
  });

  it("drops a resend queued just before the next attempt came due: the schedule makes it, once", async () => {
    const { orgId } = await newOrg();
    const down = receiver(uniqueId("down"));
    await down.script({ replies: [{ status: 500 }] });
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), down.url);
    await runConsumer([{ id: uniqueId("msg"), body: message }]); // attempt 2 due in 60 s
    // The resend was queued in time, but its run comes 3 s before attempt 2 is due.
    const resend = { id: uniqueId("msg"), body: { ...message, redeliver_after: 1 } };
    const run = await atOffset(57, () => runConsumer([resend]));
    expect(run.acked).toEqual([resend.id]);
    expect(await down.requests()).toHaveLength(1);
  });

  it("makes one attempt for two redelivers of the same state (a double click)", async () => {
    const { key, hook, message } = await failedToFixedEndpoint("twice");
    const queue = watchQueue();
    const [first, second] = await Promise.all([
      redeliver(message.delivery_id, key),
      redeliver(message.delivery_id, key),
    ]);
    expect([first.status, second.status]).toEqual([202, 202]);
    expect(queue.messages().map((m) => m.delivery_id)).toEqual([message.delivery_id]); // one message, not two
    await deliveryWhen(message.delivery_id, key, (d) => d.status === "delivered");
    await new Promise((r) => setTimeout(r, 1500)); // a second message would have been made by now
    expect(await hook.requests()).toHaveLength(2);
    expect((await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key)).attempt_count).toBe(2);
  });

  it("holds a click that finds the same state being queued until the first is queued or given back", async () => {
    const org = orgSettings(env, uniqueId("org"));
    const [queued, givenBack] = [uniqueId("dlv"), uniqueId("dlv")];
    const first = await claimedToken(org, queued);
    const second = await claimedToken(org, givenBack);

    const waitingOnQueued = org.claimRedeliver(queued, 1);
    const waitingOnGivenBack = org.claimRedeliver(givenBack, 1);
    await org.confirmRedeliver(queued, 1, first);
    await org.releaseRedeliver(givenBack, 1, second);
    // Queued: the second click queues nothing. Given back: the second click makes it.
    expect(await waitingOnQueued).toEqual({ status: "queued" });
    expect(await waitingOnGivenBack).toMatchObject({ status: "claimed" });
    // Another state of the same delivery (after attempt 2) is a redeliver of its own.
    expect(await org.claimRedeliver(queued, 2)).toMatchObject({ status: "claimed" });
  });

  it("remembers a queued redeliver for 10 minutes, also when the org's object restarts meanwhile", async () => {
    const org = orgSettings(env, uniqueId("org"));
    const id = uniqueId("dlv");
    await org.confirmRedeliver(id, 1, await claimedToken(org, id));
    // The object leaves memory after 10 s without a call; the next call starts it afresh.
    const afterRestart = await runInDurableObject(org, (_instance: OrgSettings, state) =>
      new OrgSettings(state, env).claimRedeliver(id, 1),
    );
    expect(afterRestart).toEqual({ status: "queued" });
    expect(await atOffset<unknown>(9 * 60, () => org.claimRedeliver(id, 1))).toEqual({ status: "queued" });
    expect(await atOffset<unknown>(10 * 60 + 1, () => org.claimRedeliver(id, 1))).toMatchObject({ status: "claimed" });
  });

  it("records a redeliver confirmed after the org object restarted between claim and queue write", async () => {
    const org = orgSettings(env, uniqueId("org"));
    const id = uniqueId("dlv");
    const token = await claimedToken(org, id);
    const again = await runInDurableObject(org, async (_instance: OrgSettings, state) => {
      const restarted = new OrgSettings(state, env);
      restarted.confirmRedeliver(id, 1, token);
      return restarted.claimRedeliver(id, 1);
    });
    expect(again).toEqual({ status: "queued" });
  });

  it("lets only the request that holds a claim confirm it or give it back", async () => {
    const org = orgSettings(env, uniqueId("org"));
    const id = uniqueId("dlv");
    const late = await claimedToken(org, id);
    await org.releaseRedeliver(id, 1, late);
    const current = await claimedToken(org, id);
    // The first request, late, gives back and confirms what is no longer its claim: no effect.
    await org.releaseRedeliver(id, 1, late);
    await org.confirmRedeliver(id, 1, late);
    const third = org.claimRedeliver(id, 1);
    const outcome = await Promise.race([third, new Promise((r) => setTimeout(() => r("waiting"), 200))]);
    expect(outcome).toBe("waiting"); // the current claim still holds, not yet queued
    await org.confirmRedeliver(id, 1, current);
    expect(await third).toEqual({ status: "queued" });
  });

  it("gives the claim of a redeliver that could not be queued back: trying again makes it", async () => {
    const { key, hook, message } = await failedToFixedEndpoint("retried");
    vi.spyOn(env.DELIVERIES, "send").mockRejectedValueOnce(new Error("Queue send failed: simulated outage"));
    const failed = await redeliver(message.delivery_id, key);
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ error: { code: "internal", message: "internal error" } });

    expect((await redeliver(message.delivery_id, key)).status).toBe(202);
    await deliveryWhen(message.delivery_id, key, (d) => d.status === "delivered");
    expect(await hook.requests()).toHaveLength(2);
  });

  it("a resend that fails moves the schedule to it: the old retry is dropped, none is made twice", async () => {
    const { orgId, key } = await newOrg();
    const down = receiver(uniqueId("down"));
    await down.script({ replies: [{ status: 500 }] });
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), down.url);
    const owner = uniqueId("msg");
    await runConsumer([{ id: owner, body: message }]);

    expect((await redeliver(message.delivery_id, key)).status).toBe(202);
    await deliveryWhen(message.delivery_id, key, (d) => d.attempt_count === 2);
    const delivery = await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key);
    // Attempt 2 was the resend; attempt 3, the last, follows it after the schedule's 300 s.
    expect(delivery).toMatchObject({ status: "pending", last_error: "http_status" });
    expect(Date.parse(delivery.next_attempt_at!) - Date.parse(delivery.last_attempt_at)).toBeGreaterThanOrEqual(
      300_000,
    );
    const run = await atOffset(61, () => runConsumer([{ id: owner, body: message, attempts: 2 }]));
    expect(run.acked).toEqual([owner]);
    expect(await down.requests()).toHaveLength(2);
  });

  it("lets a stalled delivery (overdue > 5 min) be redelivered, which takes its schedule over", async () => {
    const { orgId, key } = await newOrg();
    const down = receiver(uniqueId("down"));
    await down.script({ replies: [{ status: 500 }] });
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), down.url);
    // Ten minutes ago: attempt 1 failed, attempt 2 was due 60 s later... and its message is lost.
    await atOffset(-10 * 60, () => consume(message));
    expect((await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key)).status).toBe("pending");
    expect((await redeliver(message.delivery_id, key)).status).toBe(202);
    await deliveryWhen(message.delivery_id, key, (d) => d.attempt_count === 2);
    // Attempt 2 failed too; the schedule goes on: attempt 3 in 300 s.
    const delivery = await getJson<Delivery>(`/v1/deliveries/${message.delivery_id}`, key);
    expect(delivery).toMatchObject({ status: "pending", attempt_count: 2 });
    expect(Date.parse(delivery.next_attempt_at!) - Date.now()).toBeGreaterThan(290_000);
  });

  it("answers 404 for a delivery that does not exist", async () => {
    const { key } = await newOrg();
    const res = await redeliver(`dlv_${"a".repeat(32)}`, key);
    expect(res.status).toBe(404);
  });
});

describe("POST /v1/webhook/test", () => {
  it("sends a signed sample job.completed that the seed's verification accepts", async () => {
    const { key, secret } = await newOrg();
    const hook = receiver(uniqueId("test-event"));
    await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: hook.url } });
    const res = await call("POST", "/v1/webhook/test", { token: key });
    expect(res.status).toBe(202);
    const queued = (await res.json()) as { delivery_id: string; job_id: string };
    expect(queued.job_id).toMatch(/^job_test_/);

    await vi.waitUntil(async () => (await hook.requests()).length === 1, { timeout: 10_000, interval: 50 });
    const [request] = await hook.requests();
    // The payload shape of the customer doc, key for key.
    expect(JSON.parse(request!.text)).toEqual({
      type: "job.completed",
      data: {
        job_id: queued.job_id,
        workspace_id: expect.any(String),
        org_id: expect.any(String),
        status: "completed",
        output_url: expect.stringMatching(/^https:\/\//),
        credits_consumed: 0,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        completed_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      },
    });
    expect(request!.headers["x-zupertry-signature"]).toBe(await hmacHex(secret, request!.text));
    expect(request!.headers["x-zupertry-delivery"]).toBe(queued.delivery_id);
    await vi.waitUntil(
      async () =>
        (
          await call("GET", `/v1/webhook-logs?job_id=${queued.job_id}`, { token: key }).then(
            (r) => r.json() as Promise<{ data: unknown[] }>,
          )
        ).data.length === 1,
      { timeout: 5_000 },
    );
  });

  it("sends a job.failed shaped as the docs show it when asked", async () => {
    const { key, secret } = await newOrg();
    const hook = receiver(uniqueId("test-failed"));
    await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: hook.url } });
    const res = await call("POST", "/v1/webhook/test", { token: key, body: { event_type: "job.failed" } });
    expect(res.status).toBe(202);
    const queued = (await res.json()) as { delivery_id: string; job_id: string };
    await vi.waitUntil(async () => (await hook.requests()).length === 1, { timeout: 10_000, interval: 50 });
    const [request] = await hook.requests();
    expect(JSON.parse(request!.text)).toEqual({
      type: "job.failed",
      data: {
        job_id: queued.job_id,
        org_id: expect.any(String),
        status: "failed",
        error: expect.any(String),
        credits_consumed: 0,
        created_at: expect.any(String),
      },
    });
    expect(request!.headers["x-zupertry-event"]).toBe("job.failed");
    expect(request!.headers["x-zupertry-signature"]).toBe(await hmacHex(secret, request!.text));
    const refused = await call("POST", "/v1/webhook/test", { token: key, body: { event_type: "job.started" } });
    expect(refused.status).toBe(400);
  });

  it("goes to the URL given instead of the org default", async () => {
    const { key } = await newOrg();
    const orgDefault = receiver(uniqueId("test-default"));
    const hook = receiver(uniqueId("test-url"));
    expect((await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: orgDefault.url } })).status).toBe(200);
    const res = await call("POST", "/v1/webhook/test", { token: key, body: { webhook_url: hook.url } });
    expect(res.status).toBe(202);
    await vi.waitUntil(async () => (await hook.requests()).length === 1, { timeout: 10_000, interval: 50 });
    expect(await orgDefault.requests()).toEqual([]);
  });

  it("reads its body under any spelling of the JSON media type, and refuses the ones it would not read", async () => {
    const { key } = await newOrg();
    const orgDefault = receiver(uniqueId("test-default"));
    const hook = receiver(uniqueId("test-url"));
    expect((await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: orgDefault.url } })).status).toBe(200);
    const body = { webhook_url: hook.url, event_type: "job.failed" };
    const res = await call("POST", "/v1/webhook/test", {
      token: key,
      body,
      headers: { "Content-Type": "Application/JSON ; charset=UTF-8" },
    });
    expect(res.status).toBe(202);
    await vi.waitUntil(async () => (await hook.requests()).length === 1, { timeout: 10_000, interval: 50 });
    expect(JSON.parse((await hook.requests())[0]!.text)).toMatchObject({ type: "job.failed" });
    // A type whose body would reach the route as `{}` (the sample to the default URL): 415, nothing sent.
    const odd = await call("POST", "/v1/webhook/test", {
      token: key,
      body,
      headers: { "Content-Type": "application/vnd.a+b+json" },
    });
    expect(odd.status).toBe(415);
    expect(await orgDefault.requests()).toEqual([]);
  });

  it("takes webhook_url null as none given: the org default", async () => {
    const { key } = await newOrg();
    const orgDefault = receiver(uniqueId("test-default"));
    expect((await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: orgDefault.url } })).status).toBe(200);
    expect((await call("POST", "/v1/webhook/test", { token: key, body: { webhook_url: null } })).status).toBe(202);
    await vi.waitUntil(async () => (await orgDefault.requests()).length === 1, { timeout: 10_000, interval: 50 });
  });

  it.each([
    ["no URL and no org default", undefined, 400, "no_webhook_url"],
    ["a private URL", { webhook_url: "https://10.0.0.8/hook" }, 400, "invalid_request"],
    ["an unknown field", { url: "https://your-app.com/" }, 400, "invalid_request"],
  ])("refuses %s", async (_name, body, status, code) => {
    const { key } = await newOrg();
    const res = await call("POST", "/v1/webhook/test", { token: key, body });
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: { code } });
  });
});

describe("POST /v1/webhook/rotate-secret", () => {
  it("switches X-Zupertry-Signature at once and signs webhook-signature with both secrets", async () => {
    const { orgId, key, secret: before } = await newOrg();
    const hook = receiver(uniqueId("rotation"));
    const res = await call("POST", "/v1/webhook/rotate-secret", { token: key });
    expect(res.status).toBe(200);
    const after = (await res.json()) as { signing_secret: string; secret_rotated_at: string };
    expect(after.signing_secret).not.toBe(before);
    expect(Date.parse(after.secret_rotated_at)).toBeGreaterThan(Date.now() - 60_000);
    expect((await getJson<{ signing_secret: string }>("/v1/webhook", key)).signing_secret).toBe(after.signing_secret);

    await consume(await messageFor(jobEvent(orgId, uniqueId("job")), hook.url));
    const [request] = await hook.requests();
    expect(request!.headers["x-zupertry-signature"]).toBe(await hmacHex(after.signing_secret, request!.text));
    expect(request!.headers["x-zupertry-signature"]).not.toBe(await hmacHex(before, request!.text));
    for (const secret of [after.signing_secret, before]) {
      expect(() => new Webhook(secret).verify(request!.text, request!.headers)).not.toThrow();
    }
  });
});

describe("two rotations in a day (a double click)", () => {
  it("keep both replaced secrets signing webhook-signature: no receiver is cut off", async () => {
    const { orgId, key, secret: first } = await newOrg();
    const rotate = async () =>
      ((await (await call("POST", "/v1/webhook/rotate-secret", { token: key })).json()) as { signing_secret: string })
        .signing_secret;
    const second = await rotate();
    const third = await rotate();
    const hook = receiver(uniqueId("rotations"));
    await consume(await messageFor(jobEvent(orgId, uniqueId("job")), hook.url));
    const [request] = await hook.requests();
    expect(request!.headers["x-zupertry-signature"]).toBe(await hmacHex(third, request!.text));
    for (const secret of [third, second, first]) {
      expect(() => new Webhook(secret).verify(request!.text, request!.headers)).not.toThrow();
    }
  });
});

describe("reading what is already stored", () => {
  it("answers for an event stored before the nesting limit, however deep it is", async () => {
    const { orgId, key } = await newOrg();
    const jobId = uniqueId("job");
    const deliveryId = await deliveryIdFor(orgId, "job.completed", jobId);
    const levels = 10_000;
    const deep = `${'{"d":'.repeat(levels)}1${"}".repeat(levels)}`;
    const body = `{"type":"job.completed","data":{"job_id":"${jobId}","org_id":"${orgId}","deep":${deep}}}`;
    await insertAttempts(await logDbOf(orgId), [
      attemptRecord({ delivery_id: deliveryId, org_id: orgId, job_id: jobId, request_body: body }),
    ]);
    const delivery = await call("GET", `/v1/deliveries/${deliveryId}`, { token: key });
    expect(delivery.status).toBe(200);
    const text = await delivery.text();
    expect(text.endsWith(`"payload":${body}}`)).toBe(true);
    expect(text).toContain(`"id":"${deliveryId}"`);
    const attempt = await call("GET", `/v1/webhook-logs/att_${deliveryId.slice(4)}_1`, { token: key });
    expect(attempt.status).toBe(200);
    expect(((await attempt.json()) as { request: { body: string } }).request.body).toBe(body);
    expect((await call("GET", "/v1/deliveries", { token: key })).status).toBe(200);
  });

  it("lists the newest 1,000 attempts of a delivery redelivered past that; the log has the rest", async () => {
    const orgId = uniqueId("org");
    const key = await orgKey(orgId);
    const jobId = uniqueId("job");
    const deliveryId = await deliveryIdFor(orgId, "job.completed", jobId);
    const start = Date.now() - 2_000_000;
    await insertAttempts(
      await logDbOf(orgId),
      Array.from({ length: 1001 }, (_, i) =>
        attemptRecord({
          delivery_id: deliveryId,
          org_id: orgId,
          job_id: jobId,
          attempt: i + 1,
          attempted_at: start + i * 1000,
          ...(i === 0 ? {} : { request_body: null, url_from_event: null }),
          ...(i === 1000 ? {} : { outcome: "failed", status_code: 500, error: "http_status" }),
        }),
      ),
    );
    const delivery = await getJson<Delivery & { attempts: Array<{ attempt: number }>; attempts_truncated: boolean }>(
      `/v1/deliveries/${deliveryId}`,
      key,
    );
    expect(delivery).toMatchObject({ status: "delivered", attempt_count: 1001, attempts_truncated: true });
    expect(delivery.attempts).toHaveLength(1000);
    expect([delivery.attempts[0]!.attempt, delivery.attempts.at(-1)!.attempt]).toEqual([2, 1001]);

    const log = await getJson<{ data: unknown[] }>(`/v1/webhook-logs?delivery_id=${deliveryId}&limit=100`, key);
    expect(log.data).toHaveLength(100);
  });
});
