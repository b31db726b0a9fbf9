import fc from "fast-check";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { call, orgKey, PRODUCER_TOKEN, uniqueId, watchQueue } from "./helpers";

/**
 * Property-based: whatever arrives at the ingest and org APIs, the answer is a 2xx or
 * a 4xx with the JSON error shape (never a 5xx), and a refused request queues nothing.
 * The e2e suite runs the same idea against `wrangler dev`; here the queue is watched.
 */

afterEach(() => {
  vi.restoreAllMocks();
});

async function expectJsonError(res: Response): Promise<void> {
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  expect(await res.json()).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
}

describe("ingest", () => {
  it("refuses what is not a valid event without queueing anything", async () => {
    const value = fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          type: fc.oneof(fc.constantFrom("job.completed", "job.failed"), fc.string()),
          data: fc.jsonValue(),
          webhook_url: fc.oneof(fc.webUrl(), fc.string(), fc.jsonValue()),
        },
        { requiredKeys: [] },
      ),
    );
    await fc.assert(
      fc.asyncProperty(value, fc.constantFrom("/v1/events", "/v1/events/batch"), async (body, path) => {
        const queue = watchQueue();
        try {
          const res = await call("POST", path, { token: PRODUCER_TOKEN, body: JSON.stringify(body) });
          if (res.status === 202) return; // a valid event or batch: queued, as it should be
          await expectJsonError(res);
          expect(queue.calls()).toHaveLength(0);
        } finally {
          queue.restore();
        }
      }),
      { numRuns: 300 },
    );
  });

  it("refuses random bytes, content types and credentials without queueing anything", async () => {
    const printable = fc.string({ maxLength: 60 }).filter((s) => /^[\t\x20-\x7e]*$/.test(s));
    const contentTypes = fc.oneof(
      fc.constantFrom("application/json", "application/json; charset=utf-8", "text/plain"),
      printable,
    );
    const authorization = fc.oneof(fc.constant(`Bearer ${PRODUCER_TOKEN}`), printable);
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        contentTypes,
        authorization,
        async (bytes, contentType, authorization) => {
          const queue = watchQueue();
          try {
            const res = await call("POST", "/v1/events", {
              body: new TextDecoder().decode(bytes),
              headers: { "Content-Type": contentType, Authorization: authorization },
            });
            await expectJsonError(res);
            expect(queue.calls()).toHaveLength(0);
          } finally {
            queue.restore();
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("org API", () => {
  let key: string;
  beforeAll(async () => {
    key = await orgKey(uniqueId("org"));
  });

  it("answers any query on the lists with 200 or a JSON 400", async () => {
    const query = fc.dictionary(
      fc.constantFrom("limit", "cursor", "outcome", "job_id", "delivery_id", "x"),
      fc.string({ maxLength: 30 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("/v1/webhook-logs", "/v1/deliveries"), query, async (path, params) => {
        const res = await call("GET", `${path}?${new URLSearchParams(params)}`, { token: key });
        if (res.status !== 200) await expectJsonError(res);
      }),
      { numRuns: 300 },
    );
  });

  it("answers any id in a path with a JSON 400 or 404", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("/v1/webhook-logs/", "/v1/deliveries/", "/v1/deliveries/{}/redeliver"),
        fc.string({ maxLength: 80 }),
        async (path, id) => {
          const target = path.includes("{}")
            ? path.replace("{}", encodeURIComponent(id))
            : path + encodeURIComponent(id);
          const res = await call(path.includes("redeliver") ? "POST" : "GET", target, { token: key });
          if (res.status !== 200) await expectJsonError(res);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("never stores a refused webhook URL", async () => {
    const candidate = fc.oneof(
      fc.webUrl(),
      fc.string({ maxLength: 60 }),
      fc.ipV4().map((ip) => `https://${ip}/`),
      fc.ipV6().map((ip) => `https://[${ip}]/`),
    );
    await fc.assert(
      fc.asyncProperty(candidate, async (url) => {
        // An org per run: 200 runs on one org would meet its rate limit (src/api/rate-limit.ts).
        const key = await orgKey(uniqueId("org"));
        await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: "https://customer.example/hook" } });
        const before = await (await call("GET", "/v1/webhook", { token: key })).json();
        const res = await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: url } });
        if (res.status === 200) return;
        await expectJsonError(res);
        expect(await (await call("GET", "/v1/webhook", { token: key })).json()).toEqual(before);
      }),
      { numRuns: 200 },
    );
  });
});
