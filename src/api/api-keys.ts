import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { orgSettings } from "../org/org-settings";
import { type ApiKeySummary, createApiKey, listApiKeys, revokeApiKey } from "../store/api-keys";
import { OPERATOR_401, ORG_KEY_401, type OrgVariables, operatorRoute, orgKeyRoute } from "./auth";
import { cutPage, decodeCursor, pageQuery } from "./cursor";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { IdSchema } from "./ids";
import { JSON_BODY_ERRORS, type JsonBodyVariables, jsonBody } from "./json-body";
import { strictQuery } from "./query";
import { RATE_LIMITED_429 } from "./rate-limit";

/**
 * Org API keys. Operators issue, list and revoke them (operator token, under
 * /v1/orgs/{org_id}); an org lists and revokes its own (org key, /v1/api-keys), for the
 * console. Minting stays an operator action: a leaked org key must not mint more.
 */

const OrgParams = z.object({
  org_id: IdSchema.openapi({ param: { name: "org_id", in: "path" }, example: "org_def456" }),
});

const KeyIdSchema = z
  .string()
  .max(64)
  .openapi({ param: { name: "id", in: "path" }, example: "key_5f1c0e9a3b7d2c4e6f8a9b0c" });
const KeyCursorSchema = z.tuple([z.number().int(), z.string().max(64)]);

export const ApiKeySummarySchema = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    created_at: z.string().datetime(),
    last_used_at: z
      .string()
      .datetime()
      .nullable()
      .openapi({ description: "The last request made with it, to within 5 minutes; null if never used" }),
    revoked_at: z.string().datetime().nullable().openapi({ description: "When it was revoked; null while valid" }),
    in_use: z
      .boolean()
      .openapi({ description: "Whether this request was made with it (never, with the operator token)" }),
  })
  .openapi("ApiKey");

const KeyPageSchema = z
  .object({
    data: z.array(ApiKeySummarySchema),
    next_cursor: z.string().nullable().openapi({ description: "Pass as `cursor` for the next page; null on the last" }),
  })
  .openapi("ApiKeyPage");

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function presentKey(key: ApiKeySummary, inUse: string | undefined): z.infer<typeof ApiKeySummarySchema> {
  return {
    id: key.id,
    name: key.name,
    created_at: new Date(key.created_at).toISOString(),
    last_used_at: iso(key.last_used_at),
    revoked_at: iso(key.revoked_at),
    in_use: key.id === inUse,
  };
}

const listQuery = strictQuery({ ...pageQuery });

/**
 * Revokes a key of the org, and ends the `zupertry listen` sessions it opened: those
 * were authenticated once, when they connected. The key is revoked once D1 says so; if
 * the org's object cannot close the sessions at once, that is tried again after the
 * answer (and logged), never turned into an error for a revoke that happened.
 */
async function revoke(env: Env, ctx: Pick<ExecutionContext, "waitUntil">, orgId: string, keyId: string): Promise<void> {
  if (!(await revokeApiKey(env.DB, orgId, keyId))) throw new ApiError(404, "not_found", "no such API key");
  const close = () => orgSettings(env, orgId).closeListeners(keyId);
  const logFailure = (error: unknown) =>
    console.error(
      JSON.stringify({ event: "listeners.close_failed", org_id: orgId, key_id: keyId, error: String(error) }),
    );
  try {
    await close();
  } catch (error) {
    logFailure(error);
    ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 1000)).then(close).catch(logFailure));
  }
}

/** A page of the org's keys; `inUse` is the id of the key the request was made with. */
async function keyPage(db: D1Database, orgId: string, query: z.infer<typeof listQuery>, inUse?: string) {
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, KeyCursorSchema);
  const rows = await listApiKeys(db, orgId, {
    after: after && { created_at: after[0], id: after[1] },
    limit: query.limit + 1,
  });
  const page = cutPage(rows, query.limit, (row) => [row.created_at, row.id]);
  return { data: page.rows.map((row) => presentKey(row, inUse)), next_cursor: page.next_cursor };
}

const createKey = createRoute({
  method: "post",
  path: "/v1/orgs/{org_id}/api-keys",
  summary: "Issue an org API key (the key is shown only in this answer)",
  tags: ["Operator"],
  ...operatorRoute,
  middleware: jsonBody(4096, { optional: true }),
  request: {
    params: OrgParams,
    query: strictQuery({}),
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
    400: errorResponseSpec("Bad org id, body or query"),
    401: OPERATOR_401,
    ...JSON_BODY_ERRORS,
  },
});

const deleteKey = createRoute({
  method: "delete",
  path: "/v1/orgs/{org_id}/api-keys/{id}",
  summary: "Revoke an org API key; it answers 401 from the next request on",
  tags: ["Operator"],
  ...operatorRoute,
  request: {
    params: OrgParams.extend({ id: KeyIdSchema }),
    query: strictQuery({}),
  },
  responses: {
    204: { description: "Revoked" },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: OPERATOR_401,
    404: errorResponseSpec("No such active key in this org"),
  },
});

const listKeys = createRoute({
  method: "get",
  path: "/v1/orgs/{org_id}/api-keys",
  summary: "An org's API keys, newest first, revoked ones included",
  tags: ["Operator"],
  ...operatorRoute,
  request: { params: OrgParams, query: listQuery },
  responses: {
    200: { description: "A page of keys", content: { "application/json": { schema: KeyPageSchema } } },
    400: errorResponseSpec("A bad org id, limit or cursor, or a parameter this route does not take"),
    401: OPERATOR_401,
  },
});

const listOwnKeys = createRoute({
  method: "get",
  path: "/v1/api-keys",
  summary: "This org's API keys, newest first, revoked ones included (never the keys themselves)",
  tags: ["API keys"],
  ...orgKeyRoute,
  request: { query: listQuery },
  responses: {
    200: { description: "A page of keys", content: { "application/json": { schema: KeyPageSchema } } },
    400: errorResponseSpec("A bad limit or cursor, or a parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
  },
});

const revokeOwnKey = createRoute({
  method: "delete",
  path: "/v1/api-keys/{id}",
  summary: "Revoke one of this org's API keys; it answers 401 from the next request on",
  description:
    "The key in use may revoke itself (signing out for good). Issuing keys stays an operator action: " +
    "an org key cannot mint another.",
  tags: ["API keys"],
  ...orgKeyRoute,
  request: { params: z.object({ id: KeyIdSchema }), query: strictQuery({}) },
  responses: {
    204: { description: "Revoked" },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: ORG_KEY_401,
    404: errorResponseSpec("No such active key in this org"),
    429: RATE_LIMITED_429,
  },
});

export const apiKeys = new OpenAPIHono<{ Bindings: Env; Variables: JsonBodyVariables & OrgVariables }>({
  defaultHook: validationHook,
})
  .openapi(createKey, async (c) => {
    const { org_id } = c.req.valid("param");
    const key = await createApiKey(c.env.DB, org_id, c.req.valid("json").name ?? null);
    return c.json({ ...key, created_at: new Date(key.created_at).toISOString() }, 201);
  })
  .openapi(deleteKey, async (c) => {
    const { org_id, id } = c.req.valid("param");
    await revoke(c.env, c.executionCtx, org_id, id);
    return c.body(null, 204);
  })
  .openapi(listKeys, async (c) =>
    c.json(await keyPage(c.env.DB, c.req.valid("param").org_id, c.req.valid("query")), 200),
  )
  .openapi(listOwnKeys, async (c) =>
    c.json(await keyPage(c.env.DB, c.var.orgId, c.req.valid("query"), c.var.keyId), 200),
  )
  .openapi(revokeOwnKey, async (c) => {
    await revoke(c.env, c.executionCtx, c.var.orgId, c.req.valid("param").id);
    return c.body(null, 204);
  });
