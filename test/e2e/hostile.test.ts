import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Dispatcher, startDispatcher } from "../../scripts/wrangler-dev";
import { record } from "./support/summary";

/**
 * Hostile input against a dispatcher configured as in production
 * (ALLOW_INSECURE_WEBHOOK_URLS=false): every unsafe webhook URL an attacker would try
 * first, and property-based fuzzing of the ingest and org APIs. Never a 5xx, always
 * the JSON error shape, and nothing queued or stored for what was refused.
 */

let strict: Dispatcher;
let key: string;
const FUZZ_ORG = "org_fuzz";
const SAFE_URL = "https://customer.example/webhooks/zupertry";
let tried = 0;
let rejected = 0;
/** Every delivery of FUZZ_ORG a test here had accepted (202): the log must hold these and no other. */
const accepted = new Set<string>();

async function send(
  method: string,
  path: string,
  token: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  tried++;
  return fetch(`${strict.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** A refusal: a 4xx with the JSON error shape. Returns the code. */
async function expectRefusal(res: Response, statuses: number[] = [400]): Promise<string> {
  expect(statuses, `status ${res.status}`).toContain(res.status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toEqual(expect.any(String));
  expect(body.error.message).toEqual(expect.any(String));
  rejected++;
  return body.error.code;
}

const event = (extra: Record<string, unknown> = {}, data: Record<string, unknown> = {}) => ({
  type: "job.completed",
  data: { job_id: `job_${Math.random().toString(36).slice(2)}`, org_id: FUZZ_ORG, status: "completed", ...data },
  ...extra,
});

beforeAll(async () => {
  strict = await startDispatcher({ RETRY_DELAYS_SECONDS: "1,2", ATTEMPT_TIMEOUT_MS: "2000" });
  const res = await send("POST", `/v1/orgs/${FUZZ_ORG}/api-keys`, strict.operatorToken, {});
  key = ((await res.json()) as { key: string }).key;
  expect((await send("PUT", "/v1/webhook", key, { webhook_url: SAFE_URL })).status).toBe(200);
}, 120_000);

afterAll(async () => {
  record("hostile input", "requests sent / refused with a JSON 4xx (no 5xx at all)", `${tried} / ${rejected}`);
  await strict?.stop();
});

const UNSAFE_URLS = [
  "http://127.0.0.1/hook",
  "https://127.0.0.1/hook",
  "https://127.255.255.254/hook",
  "https://localhost/hook",
  "https://localhost./hook",
  "https://LocalHost:8443/hook",
  "https://app.localhost/hook",
  "https://10.0.0.1/hook",
  "https://172.16.0.1/hook",
  "https://192.168.1.1/hook",
  "https://169.254.169.254/latest/meta-data/",
  "https://100.64.0.1/hook",
  "https://0.0.0.0/hook",
  "https://0/hook",
  "https://[::1]/hook",
  "https://[::]/hook",
  "https://[fc00::1]/hook",
  "https://[fd00:ec2::254]/hook",
  "https://[fe80::1]/hook",
  "https://[::ffff:127.0.0.1]/hook",
  "https://[::ffff:169.254.169.254]/hook",
  "https://[::ffff:10.0.0.1]/hook",
  "https://2130706433/hook",
  "https://0177.0.0.1/hook",
  "https://0x7f.0.0.1/hook",
  "https://0x7f000001/hook",
  "https://017700000001/hook",
  "https://127.1/hook",
  "https://user:pass@customer.example/hook",
  "https://customer.example@127.0.0.1/hook",
  "http://customer.example/hook",
  "ftp://customer.example/hook",
  "file:///etc/passwd",
  "javascript:alert(1)",
  "gopher://127.0.0.1:6379/_INFO",
  "data:text/plain,hi",
  `https://customer.example/${"a".repeat(2040)}`,
  "//customer.example/hook",
  "customer.example/hook",
  "",
];

describe("unsafe webhook URLs", () => {
  /** URLs refused all three ways, counted as each test passes (the summary shows what ran). */
  let refusedEverywhere = 0;
  afterAll(() => {
    record("hostile input", "unsafe webhook URLs refused (set, per event, test event)", `${refusedEverywhere} × 3`);
  });

  it.each(UNSAFE_URLS.map((u) => [u.length > 60 ? `${u.slice(0, 40)}… (${u.length} chars)` : u || "(empty)", u]))(
    "refuses %s as the org default, per event and for a test event",
    async (_label, url) => {
      expect(await expectRefusal(await send("PUT", "/v1/webhook", key, { webhook_url: url }))).toBe("invalid_request");
      const settings = (await (await send("GET", "/v1/webhook", key)).json()) as { webhook_url: string };
      expect(settings.webhook_url).toBe(SAFE_URL);
      expect(
        await expectRefusal(await send("POST", "/v1/events", strict.producerToken, event({ webhook_url: url }))),
      ).toBe("invalid_request");
      expect(await expectRefusal(await send("POST", "/v1/webhook/test", key, { webhook_url: url }))).toBe(
        "invalid_request",
      );
      refusedEverywhere++;
    },
  );
});

describe("size edges", () => {
  const padded = (size: number) => {
    const base = event();
    const text = JSON.stringify({ ...base, data: { ...base.data, padding: "" } });
    return JSON.stringify({ ...base, data: { ...base.data, padding: "x".repeat(size - text.length) } });
  };

  it("accepts a body of exactly 64 KiB and refuses one byte more with 413", async () => {
    const exact = padded(65_536);
    expect(Buffer.byteLength(exact)).toBe(65_536);
    const res = await send("POST", "/v1/events", strict.producerToken, exact);
    expect(res.status).toBe(202);
    accepted.add(((await res.json()) as { delivery_id: string }).delivery_id);
    expect(await expectRefusal(await send("POST", "/v1/events", strict.producerToken, padded(65_537)), [413])).toBe(
      "payload_too_large",
    );
  });

  it("accepts a batch of 100 events and refuses 101 with 400", async () => {
    const batch = (n: number) => ({ events: Array.from({ length: n }, () => event()) });
    const res = await send("POST", "/v1/events/batch", strict.producerToken, batch(100));
    expect(res.status).toBe(202);
    const { results } = (await res.json()) as { results: Array<{ delivery_id?: string }> };
    for (const r of results) accepted.add(r.delivery_id!);
    expect(accepted.size).toBeGreaterThanOrEqual(100);
    expect(await expectRefusal(await send("POST", "/v1/events/batch", strict.producerToken, batch(101)))).toBe(
      "invalid_request",
    );
    record("hostile input", "size edges", "64 KiB ok, +1 byte 413; batch 100 ok, 101 400");
  });
});

describe("what an attacker and a bad day found (issue 10)", () => {
  it("refuses data nested 10,000 levels deep with a 400, and stores nothing", async () => {
    const levels = 10_000;
    const deep = `${'{"d":'.repeat(levels)}1${"}".repeat(levels)}`;
    const body = `{"type":"job.completed","data":{"job_id":"job_deep_1","org_id":"${FUZZ_ORG}","x":${deep}}}`;
    const res = await send("POST", "/v1/events", strict.producerToken, body);
    expect(await expectRefusal(res)).toBe("invalid_request");
    record("hostile input", "data nested 10,000 levels deep", "400 (at most 32 levels), nothing stored");
  });

  it("refuses numbers that would change on the way through, naming the field", async () => {
    for (const literal of ["12345678901234567890", "1e400"]) {
      const data = `{"job_id":"job_num_${literal.length}","org_id":"${FUZZ_ORG}","amount":${literal}}`;
      const body = `{"type":"job.completed","data":${data}}`;
      const res = await send("POST", "/v1/events", strict.producerToken, body);
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { details: Array<{ path: unknown[] }> } };
      rejected++;
      expect(error.details[0]!.path).toEqual(["data", "amount"]);
    }
    record(
      "hostile input",
      "numbers that would change (2^64, 1e400)",
      "400 naming data.amount; 1.0, 0.1, 1e2 still taken",
    );
  });

  it("does not relay: of 50 test events to one URL, 10 are sent and 40 get 429 with Retry-After", async () => {
    const created = await send("POST", "/v1/orgs/org_relay/api-keys", strict.operatorToken, {});
    const relayKey = ((await created.json()) as { key: string }).key;
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await send("POST", "/v1/webhook/test", relayKey, { webhook_url: "https://victim.example/" });
      statuses.push(res.status);
      if (res.status === 429) {
        expect(res.headers.get("retry-after")).toBe("60");
        expect(await expectRefusal(res, [429])).toBe("rate_limited");
      }
    }
    expect(statuses.filter((s) => s === 202)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(40);
    record(
      "hostile input",
      "50 test events to one URL (the relay)",
      "10 queued (≤ 30 POSTs), 40 × 429 with Retry-After",
    );
  });
});

/**
 * fast-check's web URLs, on a host under `.invalid` (RFC 6761: it never resolves). Those
 * the rules accept make accepted events whose deliveries fail at the name lookup: the fuzz
 * is about what ingest takes, and must not make the dispatcher POST to real domains.
 */
const unreachableWebUrl = fc.webUrl().map((url) => url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#]*)/i, "$1.invalid"));

describe("fuzzing", () => {
  it("ingest: random bodies are refused with a JSON 4xx or queued, never a 5xx", async () => {
    const valid = fc
      .record({
        type: fc.constantFrom("job.completed", "job.failed"),
        data: fc.record({
          job_id: fc.stringMatching(/^job_[a-z0-9]{8,16}$/),
          org_id: fc.constant(FUZZ_ORG),
          details: fc.jsonValue(),
        }),
      })
      .map((v) => JSON.stringify(v));
    const body = fc.oneof(
      valid,
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 200 }),
      fc
        .record(
          {
            type: fc.oneof(fc.constantFrom("job.completed", "job.failed"), fc.string()),
            data: fc.oneof(
              fc.record(
                {
                  job_id: fc.oneof(fc.stringMatching(/^job_[a-z0-9]{6,12}$/), fc.string(), fc.integer()),
                  org_id: fc.constantFrom(FUZZ_ORG, "", "org/x", 5),
                  extra: fc.jsonValue(),
                },
                { requiredKeys: [] },
              ),
              fc.jsonValue(),
            ),
            webhook_url: fc.oneof(
              fc.constant(SAFE_URL),
              unreachableWebUrl,
              fc.string(),
              fc.constant(null),
              fc.integer(),
            ),
            surprise: fc.jsonValue(),
          },
          { requiredKeys: [] },
        )
        .map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(body, async (text) => {
        const res = await send("POST", "/v1/events", strict.producerToken, text);
        if (res.status === 202) {
          accepted.add(((await res.json()) as { delivery_id: string }).delivery_id);
          return;
        }
        await expectRefusal(res, [400, 413]);
      }),
      { numRuns: 300 },
    );
  });

  it("ingest: random headers get a JSON 4xx, never a 5xx", async () => {
    const header = fc.record({
      "Content-Type": fc.oneof(
        fc.constantFrom(
          "application/json",
          "text/plain",
          "application/json; charset=utf-8",
          "application/x-www-form-urlencoded",
          "multipart/form-data; boundary=x",
        ),
        fc.string({ maxLength: 40 }),
      ),
      Authorization: fc.oneof(
        fc.constant(`Bearer ${strict.producerToken}`),
        fc.constant(`Bearer ${key}`),
        fc.string({ maxLength: 60 }),
        fc.constant("Bearer"),
      ),
    });
    await fc.assert(
      fc.asyncProperty(header, fc.jsonValue(), async (headers, value) => {
        const safe = Object.fromEntries(Object.entries(headers).filter(([, v]) => /^[\t\x20-\x7e]*$/.test(v)));
        const res = await send("POST", "/v1/events", "ignored", JSON.stringify(value), safe);
        if (res.status === 202) {
          accepted.add(((await res.json()) as { delivery_id: string }).delivery_id);
          return;
        }
        await expectRefusal(res, [400, 401, 413, 415]);
      }),
      { numRuns: 200 },
    );
  });

  it("org API: random URLs and queries get 200 or a JSON 400, and a refused URL changes nothing", async () => {
    const host = fc.oneof(
      fc.domain(),
      fc.ipV4().map(String),
      fc.ipV4Extended().map(String),
      fc.ipV6().map((ip) => `[${ip}]`),
      fc.constantFrom("localhost", "127.1", "0x7f.1"),
    );
    const url = fc.oneof(
      fc
        .tuple(fc.constantFrom("https", "http", "ftp", "HTTPS"), host, fc.webPath())
        .map(([s, h, p]) => `${s}://${h}${p}`),
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc.string({ maxLength: 80 }),
    );
    // An org of its own, with no events: a retry of FUZZ_ORG's (sent to the org default at
    // attempt time) must never find a fuzzed URL, some of them real hosts, as that default.
    const urlOrg = await send("POST", "/v1/orgs/org_fuzz_urls/api-keys", strict.operatorToken, {});
    const urlKey = ((await urlOrg.json()) as { key: string }).key;
    await fc.assert(
      fc.asyncProperty(url, async (candidate) => {
        const before = (await (await send("GET", "/v1/webhook", urlKey)).json()) as { webhook_url: string | null };
        const res = await send("PUT", "/v1/webhook", urlKey, { webhook_url: candidate });
        const after = (await (await send("GET", "/v1/webhook", urlKey)).json()) as { webhook_url: string | null };
        if (res.status === 200) {
          expect(candidate.toLowerCase().startsWith("https://")).toBe(true);
          expect(after.webhook_url).toBe(candidate);
        } else {
          await expectRefusal(res);
          expect(after.webhook_url).toBe(before.webhook_url);
        }
      }),
      { numRuns: 200 },
    );
    const query = fc.record(
      {
        limit: fc.oneof(fc.integer({ min: -5, max: 200 }).map(String), fc.string({ maxLength: 8 })),
        outcome: fc.string({ maxLength: 10 }),
        cursor: fc.string({ maxLength: 40 }),
        job_id: fc.string({ maxLength: 20 }),
        delivery_id: fc.string({ maxLength: 40 }),
      },
      { requiredKeys: [] },
    );
    // Another org's key for the queries: one org's budget is 1,200 requests a minute.
    const created = await send("POST", "/v1/orgs/org_fuzz_queries/api-keys", strict.operatorToken, {});
    const queryKey = ((await created.json()) as { key: string }).key;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("/v1/webhook-logs", "/v1/deliveries"), query, async (path, params) => {
        const res = await send("GET", `${path}?${new URLSearchParams(params)}`, queryKey);
        if (res.status === 200) return;
        await expectRefusal(res);
      }),
      { numRuns: 200 },
    );
  });

  it("stored exactly the deliveries it accepted, nothing it refused", async () => {
    // One refused and one accepted event of its own, in that order, so that run alone (`-t`)
    // it still checks both sides; in a full run, also every event the tests above sent. A
    // refused event, had it been queued, would be logged no later than the accepted one after it.
    const refused = event({ webhook_url: "https://169.254.169.254/latest/meta-data/" });
    expect(await expectRefusal(await send("POST", "/v1/events", strict.producerToken, refused))).toBe(
      "invalid_request",
    );
    const own = await send("POST", "/v1/events", strict.producerToken, event());
    expect(own.status).toBe(202);
    accepted.add(((await own.json()) as { delivery_id: string }).delivery_id);

    // A delivery is listed once its first attempt is logged: wait for every accepted one.
    const stored = await untilStored((ids) => [...accepted].every((id) => ids.has(id)), 45_000);
    expect([...stored].sort()).toEqual([...accepted].sort());
    record(
      "hostile input",
      "fuzzed requests (fast-check)",
      `${tried} tried, stored only the ${accepted.size} accepted`,
    );
  });
});

/** FUZZ_ORG's deliveries, every page, read once a second until `done` holds for them. */
async function untilStored(done: (ids: Set<string>) => boolean, timeoutMs: number): Promise<Set<string>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ids = new Set<string>();
    let cursor: string | null = null;
    do {
      const query = `limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const res = await fetch(`${strict.url}/v1/deliveries?${query}`, { headers: { Authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      const page = (await res.json()) as { data: Array<{ id: string }>; next_cursor: string | null };
      for (const d of page.data) ids.add(d.id);
      cursor = page.next_cursor;
    } while (cursor);
    if (done(ids) || Date.now() > deadline) return ids;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
