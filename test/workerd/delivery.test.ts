import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it, vi } from "vitest";
import type { DeliveryMessage } from "../../src/delivery/message";
import { orgSettings } from "../../src/org/org-settings";
import { insertAttempts, readDeliveryStates } from "../../src/store/attempts";
import {
  attemptRecord,
  attemptsOf,
  countingDb,
  fakeDate,
  hmacHex,
  jobEvent,
  logDbOf,
  messageFor,
  receiver,
  rowsPerStatement,
  runConsumer,
  uniqueId,
  watchOrgCalls,
} from "./helpers";

/**
 * The consumer, run on messages as the queue delivers them. Time is moved with a fake
 * `Date` (the Worker runs in the test's isolate), so the 60 s and 300 s of the seed's
 * schedule are the real configured delays.
 */

const advance = fakeDate();

/** A fresh org, receiver endpoint and message for one test. */
async function setup(
  options: { replies?: Parameters<ReturnType<typeof receiver>["script"]>[0]["replies"]; perEventUrl?: boolean } = {},
) {
  const orgId = uniqueId("org");
  const hook = receiver(uniqueId("hook"));
  if (options.replies) await hook.script({ replies: options.replies });
  const event = jobEvent(orgId, uniqueId("job"));
  const message = {
    id: uniqueId("msg"),
    body: await messageFor(event, options.perEventUrl === false ? null : hook.url),
  };
  return { orgId, hook, event, message, secret: (await orgSettings(env, orgId).getWebhook()).signing_secret };
}

describe("a delivery", () => {
  it("is a signed POST of the exact body, which the seed's verification accepts", async () => {
    const { hook, event, message, secret } = await setup();
    const run = await runConsumer([message]);
    expect(run.acked).toEqual([message.id]);

    const [request] = await hook.requests();
    expect(request!.method).toBe("POST");
    expect(request!.text).toBe(JSON.stringify({ type: "job.completed", data: event.data }));
    expect(request!.headers).toMatchObject({
      "content-type": "application/json",
      "user-agent": "Zupertry-Webhooks/1",
      "x-zupertry-event": "job.completed",
      "x-zupertry-delivery": message.body.delivery_id,
      "x-zupertry-attempt": "1",
      "webhook-id": message.body.delivery_id,
    });
    // The seed: HMAC-SHA256 of the raw body, keyed with the secret string, lowercase hex.
    expect(request!.headers["x-zupertry-signature"]).toBe(await hmacHex(secret, request!.text));
    expect(new Webhook(secret).verify(request!.text, request!.headers)).toEqual(JSON.parse(request!.text));

    const [attempt] = await attemptsOf(message.body.delivery_id);
    expect(attempt).toMatchObject({
      attempt: 1,
      status_code: 200,
      outcome: "succeeded",
      error: null,
      next_attempt_at: null,
      url: hook.url,
    });
    expect(attempt!.request_body).toBe(request!.text);
    expect(attempt!.exchange).toEqual({
      signatures: {
        zupertry: request!.headers["x-zupertry-signature"],
        standard: request!.headers["webhook-signature"],
      },
      response: { headers: expect.objectContaining({ "content-type": "application/json" }), body: '{"received":true}' },
    });
    expect(JSON.stringify(attempt)).not.toContain(secret);
    // Compressed bulky columns keep the row inside its b-tree page (src/store/codec.ts).
    expect(attempt!.stored_bytes).toBeLessThan(900);
  });

  it("follows the seed's schedule: 500, 500, 200 → attempts after 60 s and 300 s", async () => {
    const { hook, message } = await setup({ replies: [{ status: 500 }, { status: 500 }, { status: 200 }] });

    const first = await runConsumer([message]);
    expect(first.retried.get(message.id)).toBe(60);
    expect((await attemptsOf(message.body.delivery_id))[0]!.next_attempt_at! - Date.now()).toBeGreaterThan(55_000);

    // Redelivered before it is due (a crash after the log was written): it only waits.
    const early = await runConsumer([{ ...message, attempts: 2 }]);
    expect(early.retried.get(message.id)).toBeGreaterThan(55);
    expect(await hook.requests()).toHaveLength(1);

    advance(60);
    const second = await runConsumer([{ ...message, attempts: 3 }]);
    expect(second.retried.get(message.id)).toBe(300);

    advance(300);
    const third = await runConsumer([{ ...message, attempts: 4 }]);
    expect(third.retried.size).toBe(0);
    expect(third.acked).toEqual([message.id]);

    const requests = await hook.requests();
    expect(requests.map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2", "3"]);
    // Every attempt sends the same bytes with the same X-Zupertry-Signature...
    expect(new Set(requests.map((r) => r.body)).size).toBe(1);
    expect(new Set(requests.map((r) => r.headers["x-zupertry-signature"])).size).toBe(1);
    // ...and its own webhook-timestamp.
    const stamps = requests.map((r) => Number(r.headers["webhook-timestamp"]));
    expect(stamps[1]! - stamps[0]!).toBeGreaterThanOrEqual(60);
    expect(stamps[2]! - stamps[1]!).toBeGreaterThanOrEqual(300);

    const attempts = await attemptsOf(message.body.delivery_id);
    expect(attempts.map((a) => [a.attempt, a.status_code, a.outcome, a.error])).toEqual([
      [1, 500, "failed", "http_status"],
      [2, 500, "failed", "http_status"],
      [3, 200, "succeeded", null],
    ]);
    // Only a pending delivery's last attempt keeps next_attempt_at (migrations/0002); this one is over.
    expect(attempts.map((a) => a.next_attempt_at)).toEqual([null, null, null]);
    expect(attempts[2]!.next_attempt_at).toBeNull();
    expect(attempts.map((a) => a.request_body !== null)).toEqual([true, false, false]);
  });

  it.each([
    ["429 with Retry-After: 120 waits 120 s", 429, () => "120", 120],
    [
      "503 with an HTTP date two hours ahead waits the 1 h cap",
      503,
      () => new Date(Date.now() + 7_200_000).toUTCString(),
      3600,
    ],
    ["429 with Retry-After: 5 keeps the schedule's 60 s", 429, () => "5", 60],
    ["500 with Retry-After keeps the schedule (only 429 and 503 ask for it)", 500, () => "120", 60],
    ["429 with an unreadable Retry-After keeps the schedule", 429, () => "soon", 60],
  ])("%s, and shows it in next_attempt_at", async (_, status, retryAfter, delay) => {
    const { message } = await setup({ replies: [{ status, headers: { "retry-after": retryAfter() } }] });
    const run = await runConsumer([message]);
    expect(run.retried.get(message.id)).toBe(delay);
    const [attempt] = await attemptsOf(message.body.delivery_id);
    expect(attempt!.next_attempt_at! - Date.now()).toBeGreaterThan((delay - 5) * 1000);
    expect(attempt!.next_attempt_at! - Date.now()).toBeLessThanOrEqual(delay * 1000);
  });

  it("still makes three attempts in all when the receiver keeps asking for Retry-After", async () => {
    const { hook, message } = await setup({ replies: [{ status: 429, headers: { "retry-after": "600" } }] });
    expect((await runConsumer([message])).retried.get(message.id)).toBe(600);
    advance(600);
    expect((await runConsumer([{ ...message, attempts: 2 }])).retried.get(message.id)).toBe(600);
    advance(600);
    const last = await runConsumer([{ ...message, attempts: 3 }]);
    expect(last.acked).toEqual([message.id]);
    expect(await hook.requests()).toHaveLength(3);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.status_code, a.next_attempt_at])).toEqual([
      [429, null],
      [429, null],
      [429, null],
    ]);
  });

  it("is failed after three failures, with no fourth attempt", async () => {
    const { hook, message } = await setup({ replies: [{ status: 500 }] });
    await runConsumer([message]);
    advance(60);
    await runConsumer([{ ...message, attempts: 2 }]);
    advance(300);
    const last = await runConsumer([{ ...message, attempts: 3 }]);
    expect(last.acked).toEqual([message.id]);
    expect(last.retried.size).toBe(0);

    // Even if the queue hands the message over again, nothing more is sent.
    advance(3600);
    const after = await runConsumer([{ ...message, attempts: 4 }]);
    expect(after.acked).toEqual([message.id]);
    expect(await hook.requests()).toHaveLength(3);
    const attempts = await attemptsOf(message.body.delivery_id);
    expect(attempts.map((a) => a.outcome)).toEqual(["failed", "failed", "failed"]);
    expect(attempts[2]!.next_attempt_at).toBeNull();
  });

  it("times out a receiver that does not answer within ATTEMPT_TIMEOUT_MS", async () => {
    const { message } = await setup({ replies: [{ delayMs: 3000 }] });
    const run = await runConsumer([message]);
    expect(run.retried.get(message.id)).toBe(60);
    const [attempt] = await attemptsOf(message.body.delivery_id);
    expect(attempt).toMatchObject({
      status_code: null,
      outcome: "failed",
      error: "timeout",
      error_detail: "no response within 1000 ms",
    });
    // The whole wait, not the receiver's 3 s (timed with this file's fake Date, which can
    // lag the real clock on a busy machine: hence no tighter lower bound).
    expect(attempt!.response_time_ms).toBeGreaterThanOrEqual(500);
    expect(attempt!.response_time_ms).toBeLessThan(3000);
  });

  it("times out a receiver that answers 200 but trickles its body past the timeout", async () => {
    const { message } = await setup({ replies: [{ status: 200, body: "x".repeat(100), trickleMs: 300, chunks: 10 }] });
    await runConsumer([message]);
    const [attempt] = await attemptsOf(message.body.delivery_id);
    expect(attempt).toMatchObject({
      status_code: 200,
      outcome: "failed",
      error: "timeout",
      error_detail: "HTTP 200 in time, but the body did not finish within 1000 ms",
    });
  });

  it("does not follow a redirect: a 302 is a failure, logged with its status", async () => {
    const target = receiver(uniqueId("redirect-target"));
    const { message } = await setup({ replies: [{ status: 302, headers: { location: target.url } }] });
    const run = await runConsumer([message]);
    expect(run.retried.get(message.id)).toBe(60);
    expect(await attemptsOf(message.body.delivery_id)).toMatchObject([
      { status_code: 302, outcome: "failed", error: "redirect" },
    ]);
    expect(await target.requests()).toHaveLength(0);
  });

  it("stores a huge response body cut at RESPONSE_BODY_LIMIT_BYTES and flagged truncated", async () => {
    const { message } = await setup({ replies: [{ status: 200, bodyBytes: 5_000_000 }] });
    await runConsumer([message]);
    const [attempt] = await attemptsOf(message.body.delivery_id);
    expect(attempt).toMatchObject({ outcome: "succeeded", response_truncated: 1 });
    expect(attempt!.exchange!.response.body).toHaveLength(65_536);
  });

  it("says what Cloudflare's own 52x answers mean, and nothing for an endpoint's own 5xx", async () => {
    const edge = await setup({ replies: [{ status: 522, headers: { "cf-ray": "8f1e2d3c4b5a6978-AMS" } }] });
    await runConsumer([edge.message]);
    expect(await attemptsOf(edge.message.body.delivery_id)).toMatchObject([
      {
        status_code: 522,
        error: "http_status",
        error_detail: "the connection to the endpoint timed out (Cloudflare 522)",
      },
    ]);
    const own = await setup({ replies: [{ status: 522 }] });
    await runConsumer([own.message]);
    expect(await attemptsOf(own.message.body.delivery_id)).toMatchObject([{ status_code: 522, error_detail: null }]);
  });

  it("logs a network error when nothing listens", async () => {
    const { message } = await setup();
    message.body = { ...message.body, webhook_url: "http://127.0.0.1:9/hook" };
    const run = await runConsumer([message]);
    expect(run.retried.get(message.id)).toBe(60);
    expect(await attemptsOf(message.body.delivery_id)).toMatchObject([
      {
        status_code: null,
        error: "network_error",
        error_detail: "the connection was refused or dropped before an answer",
      },
    ]);
  });
});

describe("where a delivery goes", () => {
  it("fails at once with no_webhook_url when neither the event nor the org has a URL", async () => {
    const { message } = await setup({ perEventUrl: false });
    const run = await runConsumer([message]);
    expect(run.acked).toEqual([message.id]);
    expect(run.retried.size).toBe(0);
    expect(await attemptsOf(message.body.delivery_id)).toMatchObject([
      {
        attempt: 1,
        status_code: null,
        outcome: "failed",
        error: "no_webhook_url",
        error_detail: "the event has no webhook_url and the org has no default URL",
        next_attempt_at: null,
        exchange: null,
      },
    ]);
  });

  it("goes to the org default URL, read from its OrgSettings object", async () => {
    const { orgId, hook, message } = await setup({ perEventUrl: false });
    await orgSettings(env, orgId).setWebhookUrl(hook.url);
    await runConsumer([message]);
    expect(await hook.requests()).toHaveLength(1);
  });

  it("goes to the per-event URL over the org default", async () => {
    const { orgId, hook, message } = await setup();
    const orgDefault = receiver(uniqueId("default"));
    await orgSettings(env, orgId).setWebhookUrl(orgDefault.url);
    await runConsumer([message]);
    expect(await hook.requests()).toHaveLength(1);
    expect(await orgDefault.requests()).toHaveLength(0);
  });

  it("re-checks the URL rules before the attempt: a refused URL fails with invalid_url and sends nothing", async () => {
    const { hook, message } = await setup();
    const strictEnv = { ...env, ALLOW_INSECURE_WEBHOOK_URLS: "false" };
    const run = await runConsumer([message], "deliveries", strictEnv);
    expect(run.acked).toEqual([message.id]);
    expect(await attemptsOf(message.body.delivery_id)).toMatchObject([
      { error: "invalid_url", error_detail: "webhook_url must use https://", status_code: null, next_attempt_at: null },
    ]);
    expect(await hook.requests()).toHaveLength(0);
  });
});

describe("at least once, never twice in the log", () => {
  it("sends nothing for a duplicate ingest of a delivered delivery", async () => {
    const { hook, message } = await setup();
    await runConsumer([message]);
    const duplicate = { id: uniqueId("msg"), body: message.body };
    const run = await runConsumer([duplicate]);
    expect(run.acked).toEqual([duplicate.id]);
    expect(await hook.requests()).toHaveLength(1);
    expect(await attemptsOf(message.body.delivery_id)).toHaveLength(1);
  });

  it("sends nothing for a duplicate ingest of a failed delivery", async () => {
    const { hook, message } = await setup({ perEventUrl: false });
    await runConsumer([message]); // no_webhook_url: failed
    const duplicate = { id: uniqueId("msg"), body: { ...message.body, webhook_url: hook.url } };
    expect((await runConsumer([duplicate])).acked).toEqual([duplicate.id]);
    expect(await hook.requests()).toHaveLength(0);
  });

  it("lets only the owner message carry a pending delivery on", async () => {
    const { hook, message } = await setup({ replies: [{ status: 500 }, { status: 200 }] });
    await runConsumer([message]);
    advance(60);
    const duplicate = { id: uniqueId("msg"), body: message.body };
    expect((await runConsumer([duplicate])).acked).toEqual([duplicate.id]);
    expect(await hook.requests()).toHaveLength(1);
    await runConsumer([{ ...message, attempts: 2 }]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => a.outcome)).toEqual(["failed", "succeeded"]);
  });

  it("attempts once when two messages of one delivery arrive in the same batch", async () => {
    const { hook, message } = await setup();
    const duplicate = { id: uniqueId("msg"), body: message.body };
    const run = await runConsumer([message, duplicate]);
    expect(run.acked.sort()).toEqual([message.id, duplicate.id].sort());
    expect(await hook.requests()).toHaveLength(1);
    expect(await attemptsOf(message.body.delivery_id)).toHaveLength(1);
  });

  it("sends attempt 1 once when a producer's retry reaches another run while it is under way", async () => {
    const { hook, message } = await setup({ replies: [{ status: 200, delayMs: 300 }] });
    const retry = { id: uniqueId("msg"), body: message.body };
    const runs = await Promise.all([runConsumer([message]), runConsumer([retry])]);
    expect(runs.flatMap((r) => r.acked).sort()).toEqual([message.id, retry.id].sort());
    // Whichever the org's object saw second waits out the other's hold on attempt 1 (as a
    // new message, no retry of its own), then finds it logged.
    const [waiting, ...more] = runs.flatMap((r) => r.putBack);
    expect(more).toEqual([]);
    expect(waiting).toMatchObject({ body: { delivery_id: message.body.delivery_id } });
    expect(waiting!.delaySeconds).toBeGreaterThan(0);
    expect(await hook.requests()).toHaveLength(1);
    advance(waiting!.delaySeconds!);
    const again = { id: uniqueId("msg"), body: waiting!.body };
    expect((await runConsumer([again])).acked).toEqual([again.id]);
    expect(await hook.requests()).toHaveLength(1);
    expect(await attemptsOf(message.body.delivery_id)).toHaveLength(1);
  });

  it("makes attempt 1 from the waiting message when the one holding it is gone", async () => {
    const { orgId, hook, message } = await setup();
    // A run saw the first message, then died with it: nothing logged, the message lost.
    await orgSettings(env, orgId).getDeliverySettings([], [{ delivery_id: message.body.delivery_id, owner: "lost" }]);
    const retry = { id: uniqueId("msg"), body: message.body };
    const [waiting] = (await runConsumer([retry])).putBack;
    expect(await hook.requests()).toHaveLength(0);
    advance(waiting!.delaySeconds!);
    const again = { id: uniqueId("msg"), body: waiting!.body };
    expect((await runConsumer([again])).acked).toEqual([again.id]);
    expect(await hook.requests()).toHaveLength(1);
    expect((await attemptsOf(message.body.delivery_id))[0]).toMatchObject({ message_id: retry.id });
  });

  it("makes attempt 1 at once when the message holding it is in the same batch as another", async () => {
    const { orgId, hook, message } = await setup();
    // The first message took the hold in a run that deferred it; it comes back beside a retry.
    await orgSettings(env, orgId).getDeliverySettings(
      [],
      [{ delivery_id: message.body.delivery_id, owner: message.id }],
    );
    const retry = { id: uniqueId("msg"), body: message.body };
    const run = await runConsumer([retry, { ...message, attempts: 2 }]);
    expect(run.acked.sort()).toEqual([retry.id, message.id].sort());
    expect(run.putBack).toEqual([]);
    expect(await hook.requests()).toHaveLength(1);
  });

  it("logs an attempt once when the same message is consumed twice at the same time", async () => {
    const { message } = await setup({ replies: [{ status: 500, delayMs: 100 }] });
    const runs = await Promise.all([runConsumer([message]), runConsumer([message])]);
    expect(await attemptsOf(message.body.delivery_id)).toHaveLength(1);
    // Exactly one of the two keeps the schedule going.
    expect(runs.filter((r) => r.retried.get(message.id) === 60)).toHaveLength(1);
  });

  it("loses nothing when a run crashes before its log write: the batch comes back and is logged once", async () => {
    const fixtures = await Promise.all([setup(), setup(), setup()]);
    const messages = fixtures.map((f) => f.message);
    // Every shard the batch writes to fails its write once.
    for (const db of new Set(await Promise.all(fixtures.map((f) => logDbOf(f.orgId))))) {
      vi.spyOn(db, "batch").mockRejectedValueOnce(new Error("D1_ERROR: simulated outage"));
    }

    const crashed = await runConsumer(messages);
    expect(crashed.acked).toEqual([]);
    expect([...crashed.retried.values()]).toEqual([30, 30, 30]);
    for (const m of messages) expect(await attemptsOf(m.body.delivery_id)).toHaveLength(0);

    const again = await runConsumer(messages.map((m) => ({ ...m, attempts: 2 })));
    expect(again.acked.sort()).toEqual(messages.map((m) => m.id).sort());
    for (const { message, hook } of fixtures) {
      expect(await attemptsOf(message.body.delivery_id)).toMatchObject([{ attempt: 1, outcome: "succeeded" }]);
      // The receiver saw attempt 1 twice (at least once); the log shows it once.
      expect(await hook.requests()).toHaveLength(2);
    }
  });

  it("keeps the log consistent when a run crashes after its log write (acks lost)", async () => {
    const { hook, message } = await setup({ replies: [{ status: 503 }, { status: 200 }] });
    await runConsumer([message]); // logged, then pretend the retry() never reached the queue
    const redelivered = await runConsumer([{ ...message, attempts: 2 }]);
    expect(redelivered.retried.get(message.id)).toBeGreaterThan(55);
    expect(await hook.requests()).toHaveLength(1);
    advance(60);
    await runConsumer([{ ...message, attempts: 3 }]);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => a.attempt)).toEqual([1, 2]);
  });

  it("defers an org's messages when its settings cannot be read, and only those", async () => {
    const healthy = await setup();
    const broken = await setup();
    const namespace = env.ORG_SETTINGS;
    const faulty = {
      ...env,
      ORG_SETTINGS: {
        idFromName: (name: string) => namespace.idFromName(name),
        get: (id: DurableObjectId) =>
          id.equals(namespace.idFromName(broken.orgId))
            ? { getDeliverySettings: () => Promise.reject(new Error("Durable Object reset")) }
            : namespace.get(id),
      } as unknown as Env["ORG_SETTINGS"],
    };
    const run = await runConsumer([healthy.message, broken.message], "deliveries", faulty);
    expect(run.acked).toEqual([healthy.message.id]);
    expect(run.retried.get(broken.message.id)).toBe(30);
    expect(await attemptsOf(broken.message.body.delivery_id)).toHaveLength(0);
  });

  it.each([
    ["its shard is known to this isolate", true],
    ["this isolate learns its shard from that very read", false],
  ])("starts an org's attempts without waiting for another org's slow Durable Object (%s)", async (_, placed) => {
    const healthy = await setup();
    const slow = await setup();
    // This isolate learns where an org's log is from its first batch of the org.
    await runConsumer([healthy, ...(placed ? [slow] : [])].map((m) => ({ ...m.message, id: uniqueId("msg") })));
    for (const m of [healthy, slow])
      m.message = { ...m.message, body: await messageFor(jobEvent(m.orgId, uniqueId("job")), m.hook.url) };
    const before = (await slow.hook.requests()).length;
    let answer: () => void = () => {};
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const namespace = env.ORG_SETTINGS;
    const slowed = {
      ...env,
      ORG_SETTINGS: {
        idFromName: (name: string) => namespace.idFromName(name),
        get: (id: DurableObjectId) => {
          const stub = namespace.get(id);
          if (!id.equals(namespace.idFromName(slow.orgId))) return stub;
          // This org's object answers only when the test says so.
          return new Proxy(stub, {
            get: (target, name) =>
              name === "getDeliverySettings"
                ? async (...args: string[][]) => {
                    await answered;
                    return target.getDeliverySettings(...(args as [string[]]));
                  }
                : Reflect.get(target, name),
          });
        },
      } as unknown as Env["ORG_SETTINGS"],
    };
    const running = runConsumer([slow.message, healthy.message], "deliveries", slowed);
    // The healthy org's webhook arrives while the other org's object has still not answered.
    await vi.waitUntil(async () => (await healthy.hook.requests()).length === 2, { timeout: 5_000, interval: 20 });
    expect(await slow.hook.requests()).toHaveLength(before);
    answer();
    const run = await running;
    expect(run.acked.sort()).toEqual([slow.message.id, healthy.message.id].sort());
    expect(await slow.hook.requests()).toHaveLength(before + 1);
  });
});

describe("a batch", () => {
  /** `count` messages of one org, to an endpoint that takes `delayMs` to answer. */
  async function slowBatch(count: number, delayMs: number) {
    const orgId = uniqueId("org");
    const hook = receiver(uniqueId("hook"));
    await hook.script({ replies: [{ delayMs }] });
    const messages = await Promise.all(
      Array.from({ length: count }, async () => ({
        id: uniqueId("msg"),
        body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url),
      })),
    );
    return { orgId, hook, messages };
  }

  it("is delivered concurrently: one D1 read and write, one settings read and report per org", async () => {
    const { orgId, hook, messages } = await slowBatch(5, 200);
    const db = await logDbOf(orgId);
    const batch = vi.spyOn(db, "batch");
    const prepare = vi.spyOn(db, "prepare");
    const rpc = watchOrgCalls();

    await runConsumer(messages, "deliveries", env);
    expect(Math.max(...(await hook.requests()).map((r) => r.in_flight))).toBeGreaterThan(1);
    expect(batch).toHaveBeenCalledOnce();
    expect(batch.mock.calls[0]![0]).toHaveLength(1);
    expect(rowsPerStatement(batch.mock.calls[0]![0])).toEqual([5]);
    expect(prepare.mock.calls.filter(([sql]) => sql.trimStart().startsWith("SELECT"))).toHaveLength(1);
    expect(rpc).toEqual(["getDeliverySettings", "reportAttempts"]);
  });

  it("holds at most 6 connections when full, and times each attempt from its own connection", async () => {
    const { hook, messages } = await slowBatch(10, 300);
    await runConsumer(messages);
    expect(Math.max(...(await hook.requests()).map((r) => r.in_flight))).toBe(6);
    // The second wave waited ~300 ms for a connection; that wait is not its response time:
    // it took as long as the first wave's (with the wait, it would take twice as long).
    const times = await Promise.all(
      messages.map(async ({ body }) => (await attemptsOf(body.delivery_id))[0]!.response_time_ms),
    );
    expect(Math.max(...times)).toBeLessThan(Math.min(...times) * 1.6);
  });
});

describe("the dead-letter queue", () => {
  async function deadLetter(message: { id: string; body: DeliveryMessage } | { id: string; body: DeliveryMessage }[]) {
    return runConsumer(Array.isArray(message) ? message : [message], "deliveries-dlq");
  }

  it("marks a delivery that never got an attempt failed with error internal", async () => {
    const { message } = await setup();
    const run = await deadLetter(message);
    expect(run.acked).toEqual([message.id]);
    expect(await attemptsOf(message.body.delivery_id)).toMatchObject([
      { attempt: 1, outcome: "failed", error: "internal", status_code: null, next_attempt_at: null },
    ]);
  });

  it("ends an overdue pending delivery as failed after its last real attempt, once", async () => {
    const { message } = await setup({ replies: [{ status: 500 }] });
    await runConsumer([message]);
    advance(120); // its retry was due a minute ago and never came
    await deadLetter(message);
    await deadLetter(message);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.error, a.next_attempt_at])).toEqual([
      [1, "http_status", null], // no longer the last attempt
      [2, "internal", null],
    ]);
  });

  it("keeps a dead letter whose shard cannot take the row, backing off up to an hour", async () => {
    const { message } = await setup();
    vi.spyOn(await logDbOf(message.body.org_id), "batch").mockRejectedValue(new Error("D1_ERROR: down"));
    const first = await runConsumer([message], "deliveries-dlq");
    const later = await runConsumer([{ ...message, attempts: 30 }], "deliveries-dlq");
    expect(first.retried.get(message.id)).toBe(30);
    expect(later.retried.get(message.id)).toBe(3600);
    expect([...first.acked, ...later.acked]).toEqual([]);
  });

  it("leaves a pending delivery whose next attempt is still ahead to its live schedule", async () => {
    const { message } = await setup({ replies: [{ status: 500 }] });
    await runConsumer([message]);
    await deadLetter({ id: uniqueId("msg"), body: message.body }); // e.g. a producer's retry that died
    expect((await attemptsOf(message.body.delivery_id)).map((a) => a.error)).toEqual(["http_status"]);
  });

  it("leaves a due attempt to its owner, and ends the delivery once it has stalled", async () => {
    const { message } = await setup({ replies: [{ status: 500 }] });
    await runConsumer([message]);
    const other = { id: uniqueId("msg"), body: message.body }; // a producer's retry that died
    advance(61); // attempt 2 is due: its owner may be making it right now
    await deadLetter(other);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => a.error)).toEqual(["http_status"]);
    advance(360); // overdue by more than STALLED_AFTER_SECONDS: nobody is making it
    await deadLetter(other);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => a.error)).toEqual(["http_status", "internal"]);
  });

  it("leaves a delivered delivery alone", async () => {
    const { message } = await setup();
    await runConsumer([message]);
    await deadLetter(message);
    expect(await attemptsOf(message.body.delivery_id)).toMatchObject([{ attempt: 1, outcome: "succeeded" }]);
  });

  it("queues the owner again when its wait for the next attempt was the retry too many", async () => {
    const { message } = await setup({ replies: [{ status: 500 }] });
    await runConsumer([message]); // attempt 1 failed: the message waits 60 s for attempt 2
    const sent = vi.spyOn(env.DELIVERIES, "sendBatch");
    advance(20);
    const run = await deadLetter(message); // that wait was one retry past max_retries
    expect(run.acked).toEqual([message.id]);
    expect(sent.mock.calls.flatMap(([batch]) => [...batch])).toEqual([
      expect.objectContaining({ body: { ...message.body, owner: message.id }, delaySeconds: 40 }),
    ]);
    // Still the delivery's schedule: attempt 2 comes when due, not 5 minutes late.
    expect((await attemptsOf(message.body.delivery_id)).map((a) => a.error)).toEqual(["http_status"]);
  });

  it("acks each chunk of re-queued owners once sent: a later chunk's failure does not send it again", async () => {
    const padded = (event: ReturnType<typeof jobEvent>, bytes: number) => ({
      ...event,
      data: { ...event.data, pad: "x".repeat(bytes) },
    });
    const { orgId, hook } = await setup({ replies: [{ status: 500 }] });
    // Four owners of 64 KB events: three fit in one sendBatch (256 KB), the fourth takes another.
    const owners = await Promise.all(
      [1, 2, 3, 4].map(async () => ({
        id: uniqueId("msg"),
        body: await messageFor(padded(jobEvent(orgId, uniqueId("job")), 64_000), hook.url),
      })),
    );
    await runConsumer(owners); // attempt 1 failed for each: they wait 60 s for attempt 2
    const sent = vi
      .spyOn(env.DELIVERIES, "sendBatch")
      .mockResolvedValueOnce({ metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } })
      .mockRejectedValueOnce(new Error("Queue send failed: simulated outage"));
    const run = await deadLetter(owners);
    expect(sent.mock.calls.map(([batch]) => [...batch].length)).toEqual([3, 1]);
    expect(run.acked.sort()).toEqual(
      owners
        .slice(0, 3)
        .map((m) => m.id)
        .sort(),
    );
    expect([...run.retried.keys()]).toEqual([owners[3]!.id]);
  });

  it("logs the ending of a redeliver that was never made (its 202 said an attempt was queued)", async () => {
    const { message } = await setup();
    await runConsumer([message]);
    const redeliver = { id: uniqueId("msg"), body: { ...message.body, redeliver_after: 1 } };
    await deadLetter(redeliver);
    await deadLetter(redeliver);
    expect((await attemptsOf(message.body.delivery_id)).map((a) => [a.attempt, a.outcome, a.error])).toEqual([
      [1, "succeeded", null],
      [2, "failed", "internal"],
    ]);
  });
});

describe("a delivery's logged state", () => {
  it("is read from its first and last attempts only, however many it has", async () => {
    const orgId = uniqueId("org");
    const [redelivered, once] = [uniqueId("dlv"), uniqueId("dlv")];
    const db = await logDbOf(orgId);
    await insertAttempts(db, [
      ...Array.from({ length: 1000 }, (_, i) =>
        attemptRecord({
          delivery_id: redelivered,
          org_id: orgId,
          attempt: i + 1,
          message_id: `msg_${i + 1}`,
          next_attempt_at: i === 999 ? Date.now() + 60_000 : null,
          ...(i === 0 ? {} : { request_body: null, url_from_event: null }),
          outcome: "failed",
          status_code: 500,
          error: "http_status",
        }),
      ),
      attemptRecord({ delivery_id: once, org_id: orgId, message_id: "msg_once" }),
    ]);
    const counted = countingDb(db);
    const states = await readDeliveryStates(counted.db, [redelivered, once]);
    expect(Object.fromEntries(states)).toEqual({
      [redelivered]: {
        last_attempt: 1000,
        last_message_id: "msg_1000",
        first_message_id: "msg_1",
        next_attempt_at: expect.any(Number),
      },
      [once]: { last_attempt: 1, last_message_id: "msg_once", first_message_id: "msg_once", next_attempt_at: null },
    });
    expect(counted.rowsRead()).toBeLessThan(20);
  });
});
