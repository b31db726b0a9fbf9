import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { enqueueDeliveries } from "../delivery/enqueue";
import type { EventType } from "../delivery/message";
import { canRedeliver } from "../delivery/plan";
import { getDelivery, listAttempts, listDeliveries } from "../store/log";
import { ORG_KEY_401, orgKeyRoute, type OrgVariables } from "./auth";
import { cutPage, decodeCursor, pageQuery } from "./cursor";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { IdSchema } from "./events";
import {
  DeliveryDetailSchema,
  DeliveryIdSchema,
  DeliverySchema,
  page,
  presentAttempt,
  presentDelivery,
} from "./log-schemas";
import { deliveryFilter } from "./webhook-logs";

/** Deliveries: one per event, with its state, its attempts, and a manual redeliver. */

const DeliveryCursorSchema = z.tuple([z.number().int(), DeliveryIdSchema]);
const DeliveryParams = z.object({ id: DeliveryIdSchema.openapi({ param: { name: "id", in: "path" } }) });

const listRoute = createRoute({
  method: "get",
  path: "/v1/deliveries",
  summary: "Deliveries, newest first",
  tags: ["Deliveries"],
  ...orgKeyRoute,
  request: {
    query: z.object({ job_id: IdSchema.optional(), ...pageQuery }),
  },
  responses: {
    200: { description: "A page of deliveries", content: { "application/json": { schema: page(DeliverySchema, "DeliveryPage") } } },
    400: errorResponseSpec("A bad filter, limit or cursor"),
    401: ORG_KEY_401,
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/v1/deliveries/{id}",
  summary: "One delivery with its payload and attempts",
  tags: ["Deliveries"],
  ...orgKeyRoute,
  request: { params: DeliveryParams },
  responses: {
    200: { description: "The delivery", content: { "application/json": { schema: DeliveryDetailSchema } } },
    400: errorResponseSpec("Not a delivery id"),
    401: ORG_KEY_401,
    404: errorResponseSpec("No such delivery in this org (yet: a delivery appears when its first attempt is made)"),
  },
});

const redeliverRoute = createRoute({
  method: "post",
  path: "/v1/deliveries/{id}/redeliver",
  summary: "Make one more attempt now, with the same body, signed with the current secret",
  description:
    "The attempt numbering continues. Success makes the delivery `delivered`; failure leaves it `failed`. It does not restart the retry schedule.",
  tags: ["Deliveries"],
  ...orgKeyRoute,
  request: { params: DeliveryParams },
  responses: {
    202: {
      description: "Queued",
      content: {
        "application/json": {
          schema: z.object({ delivery_id: z.string(), status: z.literal("queued") }).openapi("RedeliverQueued"),
        },
      },
    },
    400: errorResponseSpec("Not a delivery id"),
    401: ORG_KEY_401,
    404: errorResponseSpec("No such delivery in this org"),
    409: errorResponseSpec("The delivery is still pending: its schedule will make the next attempt (unless a day overdue)"),
  },
});

export const deliveries = new OpenAPIHono<{ Bindings: Env; Variables: OrgVariables }>({ defaultHook: validationHook })
  .openapi(listRoute, async (c) => {
    const { job_id, limit, cursor } = c.req.valid("query");
    const deliveryIds = await deliveryFilter(c.var.orgId, job_id);
    const after = cursor === undefined ? undefined : decodeCursor(cursor, DeliveryCursorSchema);
    const rows = await listDeliveries(c.env.DB, {
      org_id: c.var.orgId,
      delivery_ids: deliveryIds,
      after: after && { created_at: after[0], delivery_id: after[1] },
      limit: limit + 1,
    });
    const page = cutPage(rows, limit, (row) => [row.created_at, row.delivery_id]);
    return c.json({ data: page.rows.map(presentDelivery), next_cursor: page.next_cursor }, 200);
  })
  .openapi(getRoute, async (c) => {
    const { id } = c.req.valid("param");
    const [row, attempts] = await Promise.all([
      getDelivery(c.env.DB, c.var.orgId, id),
      listAttempts(c.env.DB, { org_id: c.var.orgId, delivery_ids: [id], limit: 1000 }),
    ]);
    if (!row) throw new ApiError(404, "not_found", "no such delivery");
    return c.json(
      { ...presentDelivery(row), payload: JSON.parse(row.body) as unknown, attempts: attempts.reverse().map(presentAttempt) },
      200,
    );
  })
  .openapi(redeliverRoute, async (c) => {
    const { id } = c.req.valid("param");
    const row = await getDelivery(c.env.DB, c.var.orgId, id);
    if (!row) throw new ApiError(404, "not_found", "no such delivery");
    if (!canRedeliver(row, Date.now())) {
      throw new ApiError(409, "conflict", "the delivery is pending; its next scheduled attempt is at next_attempt_at");
    }
    await enqueueDeliveries(c.env.DELIVERIES, [
      {
        delivery_id: row.delivery_id,
        org_id: c.var.orgId,
        job_id: row.job_id,
        event_type: row.event_type as EventType,
        webhook_url: row.event_webhook_url,
        body: new TextEncoder().encode(row.body),
        redeliver_after: row.attempt_count,
      },
    ]);
    return c.json({ delivery_id: row.delivery_id, status: "queued" as const }, 202);
  });
