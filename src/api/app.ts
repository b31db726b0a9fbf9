import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { apiKeys } from "./api-keys";
import { requireOperator, requireOrgKey, requireProducer } from "./auth";
import { deliveries } from "./deliveries";
import { errorResponseSpec, notFound, onError, validationHook } from "./errors";
import { events } from "./events";
import { indexPage } from "./index-page";
import { listen } from "./listen";
import { orgLog } from "./org-log";
import { orgApiLimit } from "./rate-limit";
import { webhook } from "./webhook";
import { webhookLogs } from "./webhook-logs";

/**
 * The HTTP surface: one router per resource, mounted here, plus `/health` and the
 * OpenAPI document generated from the routers' own zod schemas.
 */
export const app = new OpenAPIHono<{ Bindings: Env }>({ defaultHook: validationHook });

app.openapi(
  createRoute({
    method: "get",
    path: "/health",
    summary: "Liveness",
    tags: ["Meta"],
    responses: {
      200: { description: "Up", content: { "application/json": { schema: z.object({ status: z.literal("ok") }) } } },
    },
  }),
  (c) => c.json({ status: "ok" as const }, 200),
);
// Each credential is checked once per group of paths, before any route of the group:
// a route added under these paths cannot forget it (test/workerd/openapi.test.ts walks every
// documented route without credentials). `/v1/webhook/*` covers `/v1/webhook` too.
app.use("/v1/events/*", requireProducer);
app.use("/v1/orgs/*", requireOperator);
for (const path of ["/v1/webhook/*", "/v1/webhook-logs/*", "/v1/deliveries/*", "/v1/api-keys/*", "/v1/listen/*"]) {
  app.use(path, requireOrgKey, orgApiLimit);
}
// The log routes read the org's shard, through a session (src/api/org-log.ts).
for (const path of ["/v1/webhook-logs/*", "/v1/deliveries/*"]) app.use(path, orgLog);

app.route("/", indexPage);
app.route("/", events);
app.route("/", apiKeys);
app.route("/", webhook);
app.route("/", webhookLogs);
app.route("/", deliveries);
app.route("/", listen);

// Any route but /health can meet a fault it cannot answer for (a queue, D1 or the org's
// object unavailable): 500 `internal`, documented once here rather than route by route.
const INTERNAL_500 = errorResponseSpec(
  "`internal`: a fault on our side (a queue, a database or the org's settings unavailable)",
);
for (const definition of app.openAPIRegistry.definitions) {
  if (definition.type === "route" && definition.route.path !== "/health")
    definition.route.responses[500] ??= INTERNAL_500;
}

app.openAPIRegistry.registerComponent("securitySchemes", "producerToken", {
  type: "http",
  scheme: "bearer",
  description: "The producer token: for Zupertry's job service, which queues events.",
});
app.openAPIRegistry.registerComponent("securitySchemes", "operatorToken", {
  type: "http",
  scheme: "bearer",
  description: "The operator token: issues and revokes org API keys (not the job service's token).",
});
app.openAPIRegistry.registerComponent("securitySchemes", "orgKey", {
  type: "http",
  scheme: "bearer",
  description: "An org API key, `zk_…`, issued by an operator. Scoped to one org.",
});

// The readable reference, /docs, is a static page (public/docs/) rendering this document
// in a sandboxed origin of its own, so it fetches it cross-origin.
app.use("/openapi.json", async (c, next) => {
  await next();
  c.header("Access-Control-Allow-Origin", "*");
});
app.doc31("/openapi.json", {
  openapi: "3.1.0",
  info: {
    title: "zupertry-webhooks",
    version: "1",
    description: "Signed webhook delivery for Zupertry job events.",
  },
});

app.onError(onError);
app.notFound(notFound);
