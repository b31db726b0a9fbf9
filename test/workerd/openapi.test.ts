import { env } from "cloudflare:workers";
import { type Schema, Validator } from "@cfworker/json-schema";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { ERROR_CODES } from "../../src/api/errors";
import {
  call,
  jobEvent,
  messageFor,
  OPERATOR_TOKEN,
  orgKey,
  PRODUCER_TOKEN,
  receiver,
  runConsumer,
  uniqueId,
  watchQueue,
} from "./helpers";

/** /openapi.json is generated from the route schemas, and real answers match it. */

interface OpenApiDoc {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
        security?: unknown[];
        parameters?: Array<{ name: string; in: string }>;
        requestBody?: unknown;
      }
    >
  >;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, unknown> };
}

let doc: OpenApiDoc;

beforeAll(async () => {
  const res = await call("GET", "/openapi.json");
  expect(res.status).toBe(200);
  doc = (await res.json()) as OpenApiDoc;
});

/** The credential a route's `security` names: the producer's, the operator's, or this org key. */
function tokenFor(security: unknown, orgKey: string): string {
  const scheme = JSON.stringify(security);
  return scheme.includes("producerToken") ? PRODUCER_TOKEN : scheme.includes("operatorToken") ? OPERATOR_TOKEN : orgKey;
}

/** Checks a real response against the schema the document gives for it. */
async function expectConforms(res: Response, path: string, method: string): Promise<void> {
  const spec = doc.paths[path]?.[method]?.responses[String(res.status)];
  expect(spec, `${method} ${path} documents ${res.status}`).toBeDefined();
  const schema = spec!.content?.["application/json"]?.schema;
  expect(schema, `${method} ${path} ${res.status} has a JSON schema`).toBeDefined();
  const validator = new Validator({ ...schema, components: doc.components } as Schema, "2020-12", false);
  const result = validator.validate(await res.json());
  expect(result.errors, `${method} ${path} ${res.status}`).toEqual([]);
}

describe("/openapi.json", () => {
  it("documents every route of the API, with security and the error shape", () => {
    expect(doc.openapi).toBe("3.1.0");
    const operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual(
      [
        "GET /",
        "GET /health",
        "POST /v1/events",
        "POST /v1/events/batch",
        "POST /v1/orgs/{org_id}/api-keys",
        "GET /v1/orgs/{org_id}/api-keys",
        "DELETE /v1/orgs/{org_id}/api-keys/{id}",
        "GET /v1/api-keys",
        "DELETE /v1/api-keys/{id}",
        "GET /v1/listen",
        "GET /v1/listen/deliveries",
        "GET /v1/webhook",
        "PUT /v1/webhook",
        "POST /v1/webhook/rotate-secret",
        "POST /v1/webhook/test",
        "GET /v1/webhook-logs",
        "GET /v1/webhook-logs/{attempt_id}",
        "GET /v1/deliveries",
        "GET /v1/deliveries/{id}",
        "POST /v1/deliveries/{id}/redeliver",
      ].sort(),
    );
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/v1/")) continue;
      for (const [method, op] of Object.entries(ops)) {
        expect(op.security, `${method} ${path}`).toHaveLength(1);
        for (const status of ["401", "500"]) {
          expect(op.responses[status]?.content?.["application/json"]?.schema, `${method} ${path} ${status}`).toEqual({
            $ref: "#/components/schemas/Error",
          });
        }
      }
    }
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["operatorToken", "orgKey", "producerToken"]);
  });

  it("refuses every documented route without credentials, with a JSON 401 (no route forgets its auth)", async () => {
    const sample = (path: string) =>
      path
        .replace("{org_id}", uniqueId("org"))
        .replace("{id}", "ak_00000000000000000000000000000000")
        .replace("{attempt_id}", "att_00000000000000000000000000000000_1");
    let walked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/v1/")) continue;
      for (const method of Object.keys(ops)) {
        const res = await call(method.toUpperCase(), sample(path), { body: method === "get" ? undefined : {} });
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(((await res.json()) as { error: { code: string } }).error.code, `${method} ${path}`).toBe(
          "unauthorized",
        );
        walked++;
      }
    }
    expect(walked).toBe(18);
  });

  it("refuses a query parameter that a route does not take, on every /v1 route, naming it", async () => {
    const orgId = uniqueId("org");
    const key = await orgKey(orgId);
    const sample = (path: string) =>
      path
        .replace("{org_id}", orgId)
        .replace("{id}", path.includes("api-keys") ? "key_000000000000000000000000" : `dlv_${"0".repeat(32)}`)
        .replace("{attempt_id}", `att_${"0".repeat(32)}_1`);
    // A body the route takes, so that only the query is wrong.
    const bodies: Record<string, unknown> = {
      "/v1/events": jobEvent(orgId, uniqueId("job")),
      "/v1/events/batch": { events: [jobEvent(orgId, uniqueId("job"))] },
      "/v1/webhook": { webhook_url: "https://example.com/hook" },
    };
    const settings = async () =>
      (await (await call("GET", "/v1/webhook", { token: key })).json()) as { webhook_url: string | null };
    const before = await settings();
    const queue = watchQueue();
    let walked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/v1/")) continue;
      for (const [method, op] of Object.entries(ops)) {
        const token = tokenFor(op.security, key);
        const body = method === "get" || method === "delete" ? undefined : (bodies[path] ?? {});
        // A parameter the route documents passes alongside (the lists' `limit`).
        const known = op.parameters?.some((p) => p.in === "query" && p.name === "limit") ? "limit=5&" : "";
        const res = await call(method.toUpperCase(), `${sample(path)}?${known}bogus=1`, { token, body });
        await expectConforms(res.clone(), path, method);
        const answer = (await res.json()) as { error?: { code: string; details?: Array<{ keys?: string[] }> } };
        expect(res.status, `${method} ${path}`).toBe(400);
        expect(answer.error?.details?.[0]?.keys, `${method} ${path}`).toEqual(["bogus"]);
        walked++;
      }
    }
    expect(walked).toBe(18);
    // Nothing was queued or changed by the refused requests.
    expect(queue.calls()).toEqual([]);
    expect(await settings()).toEqual(before); // no URL set, no secret rotated
  });

  it("documents the 400, 413 and 415 of every route that takes a JSON body, and answers them so", async () => {
    const orgId = uniqueId("org");
    const key = await orgKey(orgId);
    const huge = JSON.stringify({ pad: "x".repeat(2_000_000) });
    let walked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (!op.requestBody) continue;
        const token = tokenFor(op.security, key);
        const url = path.replace("{org_id}", orgId);
        const tooLarge = await call(method.toUpperCase(), url, { token, body: huge });
        expect(tooLarge.status, `${method} ${path}`).toBe(413);
        await expectConforms(tooLarge, path, method);
        const notJson = await call(method.toUpperCase(), url, {
          token,
          body: "webhook_url=x",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
        });
        expect(notJson.status, `${method} ${path}`).toBe(415);
        await expectConforms(notJson, path, method);
        const broken = await call(method.toUpperCase(), url, { token, body: '{"events": [' });
        expect(broken.status, `${method} ${path}`).toBe(400);
        await expectConforms(broken, path, method);
        walked++;
      }
    }
    expect(walked).toBe(5);
  });

  it("answers an unknown path under a credential's paths 401 without it, and 404 with it", async () => {
    const key = await orgKey(uniqueId("org"));
    for (const [path, token] of [
      ["/v1/webhook/nope", key],
      ["/v1/deliveries/dlv_00000000000000000000000000000000/nope", key],
      ["/v1/events/nope", PRODUCER_TOKEN],
    ] as const) {
      expect((await call("GET", path)).status, path).toBe(401);
      const res = await call("GET", path, { token });
      expect(res.status, path).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: "not_found" } });
    }
  });

  it("answers a fault inside as the documented 500: the queue refusing an event's write", async () => {
    const refuse = async () => {
      throw new Error("queue unavailable");
    };
    vi.spyOn(env.DELIVERIES, "send").mockImplementation(refuse);
    vi.spyOn(env.DELIVERIES, "sendBatch").mockImplementation(refuse);
    try {
      const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: jobEvent("org_x", uniqueId("job")) });
      expect(res.status).toBe(500);
      await expectConforms(res, "/v1/events", "post");
    } finally {
      vi.restoreAllMocks();
    }
  });

  it("publishes the error codes a client can branch on, and only those", () => {
    const error = doc.components.schemas.Error as { properties: { error: { properties: { code: Schema } } } };
    expect(error.properties.error.properties.code.enum).toEqual([...ERROR_CODES]);
  });

  it("matches real answers of ingest, settings, logs and deliveries, errors included", async () => {
    const orgId = uniqueId("org");
    const key = await orgKey(orgId);
    const hook = receiver(uniqueId("openapi"));
    await hook.script({ replies: [{ status: 500 }] });

    await expectConforms(
      await call("POST", "/v1/events", {
        token: PRODUCER_TOKEN,
        body: jobEvent(orgId, uniqueId("job"), { webhook_url: hook.url }),
      }),
      "/v1/events",
      "post",
    );
    await expectConforms(
      await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: { type: "nope" } }),
      "/v1/events",
      "post",
    );
    await expectConforms(
      await call("POST", "/v1/events/batch", {
        token: PRODUCER_TOKEN,
        body: { events: [jobEvent(orgId, uniqueId("job"), { webhook_url: hook.url }), {}] },
      }),
      "/v1/events/batch",
      "post",
    );
    // Every event refused (results), and a batch that is not one at all (the error alone).
    for (const events of [[{}], Array.from({ length: 101 }, () => jobEvent(orgId, uniqueId("job")))]) {
      const refused = await call("POST", "/v1/events/batch", { token: PRODUCER_TOKEN, body: { events } });
      expect(refused.status).toBe(400);
      await expectConforms(refused, "/v1/events/batch", "post");
    }
    await expectConforms(await call("GET", "/v1/webhook", { token: key }), "/v1/webhook", "get");
    await expectConforms(
      await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: "https://10.0.0.1/" } }),
      "/v1/webhook",
      "put",
    );

    const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
    await runConsumer([{ id: uniqueId("msg"), body: message }], "deliveries", env);
    await expectConforms(await call("GET", "/v1/webhook-logs", { token: key }), "/v1/webhook-logs", "get");
    await expectConforms(
      await call("GET", `/v1/webhook-logs/att_${message.delivery_id.slice(4)}_1`, { token: key }),
      "/v1/webhook-logs/{attempt_id}",
      "get",
    );
    await expectConforms(await call("GET", "/v1/deliveries", { token: key }), "/v1/deliveries", "get");
    await expectConforms(
      await call("GET", `/v1/deliveries/${message.delivery_id}`, { token: key }),
      "/v1/deliveries/{id}",
      "get",
    );
    await expectConforms(
      await call("POST", `/v1/deliveries/${message.delivery_id}/redeliver`, { token: key }),
      "/v1/deliveries/{id}/redeliver",
      "post",
    );
    await expectConforms(await call("GET", "/v1/deliveries", { token: "zk_wrong" }), "/v1/deliveries", "get");
    // The endpoint's health now has attempts, hour by hour.
    const settings = await call("GET", "/v1/webhook", { token: key });
    await expectConforms(settings.clone(), "/v1/webhook", "get");
    expect(((await settings.json()) as { health: unknown }).health).toBeNull(); // no default URL set
    await call("PUT", "/v1/webhook", { token: key, body: { webhook_url: hook.url } });
    await expectConforms(await call("GET", "/v1/webhook", { token: key }), "/v1/webhook", "get");
    await expectConforms(
      await call("GET", "/v1/deliveries?status=pending&event_type=job.completed&since=2026-01-01T00:00:00Z", {
        token: key,
      }),
      "/v1/deliveries",
      "get",
    );
    await expectConforms(await call("GET", "/v1/deliveries?stauts=failed", { token: key }), "/v1/deliveries", "get");
    await expectConforms(await call("GET", "/v1/api-keys", { token: key }), "/v1/api-keys", "get");
    await expectConforms(
      await call("GET", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN }),
      "/v1/orgs/{org_id}/api-keys",
      "get",
    );
    await expectConforms(await call("DELETE", "/v1/api-keys/key_nope", { token: key }), "/v1/api-keys/{id}", "delete");
    await expectConforms(
      await call("POST", "/v1/webhook/test", { token: key, body: { event_type: "job.failed" } }),
      "/v1/webhook/test",
      "post",
    );
  });
});

describe("GET /", () => {
  it("answers an index: JSON for programs, a page of links for a browser", async () => {
    const json = await call("GET", "/");
    expect(json.status).toBe(200);
    await expectConforms(json.clone(), "/", "get");
    const { links } = (await json.json()) as { links: Record<string, string> };
    for (const path of Object.values(links)) expect(path).toMatch(/^\//);
    expect((await call("GET", links.openapi!)).status).toBe(200);
    expect((await call("GET", links.health!)).status).toBe(200);

    const html = await call("GET", "/", { headers: { Accept: "text/html,application/xhtml+xml" } });
    expect(html.headers.get("Content-Type")).toMatch(/^text\/html/);
    expect(html.headers.get("Content-Security-Policy")).toContain("default-src 'none'");
    const page = await html.text();
    for (const path of Object.values(links)) expect(page).toContain(`href="${path}"`);
  });
});

describe("/openapi.json for the reference at /docs", () => {
  it("can be read from any origin: /docs renders it from a sandboxed origin of its own", async () => {
    const res = await call("GET", "/openapi.json", { headers: { Origin: "null" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
  });
});
