import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { deliveryIdFor } from "../../src/delivery/message";
import { insertAttempts } from "../../src/store/attempts";
import { listAttempts, listDeliveries } from "../../src/store/log";
import { attemptRecord, call, jobEvent, logDbOf, messageFor, orgKey, receiver, runLanes, uniqueId } from "./helpers";

/**
 * "Logs → Webhook logs" through the real HTTP surface: what a customer sees of every
 * attempt, how they filter and page it, and what one attempt shows when expanded.
 */

interface Summary {
  id: string;
  delivery_id: string;
  job_id: string;
  event_type: string;
  attempt: number;
  status_code: number | null;
  response_time_ms: number;
  attempted_at: string;
  outcome: "succeeded" | "failed";
  error: string | null;
}
interface Page {
  data: Summary[];
  next_cursor: string | null;
}

const orgId = uniqueId("org");
let key: string;
const ok = receiver(uniqueId("ok"));
const failing = receiver(uniqueId("failing"));
const jobs = { ok: [] as string[], failing: [] as string[] };

/**
 * Delivers a job.completed for `jobId` once (one attempt; the failing receiver shares
 * the others' endpoint, so after a few failures the endpoint's deliveries take the slow lane).
 */
async function deliver(
  jobId: string,
  url: string,
  type: "job.completed" | "job.failed" = "job.completed",
  org = orgId,
) {
  const message = { id: uniqueId("msg"), body: await messageFor({ ...jobEvent(org, jobId), type }, url) };
  await runLanes([message]);
  return message;
}

/**
 * An org of its own, for a test that adds attempts: the shared org's log stays as
 * `beforeAll` made it, so the other tests hold in any order.
 */
async function ownOrg() {
  const org = uniqueId("org");
  return { org, token: await orgKey(org) };
}

async function logs(query = "", token = key): Promise<Page> {
  const res = await call("GET", `/v1/webhook-logs${query}`, { token });
  expect(res.status).toBe(200);
  return (await res.json()) as Page;
}

async function allPages(query: string, token = key): Promise<Summary[]> {
  const seen: Summary[] = [];
  let cursor: string | null = null;
  do {
    const sep = query ? "&" : "?";
    const page = await logs(cursor ? `${query}${sep}cursor=${encodeURIComponent(cursor)}` : query, token);
    seen.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return seen;
}

beforeAll(async () => {
  key = await orgKey(orgId);
  await failing.script({ replies: [{ status: 503, body: "maintenance" }] });
  for (let i = 0; i < 7; i++) {
    const jobId = uniqueId("job");
    jobs.ok.push(jobId);
    await deliver(jobId, ok.url);
  }
  for (let i = 0; i < 3; i++) {
    const jobId = uniqueId("job");
    jobs.failing.push(jobId);
    await deliver(jobId, failing.url);
  }
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe("GET /v1/webhook-logs", () => {
  it("lists the org's attempts newest first, with the seed's columns", async () => {
    const { data, next_cursor } = await logs();
    expect(data).toHaveLength(10);
    expect(next_cursor).toBeNull();
    const times = data.map((a) => Date.parse(a.attempted_at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(data[0]).toEqual({
      id: expect.stringMatching(/^att_[0-9a-f]{32}_1$/),
      delivery_id: await deliveryIdFor(orgId, "job.completed", jobs.failing[2]!),
      job_id: jobs.failing[2],
      event_type: "job.completed",
      attempt: 1,
      status_code: 503,
      response_time_ms: expect.any(Number),
      attempted_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      outcome: "failed",
      error: "http_status",
      error_detail: null, // the status says it all
      url: failing.url,
    });
  });

  it("pages with limit and an opaque cursor, each attempt exactly once", async () => {
    const first = await logs("?limit=3");
    expect(first.data).toHaveLength(3);
    expect(first.next_cursor).toEqual(expect.any(String));
    const all = await allPages("?limit=3");
    expect(all.map((a) => a.id)).toEqual((await logs("?limit=100")).data.map((a) => a.id));
    expect(new Set(all.map((a) => a.id)).size).toBe(10);
  });

  it("stays stable while new attempts arrive during paging: nothing skipped or repeated", async () => {
    const { org, token } = await ownOrg();
    for (let i = 0; i < 10; i++) await deliver(uniqueId("job"), ok.url, "job.completed", org);
    const before = (await logs("?limit=100", token)).data.map((a) => a.id);
    expect(before).toHaveLength(10);
    const seen: string[] = [];
    let page = await logs("?limit=4", token);
    seen.push(...page.data.map((a) => a.id));
    while (page.next_cursor) {
      await deliver(uniqueId("job"), ok.url, "job.completed", org); // a newer attempt lands between two pages
      page = await logs(`?limit=4&cursor=${encodeURIComponent(page.next_cursor)}`, token);
      seen.push(...page.data.map((a) => a.id));
    }
    expect(seen).toEqual(before);
    // Pages of 4, 4 and 2: the two that followed another each let one attempt in.
    expect((await logs("?limit=100", token)).data).toHaveLength(12);
  });

  it("filters by outcome", async () => {
    const failed = await allPages("?outcome=failed&limit=2");
    expect(failed.map((a) => a.job_id).sort()).toEqual([...jobs.failing].sort());
    expect(failed.every((a) => a.outcome === "failed")).toBe(true);
    const succeeded = (await logs("?outcome=succeeded&limit=100")).data;
    expect(succeeded.every((a) => a.outcome === "succeeded" && a.status_code === 200)).toBe(true);
    expect(succeeded.map((a) => a.job_id).sort()).toEqual([...jobs.ok].sort());
  });

  it("filters by job_id, across the job's event types", async () => {
    const { org, token } = await ownOrg();
    const jobId = uniqueId("job");
    await deliver(jobId, ok.url, "job.completed", org);
    await deliver(jobId, failing.url, "job.failed", org);
    await deliver(uniqueId("job"), ok.url, "job.completed", org);
    const { data } = await logs(`?job_id=${jobId}`, token);
    expect(data.map((a) => a.event_type).sort()).toEqual(["job.completed", "job.failed"]);
    expect(data.every((a) => a.job_id === jobId)).toBe(true);
    expect((await logs(`?job_id=${jobId}&outcome=failed`, token)).data.map((a) => a.event_type)).toEqual([
      "job.failed",
    ]);
  });

  it("filters by delivery_id", async () => {
    const deliveryId = await deliveryIdFor(orgId, "job.completed", jobs.ok[1]!);
    expect((await logs(`?delivery_id=${deliveryId}`)).data.map((a) => a.delivery_id)).toEqual([deliveryId]);
    expect((await logs(`?delivery_id=${deliveryId}&job_id=${jobs.ok[2]}`)).data).toEqual([]);
  });

  it.each([
    ["limit=0"],
    ["limit=101"],
    ["limit=ten"],
    ["outcome=maybe"],
    ["delivery_id=dlv_nothex"],
    ["job_id=job%2F1"],
    ["cursor=bm90LWEtY3Vyc29y"],
    ["cursor=%%%"],
  ])("answers 400 to ?%s", async (query) => {
    const res = await call("GET", `/v1/webhook-logs?${query}`, { token: key });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_request" } });
  });
});

describe("GET /v1/webhook-logs/{attempt_id}", () => {
  it("expands an attempt: the request as sent and the response as received", async () => {
    const [latestFailure] = (await logs("?outcome=failed&limit=1")).data;
    const res = await call("GET", `/v1/webhook-logs/${latestFailure!.id}`, { token: key });
    expect(res.status).toBe(200);
    const detail = (await res.json()) as Summary & {
      url: string;
      request: { headers: Record<string, string>; body: string };
      response: { headers: Record<string, string>; body: string; truncated: boolean };
    };
    expect(detail).toMatchObject({ ...latestFailure, url: failing.url });
    const [received] = (await failing.requests()).filter(
      (r) => r.headers["x-zupertry-delivery"] === latestFailure!.delivery_id,
    );
    expect(detail.request.body).toBe(received!.text);
    expect(detail.request.headers["X-Zupertry-Signature"]).toBe(received!.headers["x-zupertry-signature"]);
    expect(detail.request.headers["webhook-signature"]).toBe(received!.headers["webhook-signature"]);
    expect(detail.response).toMatchObject({
      body: "maintenance",
      truncated: false,
      headers: { "content-type": "application/json" },
    });
  });

  it("marks a stored response body that was cut", async () => {
    const big = receiver(uniqueId("big"));
    await big.script({ replies: [{ bodyBytes: 100_000 }] });
    const { org, token } = await ownOrg();
    const message = await deliver(uniqueId("job"), big.url, "job.completed", org);
    const id = `att_${message.body.delivery_id.slice(4)}_1`;
    const detail = (await (await call("GET", `/v1/webhook-logs/${id}`, { token })).json()) as {
      response: { body: string; truncated: boolean };
    };
    expect(detail.response.truncated).toBe(true);
    expect(detail.response.body).toHaveLength(65_536);
  });

  it.each(["att_nope", "att_00000000000000000000000000000000_1", "dlv_x", `att_${"a".repeat(32)}_0`])(
    "answers 404 to %s",
    async (id) => {
      const res = await call("GET", `/v1/webhook-logs/${id}`, { token: key });
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: "not_found" } });
    },
  );
});

describe("the log queries", () => {
  it("each list page is one indexed D1 query, never a scan of the attempts table", async () => {
    // The API reads through a Sessions API session of the org's shard.
    const db = await logDbOf(orgId);
    const prepare = vi.spyOn(Object.getPrototypeOf(db.withSession()) as D1DatabaseSession, "prepare");
    const bind = vi.spyOn(Object.getPrototypeOf(db.prepare("SELECT 1")) as D1PreparedStatement, "bind");
    const deliveryId = await deliveryIdFor(orgId, "job.completed", jobs.ok[3]!);
    const cursor = (await logs("?limit=2")).next_cursor!;
    const queries = [
      "",
      "?outcome=failed",
      "?outcome=succeeded",
      `?job_id=${jobs.ok[3]}`,
      `?delivery_id=${deliveryId}`,
      `?cursor=${encodeURIComponent(cursor)}`,
      `?outcome=failed&cursor=${encodeURIComponent(cursor)}`,
      "?event_type=job.completed",
      "?since=2026-01-01T00:00:00Z&until=2036-01-01T00:00:00Z",
      "?outcome=failed&since=2026-01-01T00:00:00Z",
    ];
    for (const query of queries) {
      prepare.mockClear();
      bind.mockClear();
      await logs(query);
      const expected = /job_id|delivery_id/.test(query)
        ? /^SEARCH attempts USING PRIMARY KEY \(delivery_id=\?\)/
        : /^SEARCH attempts USING (COVERING )?INDEX attempts_(failed_)?by_org \(org_id=\?/;
      await expectIndexedPage(db, listStatements(prepare, bind), expected, query);
    }
  });

  it("lists deliveries with one indexed query too", async () => {
    // The API reads through a Sessions API session of the org's shard.
    const db = await logDbOf(orgId);
    const prepare = vi.spyOn(Object.getPrototypeOf(db.withSession()) as D1DatabaseSession, "prepare");
    const bind = vi.spyOn(Object.getPrototypeOf(db.prepare("SELECT 1")) as D1PreparedStatement, "bind");
    for (const query of [
      "",
      "&status=failed",
      "&status=pending&event_type=job.completed",
      "&since=2026-01-01T00:00:00Z&until=2036-01-01T00:00:00Z",
    ]) {
      prepare.mockClear();
      bind.mockClear();
      const res = await call("GET", `/v1/deliveries?limit=5${query}`, { token: key });
      expect(res.status).toBe(200);
      const expected = /^SEARCH first USING (COVERING )?INDEX attempts_by_org \(org_id=\?/;
      await expectIndexedPage(db, listStatements(prepare, bind), expected, query);
    }
  });
});

describe("a filter the index does not hold", () => {
  it("reads at most the scan budget a page, and says where it stopped, until the match is found", async () => {
    const orgId = uniqueId("org");
    const db = await logDbOf(orgId);
    const base = Date.now() - 3_600_000;
    // Eight deliveries; only the oldest is a job.failed.
    const records = Array.from({ length: 8 }, (_, i) =>
      attemptRecord({
        delivery_id: `dlv_${String(i).padStart(32, "a")}`,
        org_id: orgId,
        attempted_at: base + i * 1000,
        event_type: i === 0 ? "job.failed" : "job.completed",
      }),
    );
    await insertAttempts(db, records);
    for (const list of ["deliveries", "attempts"] as const) {
      const found: string[] = [];
      let pages = 0;
      let after: Record<string, unknown> | undefined;
      do {
        const q = { org_id: orgId, event_type: "job.failed", limit: 3 };
        const page =
          list === "deliveries"
            ? await listDeliveries(db, { ...q, after: after as never }, 3)
            : await listAttempts(db, { ...q, after: after as never }, 3);
        found.push(...page.rows.map((r) => r.delivery_id));
        after = page.scannedTo as Record<string, unknown> | undefined;
        pages++;
      } while (after && pages < 10);
      // Three rows read a page: the match is in the third page, which reads the last two.
      expect({ list, found, pages }).toEqual({ list, found: [records[0]!.delivery_id], pages: 3 });
    }
  });
});

type Spy = { mock: { calls: unknown[][]; invocationCallOrder: number[] } };

/** The list statements a request prepared, each with the values bound to it. */
function listStatements(prepare: Spy, bind: Spy): Array<{ sql: string; args: unknown[] }> {
  const binds = bind.mock.calls.map((args, i) => ({ args, order: bind.mock.invocationCallOrder[i]! }));
  return prepare.mock.calls.flatMap(([sql], i) => {
    if (typeof sql !== "string" || !sql.includes("FROM attempts")) return [];
    const order = prepare.mock.invocationCallOrder[i]!;
    return [{ sql, args: binds.find((b) => b.order > order)?.args ?? [] }];
  });
}

/**
 * A list page is one indexed query, or, with a filter the index does not hold, two in one
 * round trip: the page, bounded below by the budget-th index entry (its floor), and that
 * floor for the next cursor. Never a scan of the table, and no sort: the index is the order.
 */
async function expectIndexedPage(
  db: D1Database,
  statements: Array<{ sql: string; args: unknown[] }>,
  search: RegExp,
  query: string,
): Promise<void> {
  const bounded = statements.some(({ sql }) => sql.includes("WITH floor"));
  expect(statements, query).toHaveLength(bounded ? 2 : 1);
  for (const { sql, args } of statements) {
    const plan = await db
      .prepare(`EXPLAIN QUERY PLAN ${sql}`)
      .bind(...args)
      .all<{ detail: string }>();
    const details = plan.results.map((r) => r.detail);
    expect(
      details.some((d) => search.test(d)),
      `${query}\n${details.join("\n")}`,
    ).toBe(true);
    expect(
      details.filter((d) => /^SCAN (attempts|first|last|a|m|ok)\b/.test(d)),
      query,
    ).toEqual([]);
    if (!/job_id|delivery_id/.test(query)) {
      expect(
        details.filter((d) => /TEMP B-TREE/.test(d)),
        query,
      ).toEqual([]);
    }
  }
}
