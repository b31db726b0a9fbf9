import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { readConfig } from "../config";
import { enqueueDeliveries } from "../delivery/enqueue";
import { type DeliveryMessage, resumeDeliveryMessage } from "../delivery/message";
import { canResendNow, isStalled } from "../delivery/plan";
import { orgSettings } from "../org/org-settings";
import { getDelivery, listAttempts, listDeliveries } from "../store/log";
import { isPastRetention } from "../store/retention";
import { claimStalledDelivery, releaseStalledDelivery } from "../store/stalled";
import { ORG_KEY_401, type OrgVariables, orgKeyRoute } from "./auth";
import { cutPage, decodeCursor, pageQuery } from "./cursor";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { DeliveryIdSchema, EventTypeSchema, IdSchema } from "./ids";
import { deliveryFilter } from "./log-filter";
import { DeliveryDetailSchema, DeliverySchema, page, presentAttempt, presentDelivery } from "./log-schemas";
import { BookmarkHeaders, bookmarkResponseHeaders, type OrgLogVariables } from "./org-log";
import { checkRange, strictQuery, timeRangeQuery } from "./query";
import { RATE_LIMITED_429, spendSend } from "./rate-limit";

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
    query: strictQuery({
      job_id: IdSchema.optional(),
      delivery_id: DeliveryIdSchema.optional(),
      event_type: EventTypeSchema.optional(),
      status: z.enum(["pending", "delivered", "failed"]).optional(),
      ...timeRangeQuery,
      ...pageQuery,
    }),
    headers: BookmarkHeaders,
  },
  responses: {
    200: {
      description: "A page of deliveries",
      headers: bookmarkResponseHeaders,
      content: { "application/json": { schema: page(DeliverySchema, "DeliveryPage") } },
    },
    400: errorResponseSpec("A bad filter, time range, limit or cursor, or a parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
  },
});

/**
 * A delivery's page lists at most this many attempts, the newest: only redelivering it
 * again and again makes more, and the log routes page through any number.
 */
export const MAX_DETAIL_ATTEMPTS = 1000;

const getRoute = createRoute({
  method: "get",
  path: "/v1/deliveries/{id}",
  summary: "One delivery with its payload and attempts",
  tags: ["Deliveries"],
  ...orgKeyRoute,
  request: { params: DeliveryParams, query: strictQuery({}), headers: BookmarkHeaders },
  responses: {
    200: {
      description: "The delivery",
      headers: bookmarkResponseHeaders,
      content: { "application/json": { schema: DeliveryDetailSchema } },
    },
    400: errorResponseSpec("Not a delivery id, or a query parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
    404: errorResponseSpec("No such delivery in this org (yet: a delivery appears once its first attempt is logged)"),
  },
});

const redeliverRoute = createRoute({
  method: "post",
  path: "/v1/deliveries/{id}/redeliver",
  summary: "Make an attempt now, with the same body, signed with the current secret",
  description:
    "The attempt numbering continues. For a finished delivery it is one more attempt: success makes the " +
    "delivery `delivered`, failure leaves it `failed`, and the retry schedule does not restart. For a " +
    '`pending` delivery ("resend now") it is the next scheduled attempt, made now instead of at ' +
    "`next_attempt_at`: if it succeeds, the scheduled retry is dropped; if it fails, the schedule goes on " +
    "from it; within the attempt timeout + 5 s of `next_attempt_at` the scheduled attempt is being made, and " +
    "this answers 409. Two redelivers of the same state make one attempt. A finished delivery whose last " +
    "attempt is older than the log retention (`LOG_RETENTION_DAYS`) is about to be deleted: 409.",
  tags: ["Deliveries"],
  ...orgKeyRoute,
  // A bookmark is taken, as on the reads (a redeliver reads the primary, the newest log, anyway).
  request: { params: DeliveryParams, query: strictQuery({}), headers: BookmarkHeaders },
  responses: {
    202: {
      description: "Queued",
      headers: bookmarkResponseHeaders,
      content: {
        "application/json": {
          schema: z.object({ delivery_id: z.string(), status: z.literal("queued") }).openapi("RedeliverQueued"),
        },
      },
    },
    400: errorResponseSpec("Not a delivery id, or a query parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
    404: errorResponseSpec("No such delivery in this org"),
    409: errorResponseSpec(
      "The delivery's next scheduled attempt is due now and is being made; or it changed while this was asked " +
        "(an attempt was made, or the stall sweep took it over: read its latest state); or it is past the log " +
        "retention (`LOG_RETENTION_DAYS` since its last attempt) and about to be deleted",
    ),
  },
});

export const deliveries = new OpenAPIHono<{ Bindings: Env; Variables: OrgVariables & OrgLogVariables }>({
  defaultHook: validationHook,
})
  .openapi(listRoute, async (c) => {
    const { job_id, delivery_id, event_type, status, since, until, limit, cursor } = c.req.valid("query");
    checkRange({ since, until });
    const deliveryIds = await deliveryFilter(c.var.orgId, job_id, delivery_id);
    const after = cursor === undefined ? undefined : decodeCursor(cursor, DeliveryCursorSchema);
    const { rows, scannedTo } = await listDeliveries(c.var.log, {
      org_id: c.var.orgId,
      delivery_ids: deliveryIds,
      event_type,
      status,
      since,
      until,
      after: after && { created_at: after[0], delivery_id: after[1] },
      limit: limit + 1,
    });
    const page = cutPage(
      rows,
      limit,
      (row) => [row.created_at, row.delivery_id],
      scannedTo && [scannedTo.created_at, scannedTo.delivery_id],
    );
    return c.json({ data: page.rows.map(presentDelivery), next_cursor: page.next_cursor }, 200);
  })
  .openapi(getRoute, async (c) => {
    const { id } = c.req.valid("param");
    const [row, newest] = await Promise.all([
      getDelivery(c.var.log, c.var.orgId, id),
      listAttempts(c.var.log, { org_id: c.var.orgId, delivery_ids: [id], limit: MAX_DETAIL_ATTEMPTS + 1 }).then(
        (page) => page.rows,
      ),
    ]);
    if (!row) throw new ApiError(404, "not_found", "no such delivery");
    const attempts = newest.slice(0, MAX_DETAIL_ATTEMPTS).reverse().map(presentAttempt);
    // The payload is the stored body itself, spliced in as it is: valid JSON (it was
    // serialised at ingest), never parsed here, so no stored event can make this read
    // fail, however it nests.
    const head = JSON.stringify({
      ...presentDelivery(row),
      attempts,
      attempts_truncated: newest.length > MAX_DETAIL_ATTEMPTS,
    });
    return c.body(`${head.slice(0, -1)},"payload":${row.body}}`, 200, { "Content-Type": "application/json" }) as never;
  })
  .openapi(redeliverRoute, async (c) => {
    const { id } = c.req.valid("param");
    const row = await getDelivery(c.var.log, c.var.orgId, id);
    if (!row) throw new ApiError(404, "not_found", "no such delivery");
    const config = readConfig(c.env);
    const now = Date.now();
    if (isPastRetention(row, now, config.logRetentionDays)) {
      throw new ApiError(
        409,
        "conflict",
        `the delivery's last attempt is older than the ${config.logRetentionDays}-day log retention: ` +
          "it is about to be deleted and can no longer be redelivered",
      );
    }
    if (!canResendNow(row, now, config)) {
      const due = new Date(row.next_attempt_at!).toISOString();
      throw new ApiError(409, "conflict", `the next attempt is due now (${due}) and is being made; see its outcome`);
    }
    // One attempt per state of the delivery, however many clicks: a click that finds this
    // state queued queues nothing and spends nothing. A claim whose send the allowance
    // refuses, or whose queue write fails, is given back, so that trying again can work
    // (and a click waiting on it makes it instead: src/org/org-settings.ts).
    const org = orgSettings(c.env, c.var.orgId);
    const claim = await org.claimRedeliver(row.delivery_id, row.attempt_count);
    if (claim.status === "claimed") {
      /** Puts back a stalled delivery's claim in the log, when what it was for cannot be done. */
      let undo: (() => Promise<unknown>) | null = null;
      try {
        const stored = { ...row, org_id: c.var.orgId, webhook_url: row.event_webhook_url };
        let message: DeliveryMessage;
        if (isStalled(row, now, config.stalledAfterMs)) {
          // A stalled delivery is claimed in the log as the sweep claims it, and taken
          // over: a sweep in the same minute then finds it claimed (or this finds it
          // claimed by the sweep, whose take-over makes the attempt), never both sending.
          const sweepClaim = crypto.randomUUID();
          const target = { orgId: c.var.orgId, deliveryId: row.delivery_id, lastAttempt: row.attempt_count };
          if (!(await claimStalledDelivery(c.var.log, target, now - config.stalledAfterMs, now, sweepClaim))) {
            throw new ApiError(
              409,
              "conflict",
              "the delivery changed while this was asked (an attempt was made, or the stall sweep took it over): " +
                "see its latest state",
            );
          }
          undo = () => releaseStalledDelivery(c.var.log, target, row.next_attempt_at!, sweepClaim);
          message = resumeDeliveryMessage(stored, { take_over: row.attempt_count, claim: sweepClaim });
        } else {
          message = resumeDeliveryMessage(stored, { redeliver_after: row.attempt_count });
        }
        await spendSend(c.env, c.var.orgId);
        await enqueueDeliveries(c.env.DELIVERIES, [message]);
      } catch (error) {
        // Refused by the send limit, or not queued: the delivery is as it was (stalled, so
        // a click again, or the next sweep, takes it over); an unreachable log leaves the
        // claim to lapse into a stall again instead.
        await undo?.().catch(() => {});
        // Unreachable object: the claim lapses after its 10 seconds instead.
        await org.releaseRedeliver(row.delivery_id, row.attempt_count, claim.token).catch(() => {});
        throw error;
      }
      // Unreachable object: the claim lapses, and a later click may queue a second
      // message, which the consumer drops (it finds this state's attempt logged).
      await org.confirmRedeliver(row.delivery_id, row.attempt_count, claim.token).catch(() => {});
    }
    return c.json({ delivery_id: row.delivery_id, status: "queued" as const }, 202);
  });
