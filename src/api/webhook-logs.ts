import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { getAttempt, listAttempts } from "../store/log";
import { ORG_KEY_401, type OrgVariables, orgKeyRoute } from "./auth";
import { cutPage, decodeCursor, pageQuery } from "./cursor";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { DeliveryIdSchema, EventTypeSchema, IdSchema, parseAttemptId } from "./ids";
import { deliveryFilter } from "./log-filter";
import { AttemptDetailSchema, AttemptSummarySchema, page, presentAttempt, presentAttemptDetail } from "./log-schemas";
import { BookmarkHeaders, bookmarkResponseHeaders, type OrgLogVariables } from "./org-log";
import { checkRange, strictQuery, timeRangeQuery } from "./query";
import { RATE_LIMITED_429 } from "./rate-limit";

/**
 * "Logs → Webhook logs": every attempt of the org, newest first, and one attempt in
 * full (what was sent, what came back).
 */

const AttemptCursorSchema = z.tuple([z.number().int(), DeliveryIdSchema, z.number().int().min(1)]);

const listLogs = createRoute({
  method: "get",
  path: "/v1/webhook-logs",
  summary: "Delivery attempts, newest first",
  tags: ["Logs"],
  ...orgKeyRoute,
  request: {
    query: strictQuery({
      job_id: IdSchema.optional(),
      delivery_id: DeliveryIdSchema.optional(),
      event_type: EventTypeSchema.optional(),
      outcome: z.enum(["succeeded", "failed"]).optional(),
      ...timeRangeQuery,
      ...pageQuery,
    }),
    headers: BookmarkHeaders,
  },
  responses: {
    200: {
      description: "A page of attempts",
      headers: bookmarkResponseHeaders,
      content: { "application/json": { schema: page(AttemptSummarySchema, "AttemptPage") } },
    },
    400: errorResponseSpec("A bad filter, time range, limit or cursor, or a parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
  },
});

const getLog = createRoute({
  method: "get",
  path: "/v1/webhook-logs/{attempt_id}",
  summary: "One attempt with the full request and response",
  tags: ["Logs"],
  ...orgKeyRoute,
  request: { params: z.object({ attempt_id: z.string().max(64) }), query: strictQuery({}), headers: BookmarkHeaders },
  responses: {
    200: {
      description: "The attempt",
      headers: bookmarkResponseHeaders,
      content: { "application/json": { schema: AttemptDetailSchema } },
    },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
    404: errorResponseSpec("No such attempt in this org"),
  },
});

export const webhookLogs = new OpenAPIHono<{ Bindings: Env; Variables: OrgVariables & OrgLogVariables }>({
  defaultHook: validationHook,
})
  .openapi(listLogs, async (c) => {
    const { job_id, delivery_id, event_type, outcome, since, until, limit, cursor } = c.req.valid("query");
    checkRange({ since, until });
    const deliveryIds = await deliveryFilter(c.var.orgId, job_id, delivery_id);
    const after = cursor === undefined ? undefined : decodeCursor(cursor, AttemptCursorSchema);
    const { rows, scannedTo } = await listAttempts(c.var.log, {
      org_id: c.var.orgId,
      delivery_ids: deliveryIds,
      event_type,
      outcome,
      since,
      until,
      after: after && { attempted_at: after[0], delivery_id: after[1], attempt: after[2] },
      limit: limit + 1,
    });
    const page = cutPage(
      rows,
      limit,
      (row) => [row.attempted_at, row.delivery_id, row.attempt],
      scannedTo && [scannedTo.attempted_at, scannedTo.delivery_id, scannedTo.attempt],
    );
    return c.json({ data: page.rows.map(presentAttempt), next_cursor: page.next_cursor }, 200);
  })
  .openapi(getLog, async (c) => {
    const id = parseAttemptId(c.req.valid("param").attempt_id);
    const row = id && (await getAttempt(c.var.log, c.var.orgId, id.delivery_id, id.attempt));
    if (!row) throw new ApiError(404, "not_found", "no such attempt");
    return c.json(presentAttemptDetail(row), 200);
  });
