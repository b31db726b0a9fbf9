import { OpenAPIHono } from "@hono/zod-openapi";
import { apiKeys } from "./api-keys";
import { notFound, onError, validationHook } from "./errors";
import { events } from "./events";
import { webhook } from "./webhook";

/**
 * The HTTP surface: one router per resource, mounted here, plus `/health` and the
 * OpenAPI document generated from the routers' own zod schemas.
 */
export const app = new OpenAPIHono<{ Bindings: Env }>({ defaultHook: validationHook });

app.get("/health", (c) => c.json({ status: "ok" }));
app.route("/", events);
app.route("/", apiKeys);
app.route("/", webhook);

app.openAPIRegistry.registerComponent("securitySchemes", "producerToken", {
  type: "http",
  scheme: "bearer",
  description: "The producer token (Worker secret PRODUCER_TOKEN): the job service and operators.",
});
app.openAPIRegistry.registerComponent("securitySchemes", "orgKey", {
  type: "http",
  scheme: "bearer",
  description: "An org API key, `zk_…`, issued by an operator. Scoped to one org.",
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
