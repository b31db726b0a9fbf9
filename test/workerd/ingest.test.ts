import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { capNesting } from "../../src/api/exact-json";
import { LANE_COUNT_TIMEOUT_MS } from "../../src/delivery/enqueue";
import { type DeliveryMessage, deliveryIdFor } from "../../src/delivery/message";
import { call, freshWindow, jobEvent, orgKey, PRODUCER_TOKEN, receiver, uniqueId, watchQueue } from "./helpers";

const hook = receiver("ingest");
let queue: ReturnType<typeof watchQueue>;

beforeEach(() => {
  queue = watchQueue();
});
afterEach(() => {
  vi.restoreAllMocks();
});

const sentMessages = () => queue.messages();

describe("POST /v1/events", () => {
  it("queues the event and answers 202 with its delivery id", async () => {
    const event = jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url });
    const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: event });

    expect(res.status).toBe(202);
    const deliveryId = await deliveryIdFor("org_ingest", "job.completed", event.data.job_id);
    expect(await res.json()).toEqual({ delivery_id: deliveryId, status: "queued" });
    expect(queue.calls()).toHaveLength(1);
    expect(queue.contentTypes()).toEqual(["v8"]);
    const [message] = sentMessages();
    expect(message).toMatchObject({
      delivery_id: deliveryId,
      org_id: "org_ingest",
      job_id: event.data.job_id,
      event_type: "job.completed",
      webhook_url: hook.url,
    });
    // The body is serialised once, here, as the receiver will get it.
    expect(new TextDecoder().decode(message!.body)).toBe(JSON.stringify({ type: event.type, data: event.data }));
  });

  it("passes data through as sent: unknown fields, nesting and key order", async () => {
    const data = {
      workspace_id: "ws_1",
      job_id: uniqueId("job"),
      "2": "numeric key",
      nested: { b: 1, a: [true, null] },
      org_id: "org_ingest",
      error: "Vertex AI returned an unexpected response format",
    };
    const res = await call("POST", "/v1/events", {
      token: PRODUCER_TOKEN,
      body: { type: "job.failed", data, webhook_url: hook.url },
    });
    expect(res.status).toBe(202);
    expect(new TextDecoder().decode(sentMessages()[0]!.body)).toBe(
      JSON.stringify({ type: "job.failed", data: JSON.parse(JSON.stringify(data)) }),
    );
  });

  it("keeps the last value of a key sent twice, as the receiver's JSON.parse reads the original", async () => {
    const jobId = uniqueId("job");
    const data = `{"job_id":"${jobId}","org_id":"org_ingest","status":"failed","status":"completed"}`;
    const text = `{"type":"job.completed","data":${data},"webhook_url":"${hook.url}"}`;
    const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: text });
    expect(res.status).toBe(202);
    const sent = new TextDecoder().decode(sentMessages()[0]!.body);
    expect(sent).toBe(
      `{"type":"job.completed","data":{"job_id":"${jobId}","org_id":"org_ingest","status":"completed"}}`,
    );
    expect(JSON.parse(sent).data).toEqual(JSON.parse(text).data);
  });

  it("answers from the request alone: no D1 query and no Durable Object call on the producer's path", async () => {
    const storage = [
      vi.spyOn(env.DB, "prepare"),
      vi.spyOn(env.DB_1, "prepare"),
      vi.spyOn(env.DB, "batch"),
      vi.spyOn(env.DB_1, "batch"),
      vi.spyOn(env.ORG_SETTINGS, "get"),
      vi.spyOn(env.ORG_SETTINGS, "idFromName"),
    ];
    const one = await call("POST", "/v1/events", {
      token: PRODUCER_TOKEN,
      body: jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url }),
    });
    const batch = await call("POST", "/v1/events/batch", {
      token: PRODUCER_TOKEN,
      body: { events: [jobEvent("org_ingest", uniqueId("job")), jobEvent("org_other", uniqueId("job"))] },
    });
    expect([one.status, batch.status]).toEqual([202, 202]);
    expect(sentMessages()).toHaveLength(3);
    for (const spy of storage) expect(spy).not.toHaveBeenCalled();
  });

  it("gives a retried event the same delivery id and sends it only once", async () => {
    const event = jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url });
    const first = (await (await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: event })).json()) as {
      delivery_id: string;
    };
    const again = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: event });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ delivery_id: first.delivery_id, status: "queued", duplicate: true });
    expect(queue.calls()).toHaveLength(1);
  });

  it("gives job.completed and job.failed of one job different ids, and the same job in two orgs too", async () => {
    const jobId = uniqueId("job");
    const ids = new Set([
      await deliveryIdFor("org_a", "job.completed", jobId),
      await deliveryIdFor("org_a", "job.failed", jobId),
      await deliveryIdFor("org_b", "job.completed", jobId),
    ]);
    expect(ids.size).toBe(3);
  });

  it("accepts a body of exactly 65,536 bytes and refuses one byte more with 413", async () => {
    const base = JSON.stringify(jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url }));
    const padded = (size: number) => {
      const event = JSON.parse(base);
      event.data.padding = "";
      event.data.padding = "x".repeat(size - JSON.stringify(event).length);
      return JSON.stringify(event);
    };
    const exact = padded(65_536);
    expect(new TextEncoder().encode(exact).byteLength).toBe(65_536);
    expect((await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: exact })).status).toBe(202);
    const over = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: padded(65_537) });
    expect(over.status).toBe(413);
    expect(await over.json()).toMatchObject({ error: { code: "payload_too_large" } });
    expect(queue.calls()).toHaveLength(1);
  });
});

describe("bad input to POST /v1/events answers a JSON error and queues nothing", () => {
  it("refuses a body that is not UTF-8, rather than deliver it with U+FFFD in place of its bytes", async () => {
    const event = jobEvent("org_ingest", uniqueId("job"));
    const text = JSON.stringify({ ...event, data: { ...event.data, note: "caf\u00e9" } });
    // The same event in Latin-1: é is the single byte 0xE9, which UTF-8 does not allow there.
    const latin1 = Uint8Array.from(text, (ch) => ch.charCodeAt(0));
    const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: latin1 });
    expect(res.status).toBe(400);
    const refused = { code: "invalid_json", message: expect.stringMatching(/UTF-8/) };
    expect(await res.json()).toMatchObject({ error: refused });
    expect(queue.calls()).toHaveLength(0);
    // As UTF-8 it is queued, é and all.
    expect((await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: text })).status).toBe(202);
    expect(new TextDecoder().decode(sentMessages()[0]!.body)).toContain("caf\u00e9");
  });

  const valid = () => jobEvent("org_ingest", uniqueId("job"));
  const withData = (patch: Record<string, unknown>) => {
    const event = valid();
    return { ...event, data: { ...event.data, ...patch } };
  };
  const cases: Array<[string, { body?: unknown; token?: string; headers?: Record<string, string> }, number, string]> = [
    ["no credentials", { body: valid() }, 401, "unauthorized"],
    ["a Basic header", { body: valid(), headers: { Authorization: "Basic dXNlcjpwYXNz" } }, 401, "unauthorized"],
    ["an empty Bearer", { body: valid(), headers: { Authorization: "Bearer " } }, 401, "unauthorized"],
    ["a wrong token", { body: valid(), token: "not-the-token" }, 401, "unauthorized"],
    ["a token with the right prefix", { body: valid(), token: `${PRODUCER_TOKEN}x` }, 401, "unauthorized"],
    [
      "text/plain",
      { body: JSON.stringify(valid()), token: PRODUCER_TOKEN, headers: { "Content-Type": "text/plain" } },
      415,
      "unsupported_media_type",
    ],
    [
      "form data",
      {
        body: "type=job.completed",
        token: PRODUCER_TOKEN,
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
      },
      415,
      "unsupported_media_type",
    ],
    ["no body", { token: PRODUCER_TOKEN, headers: { "Content-Type": "application/json" } }, 400, "invalid_json"],
    ["broken JSON", { body: '{"type": "job.completed",', token: PRODUCER_TOKEN }, 400, "invalid_json"],
    ["a JSON array", { body: [valid()], token: PRODUCER_TOKEN }, 400, "invalid_request"],
    ["a JSON string", { body: '"job.completed"', token: PRODUCER_TOKEN }, 400, "invalid_request"],
    ["no type", { body: { data: valid().data }, token: PRODUCER_TOKEN }, 400, "invalid_request"],
    ["an unknown type", { body: { ...valid(), type: "job.started" }, token: PRODUCER_TOKEN }, 400, "invalid_request"],
    ["no data", { body: { type: "job.completed" }, token: PRODUCER_TOKEN }, 400, "invalid_request"],
    [
      "data as a string",
      { body: { type: "job.completed", data: "job_1" }, token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    ["no job_id", { body: withData({ job_id: undefined }), token: PRODUCER_TOKEN }, 400, "invalid_request"],
    ["no org_id", { body: withData({ org_id: undefined }), token: PRODUCER_TOKEN }, 400, "invalid_request"],
    ["a numeric job_id", { body: withData({ job_id: 123 }), token: PRODUCER_TOKEN }, 400, "invalid_request"],
    [
      "an org_id with a slash",
      { body: withData({ org_id: "org/../x" }), token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    ["an empty org_id", { body: withData({ org_id: "" }), token: PRODUCER_TOKEN }, 400, "invalid_request"],
    [
      "a 129-character job_id",
      { body: withData({ job_id: "j".repeat(129) }), token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    [
      "an unknown top-level field",
      { body: { ...valid(), webhookUrl: "https://x.example" }, token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    [
      "a private webhook_url",
      { body: { ...valid(), webhook_url: "https://10.0.0.1/hook" }, token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    [
      "a metadata webhook_url",
      { body: { ...valid(), webhook_url: "http://169.254.169.254/latest" }, token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    [
      "a non-URL webhook_url",
      { body: { ...valid(), webhook_url: "your-app.com/hook" }, token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    ["a numeric webhook_url", { body: { ...valid(), webhook_url: 42 }, token: PRODUCER_TOKEN }, 400, "invalid_request"],
    [
      "a 2049-character webhook_url",
      { body: { ...valid(), webhook_url: `https://x.example/${"a".repeat(2031)}` }, token: PRODUCER_TOKEN },
      400,
      "invalid_request",
    ],
    [
      "a body over 64 KiB",
      { body: withData({ padding: "x".repeat(70_000) }), token: PRODUCER_TOKEN },
      413,
      "payload_too_large",
    ],
  ];

  it.each(cases)("%s → %i %s", async (_name, request, status, code) => {
    const res = await call("POST", "/v1/events", request);
    expect(res.status).toBe(status);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toEqual(expect.any(String));
    expect(queue.calls()).toHaveLength(0);
  });

  it("refuses an org API key on the producer route", async () => {
    const res = await call("POST", "/v1/events", { body: valid(), token: await orgKey("org_ingest") });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "unauthorized" } });
    expect(queue.calls()).toHaveLength(0);
  });

  it("reports schema misses with the zod issues in details", async () => {
    const res = await call("POST", "/v1/events", { body: withData({ job_id: undefined }), token: PRODUCER_TOKEN });
    const body = (await res.json()) as { error: { details: Array<{ path: unknown[] }> } };
    expect(body.error.details).toContainEqual(expect.objectContaining({ path: ["data", "job_id"] }));
  });
});

describe("POST /v1/events/batch", () => {
  it("queues the valid events and reports each invalid one by index", async () => {
    const events = [
      jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url }),
      { type: "job.started", data: {} },
      jobEvent("org_ingest", uniqueId("job"), { webhook_url: "https://192.168.0.1/" }),
      jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url }),
    ];
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events } });
    expect(res.status).toBe(202);
    const { results } = (await res.json()) as { results: Array<Record<string, unknown>> };
    expect(results).toEqual([
      { index: 0, delivery_id: expect.stringMatching(/^dlv_/), status: "queued" },
      { index: 1, error: expect.objectContaining({ code: "invalid_request" }) },
      {
        index: 2,
        error: expect.objectContaining({ code: "invalid_request", message: expect.stringContaining("private") }),
      },
      { index: 3, delivery_id: expect.stringMatching(/^dlv_/), status: "queued" },
    ]);
    expect(sentMessages().map((m) => m.delivery_id)).toEqual([results[0]!.delivery_id, results[3]!.delivery_id]);
  });

  it("reports the events the queue did not take among the others, and takes them when sent again", async () => {
    // 100 events of ~4 KB: two sends of the fast lane (256 KB each at most); the second fails.
    const events = Array.from({ length: 100 }, () => {
      const event = jobEvent("org_partial", uniqueId("job"), { webhook_url: hook.url });
      return { ...event, data: { ...event.data, note: "x".repeat(4_000) } };
    });
    let sends = 0;
    const sendBatch = vi.spyOn(env.DELIVERIES, "sendBatch").mockImplementation(async () => {
      if (++sends === 2) throw new Error("queue unavailable");
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendBatchResponse;
    });
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events } });
    expect(res.status).toBe(202);
    const { results } = (await res.json()) as { results: Array<{ index: number; status?: string; error?: object }> };
    const queued = results.filter((r) => r.status === "queued");
    const refused = results.filter((r) => r.error !== undefined);
    expect(queued.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(queued.length + refused.length).toBe(100);
    expect(refused[0]).toEqual({ index: refused[0]!.index, error: expect.objectContaining({ code: "internal" }) });
    const queuedIds = sendBatch.mock.calls[0]![0];
    expect([...queuedIds]).toHaveLength(queued.length);

    // Sent again, the refused ones are queued: none is taken for a duplicate of a queued one.
    sendBatch.mockRestore();
    const again = refused.map((r) => events[r.index]);
    const retried = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: again } });
    const second = (await retried.json()) as { results: Array<{ status?: string; duplicate?: boolean }> };
    expect(second.results.every((r) => r.status === "queued" && r.duplicate === undefined)).toBe(true);
  });

  it("answers 500 when the queue takes none of a batch's events", async () => {
    vi.spyOn(env.DELIVERIES, "sendBatch").mockRejectedValue(new Error("queue unavailable"));
    const events = [0, 1].map(() => jobEvent("org_partial", uniqueId("job"), { webhook_url: hook.url }));
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events } });
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: { code: "internal" } });
  });

  it("sends an event repeated inside one batch once", async () => {
    const event = jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url });
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: [event, event] } });
    const { results } = (await res.json()) as { results: Array<Record<string, unknown>> };
    expect(results[1]).toEqual({ index: 1, delivery_id: results[0]!.delivery_id, status: "queued", duplicate: true });
    expect(sentMessages()).toHaveLength(1);
  });

  it("accepts 100 events and refuses 101", async () => {
    const events = (n: number) =>
      Array.from({ length: n }, () => jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url }));
    const ok = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: events(100) } });
    expect(ok.status).toBe(202);
    expect(sentMessages()).toHaveLength(100);
    queue.reset();
    const tooMany = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: events(101) } });
    expect(tooMany.status).toBe(400);
    expect(await tooMany.json()).toMatchObject({ error: { code: "invalid_request" } });
    expect(queue.calls()).toHaveLength(0);
  });

  it("splits large batches into sendBatch calls under 256 KB", async () => {
    const events = Array.from({ length: 10 }, () => {
      const event = jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url });
      return { ...event, data: { ...event.data, padding: "x".repeat(60_000) } };
    });
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events } });
    expect(res.status).toBe(202);
    expect(sentMessages()).toHaveLength(10);
    for (const chunk of queue.calls()) {
      const bytes = chunk.reduce((sum, m) => sum + (m.body as DeliveryMessage).body.byteLength, 0);
      expect(bytes).toBeLessThanOrEqual(256_000);
    }
    expect(queue.calls().length).toBeGreaterThanOrEqual(3);
  });

  it("answers 400 with the results when no event could be queued", async () => {
    const res = await call("POST", "/v1/events/batch", {
      token: PRODUCER_TOKEN,
      body: { events: [{ type: "nope" }, 42] },
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: { code: "invalid_request" },
      results: [
        { index: 0, error: { code: "invalid_request" } },
        { index: 1, error: { code: "invalid_request" } },
      ],
    });
    expect(queue.calls()).toHaveLength(0);
  });

  it.each([
    ["no events", { events: [] }],
    ["events not an array", { events: {} }],
    ["an unknown field", { events: [jobEvent("org_ingest", "job_1")], extra: 1 }],
  ])("refuses %s with 400", async (_name, body) => {
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_request" } });
    expect(queue.calls()).toHaveLength(0);
  });

  it("refuses a body over 1 MiB with 413", async () => {
    const events = Array.from({ length: 20 }, () => ({
      ...jobEvent("org_ingest", uniqueId("job")),
      padding: "x".repeat(60_000),
    }));
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events } });
    expect(res.status).toBe(413);
    expect(queue.calls()).toHaveLength(0);
  });
});

describe("data arrives as sent, or is refused", () => {
  /** An event whose `data` nests `levels` objects in all, as text (too deep for JSON.stringify here). */
  let jobs = 0;
  /** Job ids with no digit run or exponent-like text, so only `deep` decides how the body parses. */
  const nested = (levels: number) =>
    `{"type":"job.completed","data":{"job_id":"job_nested_${"x".repeat(++jobs)}","org_id":"org_ingest",` +
    `"deep":${'{"d":'.repeat(levels - 1)}1${"}".repeat(levels - 1)}},"webhook_url":"${hook.url}"}`;

  it("refuses data nested deeper than 32 levels with a clear 400, and takes 32", async () => {
    expect((await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: nested(32) })).status).toBe(202);
    for (const levels of [33, 10_000]) {
      const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: nested(levels) });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({
        error: {
          code: "invalid_request",
          message: "data nests deeper than 32 levels",
          details: [{ path: ["data"], code: "too_deep" }],
        },
      });
    }
    expect(queue.calls()).toHaveLength(1);
  });

  it("refuses an event too deep for the number check on its own, batch neighbours checked as usual", async () => {
    // A long digit run sends the body through the number check, whose reviver recurses:
    // 10,000 levels are more than it can walk. The deep event is refused for its depth;
    // its neighbours are checked for their numbers as any others.
    const deep = nested(10_000).replace('"deep":', '"ref":"1234567890123456","deep":');
    const inexact =
      `{"type":"job.completed","data":{"job_id":"${uniqueId("job")}","org_id":"org_ingest",` +
      `"n":12345678901234567890}}`;
    const good = JSON.stringify(jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url }));
    const tooDeep = {
      code: "invalid_request",
      message: "data nests deeper than 32 levels",
      details: [{ path: ["data"], code: "too_deep" }],
    };
    const single = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: deep });
    expect(single.status).toBe(400);
    expect(await single.json()).toMatchObject({ error: tooDeep });
    expect(queue.calls()).toHaveLength(0);

    const batch = await call("POST", "/v1/events/batch", {
      token: PRODUCER_TOKEN,
      body: `{"events":[${deep},${inexact},${good}]}`,
    });
    expect(batch.status).toBe(202);
    expect(await batch.json()).toMatchObject({
      results: [
        { index: 0, error: tooDeep },
        { index: 1, error: { code: "invalid_request", details: [{ path: ["data", "n"], code: "inexact_number" }] } },
        { index: 2, status: "queued" },
      ],
    });
    expect(sentMessages()).toHaveLength(1);
  });

  it("cuts only what nests too deep to check, never brackets inside strings", () => {
    const text = '{"s":"[{\\"[","a":[[[1,{"b":[2]}]]],"t":"]}"}';
    expect(capNesting(text, 3)).toBe('{"s":"[{\\"[","a":[[[]]],"t":"]}"}');
    expect(JSON.parse(capNesting(text, 3))).toEqual({ s: '[{"[', a: [[[]]], t: "]}" });
    expect(capNesting(text, 6)).toBe(text);
  });

  it.each([
    ["an integer past 2^53", '{"big":12345678901234567890}', ["data", "big"], "12345678901234567890"],
    ["a number too large for a double", '{"list":[1,1e400]}', ["data", "list", 1], "1e400"],
    [
      "more decimal digits than a double keeps",
      '{"price":1.00000000000000000001}',
      ["data", "price"],
      "1.00000000000000000001",
    ],
    ["17 digits split by the decimal point", '{"amount":12345678.123456789}', ["data", "amount"], "12345678.123456789"],
  ])("refuses %s, naming the field, and queues nothing", async (_, extra, path, literal) => {
    const data = `{"job_id":"${uniqueId("job")}","org_id":"org_ingest",${extra.slice(1, -1)}}`;
    const body = `{"type":"job.completed","data":${data},"webhook_url":"${hook.url}"}`;
    const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as {
      error: { code: string; message: string; details: Array<{ path: unknown[]; code: string; message: string }> };
    };
    expect(error.code).toBe("invalid_request");
    expect(error.details).toEqual([
      { path, code: "inexact_number", message: expect.stringContaining(`${literal} would not arrive as sent`) },
    ]);
    expect(queue.calls()).toHaveLength(0);
  });

  it("names at most 20 such numbers, however many the body holds", async () => {
    const list = Array.from({ length: 3_000 }, () => "1e400").join(",");
    const data = `{"job_id":"${uniqueId("job")}","org_id":"org_ingest","list":[${list}]}`;
    const res = await call("POST", "/v1/events", {
      token: PRODUCER_TOKEN,
      body: `{"type":"job.completed","data":${data}}`,
    });
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text.length).toBeLessThan(8_000);
    const { error } = JSON.parse(text) as { error: { message: string; details: Array<{ path: unknown[] }> } };
    expect(error.details).toHaveLength(20);
    expect(error.details[0]!.path).toEqual(["data", "list", 0]);
    expect(error.message).toMatch(/^3000 numbers would not arrive as sent: data\.list\.0, .*, and 2980 more$/);
    expect(queue.calls()).toHaveLength(0);
  });

  it("takes numbers that keep their value, big ones sent as strings, and delivers them", async () => {
    const jobId = uniqueId("job");
    const numbers = `"a":1.0,"b":1e2,"c":0.1,"d":-0,"e":9007199254740991,"f":"12345678901234567890","g":1.5e-300`;
    const data = `{"job_id":"${jobId}","org_id":"org_ingest",${numbers}}`;
    const body = `{"type":"job.completed","data":${data},"webhook_url":"${hook.url}"}`;
    expect((await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body })).status).toBe(202);
    const sent = JSON.parse(new TextDecoder().decode(sentMessages()[0]!.body)) as { data: Record<string, unknown> };
    expect(sent.data).toMatchObject({
      a: 1,
      b: 100,
      c: 0.1,
      e: 9007199254740991,
      f: "12345678901234567890",
      g: 1.5e-300,
    });
  });

  it("refuses in a batch only the events that hold such a number", async () => {
    const good = jobEvent("org_ingest", uniqueId("job"), { webhook_url: hook.url });
    const bad = `{"job_id":"${uniqueId("job")}","org_id":"org_ingest","n":123456789012345678901}`;
    const refused = `{"type":"job.completed","data":${bad},"webhook_url":"${hook.url}"}`;
    const body = `{"events":[${JSON.stringify(good)},${refused}]}`;
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body });
    expect(res.status).toBe(202);
    const { results } = (await res.json()) as { results: Array<Record<string, unknown>> };
    expect(results[0]).toMatchObject({ index: 0, status: "queued" });
    expect(results[1]).toMatchObject({
      index: 1,
      error: { code: "invalid_request", details: [{ path: ["data", "n"], code: "inexact_number" }] },
    });
  });
});

describe("a producer flood for one org (FAST_LANE_ORG_LIMIT: 1,000 events in 10 s)", () => {
  /** What each lane was given, kept here (not queued): these tests look at routing only. */
  function laneSends() {
    const sent = { fast: [] as DeliveryMessage[], bulk: [] as DeliveryMessage[] };
    for (const [queue, list] of [
      [env.DELIVERIES, sent.fast],
      [env.DELIVERIES_BULK, sent.bulk],
    ] as const) {
      vi.spyOn(queue, "send").mockImplementation(async (body) => {
        list.push(body as DeliveryMessage);
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendResponse;
      });
      vi.spyOn(queue, "sendBatch").mockImplementation(async (batch) => {
        for (const m of batch) list.push(m.body as DeliveryMessage);
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendBatchResponse;
      });
    }
    return sent;
  }

  const events = (orgId: string, n: number) =>
    Array.from({ length: n }, () => jobEvent(orgId, uniqueId("job"), { webhook_url: hook.url }));

  /** The org's first 1,000 events of the window, through the batch route, all at once. */
  async function spendWindow(orgId: string) {
    const sent = await Promise.all(
      Array.from({ length: 10 }, () =>
        call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: events(orgId, 100) } }),
      ),
    );
    expect(sent.map((res) => res.status)).toEqual(Array(10).fill(202));
  }

  /** FAST_LANE_ORG_LIMIT counts in 10 s windows: start with enough of one left to fill it. */
  const freshLimitWindow = () => freshWindow(7_000, 10_000);

  it("queues an org's events beyond the limit on the bulk lane; another org's stay in the fast lane", async () => {
    const [flooding, other] = [uniqueId("org"), uniqueId("org")];
    const window = await freshLimitWindow();
    const sent = laneSends();
    await spendWindow(flooding);
    expect([sent.fast.length, sent.bulk.length]).toEqual([1000, 0]);

    // From the 1,001st on, single or batched, its events take the bulk lane; the other
    // org's, in the same batch, the fast lane.
    const single = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: events(flooding, 1)[0] });
    const mixed = [...events(flooding, 3), ...events(other, 2)];
    const batch = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: mixed } });
    expect(Math.floor(Date.now() / 10_000)).toBe(window);
    expect([single.status, batch.status]).toEqual([202, 202]);
    const { results } = (await batch.json()) as { results: Array<{ delivery_id: string }> };
    expect(sent.fast.slice(1000).map((m) => m.delivery_id)).toEqual(results.slice(3).map((r) => r.delivery_id));
    expect(sent.bulk.map((m) => m.org_id)).toEqual(Array(4).fill(flooding));
    expect(sent.bulk.slice(1).map((m) => m.delivery_id)).toEqual(results.slice(0, 3).map((r) => r.delivery_id));
    // The same message, whichever lane: the bulk lane's consumer delivers it as the fast one would.
    expect(sent.bulk[0]).toMatchObject({ org_id: flooding, webhook_url: hook.url, event_type: "job.completed" });
  });

  it("gives the org the fast lane back in the next window", async () => {
    const orgId = uniqueId("org");
    const window = await freshLimitWindow();
    const sent = laneSends();
    await spendWindow(orgId);
    await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: events(orgId, 1)[0] });
    expect(Math.floor(Date.now() / 10_000)).toBe(window);
    expect([sent.fast.length, sent.bulk.length]).toEqual([1000, 1]);
    await new Promise((resolve) => setTimeout(resolve, 10_100 - (Date.now() % 10_000)));
    await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: events(orgId, 1)[0] });
    expect([sent.fast.length, sent.bulk.length]).toEqual([1001, 1]);
  });

  it("queues on the fast lane when the count fails or does not answer: nothing is refused or lost", async () => {
    const sent = laneSends();
    const limit = vi.spyOn(env.FAST_LANE_ORG_LIMIT, "limit").mockRejectedValue(new Error("rate limiter unavailable"));
    const failed = await call("POST", "/v1/events/batch", {
      token: PRODUCER_TOKEN,
      body: { events: events(uniqueId("org"), 3) },
    });
    limit.mockReturnValue(new Promise(() => {}));
    const started = Date.now();
    const hung = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: events(uniqueId("org"), 1)[0] });
    expect([failed.status, hung.status]).toEqual([202, 202]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(LANE_COUNT_TIMEOUT_MS - 10);
    expect([sent.fast.length, sent.bulk.length]).toEqual([4, 0]);
  });

  it("makes both lanes' sends when one fails, and reports the failed lane's events for a retry", async () => {
    const orgId = uniqueId("org");
    await freshLimitWindow();
    const sent = laneSends();
    await spendWindow(orgId);
    vi.spyOn(env.DELIVERIES_BULK, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    // 2 of the org's (now bulk) and 2 of another org's (fast) in one batch.
    const batch = [...events(orgId, 2), ...events(uniqueId("org"), 2)];
    const res = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events: batch } });
    expect(res.status).toBe(202);
    const { results } = (await res.json()) as { results: unknown[] };
    expect(results).toEqual([
      { index: 0, error: expect.objectContaining({ code: "internal" }) },
      { index: 1, error: expect.objectContaining({ code: "internal" }) },
      { index: 2, delivery_id: expect.stringMatching(/^dlv_/), status: "queued" },
      { index: 3, delivery_id: expect.stringMatching(/^dlv_/), status: "queued" },
    ]);
    expect(sent.fast.slice(1000).map((m) => m.job_id)).toEqual(batch.slice(2).map((e) => e.data.job_id));
  });
});
