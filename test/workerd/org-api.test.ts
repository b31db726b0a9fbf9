import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { orgSettings, PREVIOUS_SECRET_GRACE_MS } from "../../src/org/org-settings";
import { call, jobEvent, OPERATOR_TOKEN, orgKey, PRODUCER_TOKEN, uniqueId } from "./helpers";

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("POST /v1/orgs/{org_id}/api-keys", () => {
  it("issues a zk_ key once and stores only its hash", async () => {
    const orgId = uniqueId("org");
    const res = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: { name: "ci" } });
    expect(res.status).toBe(201);
    const created = (await res.json()) as { id: string; key: string; org_id: string; name: string; created_at: string };
    expect(created).toEqual({
      id: expect.stringMatching(/^key_/),
      key: expect.stringMatching(/^zk_[A-Za-z0-9_-]{43}$/),
      org_id: orgId,
      name: "ci",
      created_at: expect.any(String),
    });
    const { results } = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(created.id).run();
    expect(JSON.stringify(results)).not.toContain(created.key);
    expect(results[0]).toMatchObject({ org_id: orgId, key_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it("accepts a request without a body, with or without a JSON Content-Type", async () => {
    for (const headers of [{}, { "Content-Type": "application/json" }] as Record<string, string>[]) {
      const res = await call("POST", `/v1/orgs/${uniqueId("org")}/api-keys`, { token: OPERATOR_TOKEN, headers });
      expect(res.status).toBe(201);
      expect(await res.json()).toMatchObject({ name: null });
    }
  });

  it.each([
    ["no credentials", undefined, "org_x", 401],
    ["a wrong token", "nope", "org_x", 401],
    ["the producer token (it queues events, and mints no key)", PRODUCER_TOKEN, "org_x", 401],
    ["a bad org id", OPERATOR_TOKEN, "org%20x", 400],
  ])("refuses %s", async (_name, token, orgId, status) => {
    const res = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token, body: {} });
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: { code: status === 401 ? "unauthorized" : "invalid_request" } });
  });

  it("refuses an org API key: issuing keys is for operators", async () => {
    const orgId = uniqueId("org");
    const res = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: await orgKey(orgId), body: {} });
    expect(res.status).toBe(401);
  });
});

describe("DELETE /v1/orgs/{org_id}/api-keys/{id}", () => {
  it("revokes a key: it answers 401 from the next request on", async () => {
    const orgId = uniqueId("org");
    const res = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: {} });
    const { id, key } = (await res.json()) as { id: string; key: string };
    expect((await call("GET", "/v1/webhook", { token: key })).status).toBe(200);

    expect((await call("DELETE", `/v1/orgs/${orgId}/api-keys/${id}`, { token: OPERATOR_TOKEN })).status).toBe(204);
    const after = await call("GET", "/v1/webhook", { token: key });
    expect(after.status).toBe(401);
    expect(await after.json()).toMatchObject({ error: { code: "unauthorized" } });
    expect((await call("DELETE", `/v1/orgs/${orgId}/api-keys/${id}`, { token: OPERATOR_TOKEN })).status).toBe(404);
  });

  it("does not revoke another org's key through this org's path", async () => {
    const [orgA, orgB] = [uniqueId("org"), uniqueId("org")];
    const res = await call("POST", `/v1/orgs/${orgB}/api-keys`, { token: OPERATOR_TOKEN, body: {} });
    const { id, key } = (await res.json()) as { id: string; key: string };
    const attempt = await call("DELETE", `/v1/orgs/${orgA}/api-keys/${id}`, { token: OPERATOR_TOKEN });
    expect(attempt.status).toBe(404);
    expect((await call("GET", "/v1/webhook", { token: key })).status).toBe(200);
  });
});

/** Issues a named key for `orgId` through the operator route. */
async function issueKey(orgId: string, name: string): Promise<{ id: string; key: string }> {
  const res = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: { name } });
  return (await res.json()) as { id: string; key: string };
}

interface KeySummary {
  id: string;
  name: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  in_use: boolean;
}

async function ownKeys(token: string, query = ""): Promise<{ data: KeySummary[]; next_cursor: string | null }> {
  const res = await call("GET", `/v1/api-keys${query}`, { token });
  expect(res.status).toBe(200);
  return (await res.json()) as { data: KeySummary[]; next_cursor: string | null };
}

describe("the org's own keys: GET and DELETE /v1/api-keys", () => {
  it("lists this org's keys newest first, with when each was used and revoked, never a key", async () => {
    const orgId = uniqueId("org");
    const ci = await issueKey(orgId, "ci");
    // "Newest first" is by creation time in ms; keys of the same ms come in id order.
    const issuedAt = Date.now();
    await vi.waitUntil(() => Date.now() > issuedAt, { interval: 1 });
    const laptop = await issueKey(orgId, "laptop");
    await issueKey(uniqueId("org"), "someone else's");
    expect((await call("DELETE", `/v1/orgs/${orgId}/api-keys/${ci.id}`, { token: OPERATOR_TOKEN })).status).toBe(204);
    // The laptop key is used once; its use is written in the background.
    expect((await call("GET", "/v1/webhook", { token: laptop.key })).status).toBe(200);
    await vi.waitUntil(async () => {
      const row = await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE id = ?").bind(laptop.id).first();
      return row?.last_used_at !== null;
    });

    const { data, next_cursor } = await ownKeys(laptop.key);
    expect(next_cursor).toBeNull();
    expect(data.map((k) => [k.id, k.name])).toEqual([
      [laptop.id, "laptop"],
      [ci.id, "ci"],
    ]);
    expect(data[0]).toMatchObject({ revoked_at: null, last_used_at: expect.any(String), in_use: true });
    expect(data[1]).toMatchObject({ revoked_at: expect.any(String), last_used_at: null, in_use: false });
    expect(JSON.stringify(data)).not.toMatch(/zk_|key_hash/);
    // Operators see the same list.
    const operator = await call("GET", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN });
    expect(((await operator.json()) as { data: KeySummary[] }).data.map((k) => k.id)).toEqual([laptop.id, ci.id]);
    // Pages.
    const first = await ownKeys(laptop.key, "?limit=1");
    const second = await ownKeys(laptop.key, `?limit=1&cursor=${first.next_cursor}`);
    expect([...first.data, ...second.data].map((k) => k.id)).toEqual([laptop.id, ci.id]);
  });

  it("revokes one of the org's keys, the one in use included; another org's key is not found", async () => {
    const orgId = uniqueId("org");
    const old = await issueKey(orgId, "old");
    const current = await issueKey(orgId, "current");
    const stranger = await issueKey(uniqueId("org"), "stranger");

    expect((await call("DELETE", `/v1/api-keys/${stranger.id}`, { token: current.key })).status).toBe(404);
    expect((await call("GET", "/v1/webhook", { token: stranger.key })).status).toBe(200);

    expect((await call("DELETE", `/v1/api-keys/${old.id}`, { token: current.key })).status).toBe(204);
    expect((await call("GET", "/v1/webhook", { token: old.key })).status).toBe(401);
    expect((await call("DELETE", `/v1/api-keys/${old.id}`, { token: current.key })).status).toBe(404);

    expect((await call("DELETE", `/v1/api-keys/${current.id}`, { token: current.key })).status).toBe(204);
    expect((await call("GET", "/v1/api-keys", { token: current.key })).status).toBe(401);
  });

  it("cannot mint keys: an org key is refused on the operator routes", async () => {
    const orgId = uniqueId("org");
    const { key } = await issueKey(orgId, "leaked");
    expect((await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: key, body: {} })).status).toBe(401);
    expect((await call("GET", `/v1/orgs/${orgId}/api-keys`, { token: key })).status).toBe(401);
    expect((await call("POST", "/v1/api-keys", { token: key, body: {} })).status).toBe(404);
    expect((await ownKeys(key)).data).toHaveLength(1);
  });

  it("issues no key while the operator token is the producer's: a misconfiguration, not a credential", async () => {
    const sameTokens = { ...env, OPERATOR_TOKEN: PRODUCER_TOKEN };
    const orgId = uniqueId("org");
    const mint = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: PRODUCER_TOKEN, body: {}, env: sameTokens });
    expect(mint.status).toBe(500);
    expect(await mint.json()).toEqual({
      error: { code: "internal", message: "the operator token must differ from the producer token" },
    });
    const keys = await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys WHERE org_id = ?").bind(orgId).first("n");
    expect(keys).toBe(0);
    // Ingest is not the operator's: the producer still queues events.
    const ingest = await call("POST", "/v1/events", {
      token: PRODUCER_TOKEN,
      body: jobEvent(orgId, uniqueId("job")),
      env: sameTokens,
    });
    expect(ingest.status).toBe(202);
  });

  it("writes last_used_at at most once per 5 minutes per key, not once per request", async () => {
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    const orgId = uniqueId("org");
    const { id, key } = await issueKey(orgId, "busy");
    const lastUsed = async () =>
      (await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE id = ?")
        .bind(id)
        .first<number | null>("last_used_at")) ?? null;
    const update = vi.spyOn(Object.getPrototypeOf(env.DB) as D1Database, "prepare");
    const writes = () => update.mock.calls.filter(([sql]) => sql.startsWith("UPDATE api_keys SET last_used_at"));

    expect((await call("GET", "/v1/webhook", { token: key })).status).toBe(200);
    await vi.waitUntil(async () => (await lastUsed()) !== null);
    const first = (await lastUsed())!;
    for (let i = 0; i < 20; i++) await call("GET", "/v1/webhook", { token: key });
    vi.setSystemTime(Date.now() + 4 * 60 * 1000);
    await call("GET", "/v1/webhook", { token: key });
    expect(await lastUsed()).toBe(first);
    expect(writes()).toHaveLength(1);

    vi.setSystemTime(Date.now() + 2 * 60 * 1000);
    await call("GET", "/v1/webhook", { token: key });
    await vi.waitUntil(async () => (await lastUsed()) !== first);
    expect((await lastUsed())! - first).toBeGreaterThanOrEqual(6 * 60 * 1000);
    expect(writes()).toHaveLength(2);
  });
});

describe("GET and PUT /v1/webhook", () => {
  it("creates the signing secret on first read and keeps it", async () => {
    const key = await orgKey(uniqueId("org"));
    const first = await call("GET", "/v1/webhook", { token: key });
    expect(first.status).toBe(200);
    const settings = (await first.json()) as { signing_secret: string };
    expect(settings).toEqual({
      webhook_url: null,
      signing_secret: expect.stringMatching(/^whsec_/),
      secret_rotated_at: null,
      health: null,
      listeners: 0,
    });
    expect(await (await call("GET", "/v1/webhook", { token: key })).json()).toEqual(settings);
  });

  it("sets, shows and clears the org default URL", async () => {
    const key = await orgKey(uniqueId("org"));
    const put = await call("PUT", "/v1/webhook", {
      token: key,
      body: { webhook_url: "https://your-app.com/webhooks/zupertry" },
    });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({
      webhook_url: "https://your-app.com/webhooks/zupertry",
      signing_secret: expect.stringMatching(/^whsec_/),
    });
    expect(await (await call("GET", "/v1/webhook", { token: key })).json()).toMatchObject({
      webhook_url: "https://your-app.com/webhooks/zupertry",
    });
    const cleared = await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: null } });
    expect(await cleared.json()).toMatchObject({ webhook_url: null });
  });

  it.each([
    ["a private address", { webhook_url: "https://10.1.2.3/hook" }, "invalid_request", 400],
    ["the metadata address", { webhook_url: "http://169.254.169.254/" }, "invalid_request", 400],
    ["user info", { webhook_url: "https://u:p@your-app.com/" }, "invalid_request", 400],
    ["not a URL", { webhook_url: "your-app.com" }, "invalid_request", 400],
    ["a number", { webhook_url: 5 }, "invalid_request", 400],
    ["a missing field", {}, "invalid_request", 400],
    ["broken JSON", "{", "invalid_json", 400],
  ])("refuses %s and changes nothing", async (_name, body, code, status) => {
    const key = await orgKey(uniqueId("org"));
    await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: "https://your-app.com/hook" } });
    const res = await call("PUT", "/v1/webhook", { token: key, body });
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ error: { code } });
    expect(await (await call("GET", "/v1/webhook", { token: key })).json()).toMatchObject({
      webhook_url: "https://your-app.com/hook",
    });
  });

  it("keeps each org's settings to itself", async () => {
    const [keyA, keyB] = [await orgKey(uniqueId("org")), await orgKey(uniqueId("org"))];
    await call("PUT", "/v1/webhook", { token: keyA, body: { webhook_url: "https://a.example/hook" } });
    const a = (await (await call("GET", "/v1/webhook", { token: keyA })).json()) as { signing_secret: string };
    const b = (await (await call("GET", "/v1/webhook", { token: keyB })).json()) as {
      webhook_url: string | null;
      signing_secret: string;
    };
    expect(b.webhook_url).toBeNull();
    expect(b.signing_secret).not.toBe(a.signing_secret);
  });

  it.each([
    ["no credentials", undefined],
    ["the producer token", PRODUCER_TOKEN],
    ["an unknown key", "zk_unknownunknownunknownunknownunknownunknown1"],
  ])("answers 401 to %s", async (_name, token) => {
    const res = await call("GET", "/v1/webhook", { token });
    expect(res.status).toBe(401);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ error: { code: "unauthorized" } });
    expect(text).not.toContain("whsec_");
  });
});

describe("made-up keys", () => {
  it("are refused without a D1 query, like a key D1 does not hold", async () => {
    const prepare = vi.spyOn(env.DB, "prepare");
    for (const token of ["zk_garbage", `zk_${"a".repeat(44)}`, `zk_${"a".repeat(42)}!`]) {
      const res = await call("GET", "/v1/webhook", { token });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: "unauthorized" } });
    }
    expect(prepare).not.toHaveBeenCalled();
    // A key of the issued shape is looked up.
    expect((await call("GET", "/v1/webhook", { token: `zk_${"a".repeat(43)}` })).status).toBe(401);
    expect(prepare).toHaveBeenCalledTimes(1);
  });
});

describe("the OrgSettings Durable Object", () => {
  it("rotates the secret and keeps the previous one valid for webhook-signature for 24 h", async () => {
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    const org = orgSettings(env, uniqueId("org"));
    const before = await org.getWebhook();
    const rotated = await org.rotateSecret();
    expect(rotated.signing_secret).not.toBe(before.signing_secret);
    expect(rotated.secret_rotated_at).toEqual(expect.any(String));
    expect(await org.getDeliverySettings()).toMatchObject({
      signing_secrets: [rotated.signing_secret, before.signing_secret],
    });

    vi.setSystemTime(Date.now() + PREVIOUS_SECRET_GRACE_MS + 1000);
    expect(await org.getDeliverySettings()).toMatchObject({ signing_secrets: [rotated.signing_secret] });
  });

  it("keeps the newest 4 replaced secrets of a day, however many rotations", async () => {
    const org = orgSettings(env, uniqueId("org"));
    const secrets = [(await org.getWebhook()).signing_secret];
    for (let i = 0; i < 6; i++) secrets.push((await org.rotateSecret()).signing_secret);
    // The current one, then those it replaced, newest first: 4 of the 6.
    expect((await org.getDeliverySettings()).signing_secrets).toEqual(secrets.toReversed().slice(0, 1 + 4));
  });

  it("enforces the URL rules itself, whoever calls it", async () => {
    const org = orgSettings(env, uniqueId("org"));
    expect(await org.setWebhookUrl("https://192.168.1.10/hook")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("private"),
    });
    expect((await org.getDeliverySettings()).webhook_url).toBeNull();
  });
});
