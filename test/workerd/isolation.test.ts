import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { attemptId } from "../../src/api/ids";
import { inflate } from "../../src/store/codec";
import { allLogShards } from "../../src/store/shards";
import {
  call,
  jobEvent,
  messageFor,
  OPERATOR_TOKEN,
  PRODUCER_TOKEN,
  receiver,
  runConsumer,
  uniqueId,
  watchQueue,
} from "./helpers";

/**
 * Every route, walked with every wrong credential, and one org's key against another
 * org's ids. Each answers the documented 401/404 JSON error and leaks nothing: no
 * foreign row, no secret, no hint that a foreign id exists.
 */

interface Org {
  orgId: string;
  key: string;
  keyId: string;
  secret: string;
  deliveryId: string;
  attemptId: string;
}

const logged: string[] = [];
let mine: Org;
let theirs: Org;
let revokedKey: string;

async function setUpOrg(): Promise<Org> {
  const orgId = uniqueId("org");
  const created = (await (
    await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: {} })
  ).json()) as { id: string; key: string };
  const hook = receiver(uniqueId("iso"));
  await call("PUT", "/v1/webhook", { token: created.key, body: { webhook_url: hook.url } });
  const { signing_secret } = (await (await call("GET", "/v1/webhook", { token: created.key })).json()) as {
    signing_secret: string;
  };
  await hook.script({ replies: [{ status: 500 }] });
  const message = await messageFor(jobEvent(orgId, uniqueId("job")), null);
  await runConsumer([{ id: uniqueId("msg"), body: message }], "deliveries", { ...env, RETRY_DELAYS_SECONDS: "" });
  return {
    orgId,
    key: created.key,
    keyId: created.id,
    secret: signing_secret,
    deliveryId: message.delivery_id,
    attemptId: attemptId(message.delivery_id, 1),
  };
}

beforeAll(async () => {
  for (const method of ["log", "error", "warn", "info", "debug"] as const) {
    const original = console[method].bind(console);
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
      original(...args);
    });
  }
  mine = await setUpOrg();
  theirs = await setUpOrg();
  const extra = (await (
    await call("POST", `/v1/orgs/${mine.orgId}/api-keys`, { token: OPERATOR_TOKEN, body: {} })
  ).json()) as { id: string; key: string };
  await call("DELETE", `/v1/orgs/${mine.orgId}/api-keys/${extra.id}`, { token: OPERATOR_TOKEN });
  revokedKey = extra.key;
});

afterAll(() => {
  vi.restoreAllMocks();
});

type Route = { method: string; label: string; path: () => string; body?: unknown };

const orgRoutes: Route[] = [
  { method: "GET", label: "GET /v1/webhook", path: () => "/v1/webhook" },
  {
    method: "PUT",
    label: "PUT /v1/webhook",
    path: () => "/v1/webhook",
    body: { webhook_url: "https://attacker.example/hook" },
  },
  { method: "POST", label: "POST /v1/webhook/rotate-secret", path: () => "/v1/webhook/rotate-secret" },
  {
    method: "POST",
    label: "POST /v1/webhook/test",
    path: () => "/v1/webhook/test",
    body: { webhook_url: "https://attacker.example/hook" },
  },
  { method: "GET", label: "GET /v1/webhook-logs", path: () => "/v1/webhook-logs" },
  { method: "GET", label: "GET /v1/webhook-logs/{attempt_id}", path: () => `/v1/webhook-logs/${mine.attemptId}` },
  { method: "GET", label: "GET /v1/deliveries", path: () => "/v1/deliveries" },
  { method: "GET", label: "GET /v1/deliveries/{id}", path: () => `/v1/deliveries/${mine.deliveryId}` },
  {
    method: "POST",
    label: "POST /v1/deliveries/{id}/redeliver",
    path: () => `/v1/deliveries/${mine.deliveryId}/redeliver`,
  },
];

const producerRoutes: Route[] = [
  { method: "POST", label: "POST /v1/events", path: () => "/v1/events", body: jobEvent("org_iso", "job_iso") },
  {
    method: "POST",
    label: "POST /v1/events/batch",
    path: () => "/v1/events/batch",
    body: { events: [jobEvent("org_iso", "job_iso")] },
  },
];

const operatorRoutes: Route[] = [
  { method: "POST", label: "POST /v1/orgs/{org_id}/api-keys", path: () => `/v1/orgs/${mine.orgId}/api-keys`, body: {} },
  {
    method: "DELETE",
    label: "DELETE /v1/orgs/{org_id}/api-keys/{id}",
    path: () => `/v1/orgs/${mine.orgId}/api-keys/${mine.keyId}`,
  },
];

async function expectRefused(res: Response, status: number, code: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  const text = await res.text();
  expect(JSON.parse(text)).toMatchObject({ error: { code } });
  for (const secret of [mine.secret, theirs.secret, mine.key, theirs.key, "whsec_", mine.orgId, theirs.orgId]) {
    expect(text).not.toContain(secret);
  }
}

describe("org routes refuse bad credentials with 401", () => {
  const variants: Array<[string, () => Record<string, string>]> = [
    ["no credentials", () => ({})],
    ["a malformed header", () => ({ Authorization: `Token ${mine.key}` })],
    ["a bare Bearer", () => ({ Authorization: "Bearer" })],
    ["a revoked key", () => ({ Authorization: `Bearer ${revokedKey}` })],
    ["the producer token", () => ({ Authorization: `Bearer ${PRODUCER_TOKEN}` })],
    ["a made-up key", () => ({ Authorization: `Bearer zk_${"A".repeat(43)}` })],
  ];
  for (const route of orgRoutes) {
    it.each(variants)(`${route.label} with %s`, async (_v, headers) => {
      const settingsBefore = await (await call("GET", "/v1/webhook", { token: mine.key })).text();
      await expectRefused(
        await call(route.method, route.path(), { headers: headers(), body: route.body }),
        401,
        "unauthorized",
      );
      expect(await (await call("GET", "/v1/webhook", { token: mine.key })).text()).toBe(settingsBefore);
    });
  }
});

describe("producer and operator routes refuse bad credentials, and each other's token, with 401", () => {
  const variants: Array<[string, () => Record<string, string>]> = [
    ["no credentials", () => ({})],
    ["a malformed header", () => ({ Authorization: `Basic ${btoa(`x:${PRODUCER_TOKEN}`)}` })],
    ["an org API key", () => ({ Authorization: `Bearer ${mine.key}` })],
    ["a revoked key", () => ({ Authorization: `Bearer ${revokedKey}` })],
  ];
  const routes: Array<[Route, [string, () => Record<string, string>]]> = [
    ...producerRoutes.map((r): [Route, [string, () => Record<string, string>]] => [
      r,
      ["the operator token", () => ({ Authorization: `Bearer ${OPERATOR_TOKEN}` })],
    ]),
    // The job service's token mints no key: a leak of it opens no org's secret or log.
    ...operatorRoutes.map((r): [Route, [string, () => Record<string, string>]] => [
      r,
      ["the producer token", () => ({ Authorization: `Bearer ${PRODUCER_TOKEN}` })],
    ]),
  ];
  for (const [route, otherToken] of routes) {
    it.each([...variants, otherToken])(`${route.label} with %s`, async (_v, headers) => {
      const queue = watchQueue();
      await expectRefused(
        await call(route.method, route.path(), { headers: headers(), body: route.body }),
        401,
        "unauthorized",
      );
      expect(queue.calls()).toHaveLength(0);
      queue.restore();
    });
  }
  it("left the key alive", async () => {
    expect((await call("GET", "/v1/webhook", { token: mine.key })).status).toBe(200);
  });
});

describe("another org's key sees nothing of this org", () => {
  it.each([
    [`GET /v1/webhook-logs/{attempt}`, () => `/v1/webhook-logs/${mine.attemptId}`, "GET"],
    [`GET /v1/deliveries/{id}`, () => `/v1/deliveries/${mine.deliveryId}`, "GET"],
    [`POST /v1/deliveries/{id}/redeliver`, () => `/v1/deliveries/${mine.deliveryId}/redeliver`, "POST"],
  ])("%s answers 404, as for an id that does not exist", async (_name, path, method) => {
    const foreign = await call(method, path(), { token: theirs.key });
    const missing = await call(method, path().replace(mine.deliveryId.slice(4), "f".repeat(32)), { token: theirs.key });
    expect(await foreign.clone().text()).toBe(await missing.text());
    await expectRefused(foreign, 404, "not_found");
  });

  it("lists only its own attempts and deliveries, even filtered by this org's ids", async () => {
    for (const path of ["/v1/webhook-logs", "/v1/deliveries"]) {
      const { data } = (await (await call("GET", path, { token: theirs.key })).json()) as {
        data: Array<{ delivery_id?: string; id: string }>;
      };
      expect(data.map((r) => r.delivery_id ?? r.id)).toEqual([theirs.deliveryId]);
    }
    const filtered = await call("GET", `/v1/webhook-logs?delivery_id=${mine.deliveryId}`, { token: theirs.key });
    expect(await filtered.json()).toEqual({ data: [], next_cursor: null });
  });

  it("reads and changes only its own settings", async () => {
    const before = await (await call("GET", "/v1/webhook", { token: mine.key })).json();
    await call("PUT", "/v1/webhook", { token: theirs.key, body: { webhook_url: "https://theirs.example/hook" } });
    await call("POST", "/v1/webhook/rotate-secret", { token: theirs.key });
    expect(await (await call("GET", "/v1/webhook", { token: mine.key })).json()).toEqual(before);
  });

  it("cannot revoke this org's key through its own org path", async () => {
    const res = await call("DELETE", `/v1/orgs/${theirs.orgId}/api-keys/${mine.keyId}`, { token: OPERATOR_TOKEN });
    expect(res.status).toBe(404);
    expect((await call("GET", "/v1/webhook", { token: mine.key })).status).toBe(200);
  });
});

describe("secrets", () => {
  it("never appear in a log line or an attempt record", async () => {
    const hook = receiver(uniqueId("secret-check"));
    await call("POST", "/v1/webhook/test", { token: mine.key, body: { webhook_url: hook.url } });
    await vi.waitUntil(async () => (await hook.requests()).length === 1, { timeout: 10_000, interval: 50 });
    await call("GET", "/v1/webhook-logs", { token: "zk_garbage" });
    const results = (
      await Promise.all(
        allLogShards(env).map(async ({ db }) => (await db.prepare("SELECT * FROM attempts").all()).results),
      )
    ).flat();
    // The bulky columns are stored compressed: read as they are, they would hide anything.
    const readable = results.map((row) => ({
      ...row,
      request_body: row.request_body === null ? null : inflate(row.request_body as ArrayBuffer),
      exchange: row.exchange === null ? null : inflate(row.exchange as ArrayBuffer),
    }));
    expect(readable.some((row) => String(row.exchange).includes("signatures"))).toBe(true);
    const stored = JSON.stringify(readable);
    const everything = logged.join("\n");
    // The secrets as they are now (an earlier test rotated one), and as they were.
    const current = await Promise.all(
      [mine.key, theirs.key].map(
        async (token) =>
          ((await (await call("GET", "/v1/webhook", { token })).json()) as { signing_secret: string }).signing_secret,
      ),
    );
    for (const secret of [
      ...current,
      mine.secret,
      theirs.secret,
      mine.key,
      theirs.key,
      revokedKey,
      PRODUCER_TOKEN,
      OPERATOR_TOKEN,
    ]) {
      expect(stored).not.toContain(secret);
      expect(everything).not.toContain(secret);
    }
    expect(stored).not.toContain("whsec_");
    expect(everything).not.toContain("whsec_");
  });
});
