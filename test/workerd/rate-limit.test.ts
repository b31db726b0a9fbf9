import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  call,
  freshWindow,
  jobEvent,
  messageFor,
  orgKey,
  receiver,
  runConsumer,
  uniqueId,
  watchQueue,
} from "./helpers";

/**
 * The org API's rate limits (src/api/rate-limit.ts, `[[ratelimits]]` in wrangler.toml):
 * 10 sends (test events, redeliveries) and 1,200 requests a minute per org.
 */

afterEach(() => {
  vi.restoreAllMocks();
});

async function orgWithUrl() {
  const orgId = uniqueId("org");
  const key = await orgKey(orgId);
  const hook = receiver(uniqueId("hook"));
  await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: hook.url } });
  return { orgId, key, hook };
}

describe("sending on behalf of an org", () => {
  it("takes 10 test events a minute, then answers 429 with Retry-After and the JSON error shape", async () => {
    const { key } = await orgWithUrl();
    await freshWindow(5_000);
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await call("POST", "/v1/webhook/test", { token: key })).status);
    expect(statuses).toEqual(Array(10).fill(202));

    const refused = await call("POST", "/v1/webhook/test", { token: key });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("60");
    expect(await refused.json()).toEqual({
      error: { code: "rate_limited", message: expect.stringContaining("test events and redeliveries") },
    });
  });

  it("counts only what would be sent: a refused test event spends nothing", async () => {
    const { key } = await orgWithUrl();
    for (let i = 0; i < 20; i++) {
      const refused = await call("POST", "/v1/webhook/test", {
        token: key,
        body: { webhook_url: "https://10.0.0.1/hook" },
      });
      expect(refused.status).toBe(400);
    }
    expect((await call("POST", "/v1/webhook/test", { token: key })).status).toBe(202);
  });

  it("counts redeliveries against the same budget, and keeps each org's budget its own", async () => {
    const { orgId, key, hook } = await orgWithUrl();
    const message = { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url) };
    await runConsumer([message]); // delivered: it may be redelivered
    await freshWindow(5_000);
    for (let i = 0; i < 10; i++) await call("POST", "/v1/webhook/test", { token: key });
    const redeliver = await call("POST", `/v1/deliveries/${message.body.delivery_id}/redeliver`, { token: key });
    expect(redeliver.status).toBe(429);
    // Reading is not sending.
    expect((await call("GET", "/v1/webhook-logs", { token: key })).status).toBe(200);

    const other = await orgWithUrl();
    expect((await call("POST", "/v1/webhook/test", { token: other.key })).status).toBe(202);
  });

  it("spends one send for a double click on redeliver: the second queues nothing", async () => {
    const { orgId, key, hook } = await orgWithUrl();
    const message = { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url) };
    await runConsumer([message]);
    await freshWindow(5_000);
    const path = `/v1/deliveries/${message.body.delivery_id}/redeliver`;
    for (let i = 0; i < 2; i++) expect((await call("POST", path, { token: key })).status).toBe(202);
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await call("POST", "/v1/webhook/test", { token: key })).status);
    expect(statuses).toEqual([...Array(9).fill(202), 429]);
  });

  it("keeps no claim for a redeliver the limit refused: once sends are allowed, it is made", async () => {
    const { orgId, key, hook } = await orgWithUrl();
    const message = { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url) };
    await runConsumer([message]);
    const path = `/v1/deliveries/${message.body.delivery_id}/redeliver`;
    const limit = vi.spyOn(env.ORG_SEND_LIMIT, "limit").mockResolvedValueOnce({ success: false });
    expect((await call("POST", path, { token: key })).status).toBe(429);

    limit.mockResolvedValueOnce({ success: true });
    const queue = watchQueue();
    expect((await call("POST", path, { token: key })).status).toBe(202);
    expect(queue.messages().map((m) => m.delivery_id)).toEqual([message.body.delivery_id]);
  });

  it("answers a second click, made while the first is refused, only once its own redeliver is queued", async () => {
    const { orgId, key, hook } = await orgWithUrl();
    const message = { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url) };
    await runConsumer([message]);
    const path = `/v1/deliveries/${message.body.delivery_id}/redeliver`;
    // The first click's send check hangs until the test refuses it; the second's passes.
    const { promise: refusal, resolve: refuse } = Promise.withResolvers<RateLimitOutcome>();
    const limit = vi.spyOn(env.ORG_SEND_LIMIT, "limit").mockReturnValueOnce(refusal);
    const queue = watchQueue();
    const first = call("POST", path, { token: key });
    await vi.waitFor(() => expect(limit).toHaveBeenCalledTimes(1));
    limit.mockResolvedValueOnce({ success: true });
    const second = call("POST", path, { token: key });
    await new Promise((r) => setTimeout(r, 200)); // the second click reaches the org's object
    refuse({ success: false });

    expect((await first).status).toBe(429);
    expect((await second).status).toBe(202);
    expect(queue.messages().map((m) => m.delivery_id)).toEqual([message.body.delivery_id]);
    expect(limit).toHaveBeenCalledTimes(2);
  });
});

describe("the org API as a whole", () => {
  it("takes 1,200 requests a minute per org, then 429", { timeout: 60_000 }, async () => {
    const key = await orgKey(uniqueId("org"));
    const window = await freshWindow(25_000);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 1201; i += 50) {
      const chunk = Array.from({ length: Math.min(50, 1201 - i) }, () => call("GET", "/v1/webhook", { token: key }));
      for (const { status } of await Promise.all(chunk)) statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    // All in one window of the limit (else the count would start over and say nothing).
    expect(Math.floor(Date.now() / 60_000)).toBe(window);
    expect(Object.fromEntries(statuses)).toEqual({ 200: 1200, 429: 1 });
    // Another org is not slowed by it.
    expect((await call("GET", "/v1/webhook", { token: await orgKey(uniqueId("org")) })).status).toBe(200);
  });
});
