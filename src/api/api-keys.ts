import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { createApiKey, revokeApiKey } from "../store/api-keys";
import { PRODUCER_401, producerRoute } from "./auth";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { IdSchema } from "./ids";
import { type JsonBodyVariables, jsonBody } from "./json-body";

/** Operators issue and revoke org API keys (producer token). */

const OrgParams = z.object({
  org_id: IdSchema.openapi({ param: { name: "org_id", in: "path" }, example: "org_def456" }),
});

const createKey = createRoute({
  method: "post",
  path: "/v1/orgs/{org_id}/api-keys",
  summary: "Issue an org API key (the key is shown only in this answer)",
  tags: ["Operator"],
  ...producerRoute,
  middleware: jsonBody(4096, { optional: true }),
  request: {
    params: OrgParams,
    body: {
      required: false,
      content: {
        "application/json": { schema: z.strictObject({ name: z.string().max(200).optional() }).openapi("ApiKeyInput") },
      },
    },
  },
  responses: {
    201: {
      description: "Created",
      content: {
        "application/json": {
          schema: z
            .object({
              id: z.string(),
              key: z.string().openapi({ example: "zk_q8F0cQk1gD9c2m3x8T4pVn7aLw0eRzYb5uJ6hN1sK2o" }),
              org_id: z.string(),
              name: z.string().nullable(),
              created_at: z.string().datetime(),
            })
            .openapi("ApiKeyCreated"),
        },
      },
    },
    400: errorResponseSpec("Bad org id or body"),
    401: PRODUCER_401,
    415: errorResponseSpec("Body is not `application/json`"),
  },
});

const deleteKey = createRoute({
  method: "delete",
  path: "/v1/orgs/{org_id}/api-keys/{id}",
  summary: "Revoke an org API key; it answers 401 from the next request on",
  tags: ["Operator"],
  ...producerRoute,
  request: {
    params: OrgParams.extend({
      id: z
        .string()
        .max(64)
        .openapi({ param: { name: "id", in: "path" } }),
    }),
  },
  responses: {
    204: { description: "Revoked" },
    401: PRODUCER_401,
    404: errorResponseSpec("No such active key in this org"),
  },
});

export const apiKeys = new OpenAPIHono<{ Bindings: Env; Variables: JsonBodyVariables }>({ defaultHook: validationHook })
  .openapi(createKey, async (c) => {
    const { org_id } = c.req.valid("param");
    const key = await createApiKey(c.env.DB, org_id, c.req.valid("json").name ?? null);
    return c.json({ ...key, created_at: new Date(key.created_at).toISOString() }, 201);
  })
  .openapi(deleteKey, async (c) => {
    const { org_id, id } = c.req.valid("param");
    if (!(await revokeApiKey(c.env.DB, org_id, id))) throw new ApiError(404, "not_found", "no such API key");
    return c.body(null, 204);
  });
