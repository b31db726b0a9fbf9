import { z } from "@hono/zod-openapi";
import { ATTEMPT_ERRORS, type AttemptError } from "../delivery/attempt";
import { attemptHeaders } from "../delivery/headers";
import type { AttemptDetailRow, AttemptSummaryRow, DeliveryRow } from "../store/log";
import { attemptId } from "./ids";

/**
 * How the delivery log looks from outside: attempt summaries (a row of "Logs →
 * Webhook logs"), attempt details (the expanded row) and deliveries, with their ids.
 */

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

export const AttemptSummarySchema = z
  .object({
    id: z.string().openapi({ example: "att_5d41402abc4b2a76b9719d911017c592_1" }),
    delivery_id: z.string(),
    job_id: z.string(),
    event_type: z.string(),
    attempt: z.number().int().openapi({ description: "1, 2, 3, … (redeliveries continue the numbering)" }),
    status_code: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "The receiver's HTTP status; null when none came back" }),
    response_time_ms: z.number().int(),
    attempted_at: z.string().datetime(),
    outcome: z.enum(["succeeded", "failed"]),
    error: z.enum(ATTEMPT_ERRORS).nullable(),
    error_detail: z.string().nullable().openapi({
      description:
        "Why it failed, in a few words (`no response within 10000 ms`, `the TLS handshake failed`, a URL rule)",
      example: "the connection was refused or dropped before an answer",
    }),
    url: z.string().nullable().openapi({ description: "Where it was sent; null when there was no URL" }),
  })
  .openapi("AttemptSummary");

export const AttemptDetailSchema = AttemptSummarySchema.extend({
  request: z.object({
    headers: z
      .record(z.string(), z.string())
      .nullable()
      .openapi({ description: "As sent; null when nothing was sent" }),
    body: z.string().openapi({ description: "The exact body delivered" }),
  }),
  response: z.object({
    headers: z.record(z.string(), z.string()).nullable(),
    body: z.string().nullable(),
    truncated: z.boolean().openapi({
      description: "The body was longer than the stored limit (64 KiB unless configured) and is cut there",
    }),
  }),
}).openapi("AttemptDetail");

export const DeliverySchema = z
  .object({
    id: z.string(),
    job_id: z.string(),
    event_type: z.string(),
    status: z.enum(["pending", "delivered", "failed"]),
    attempt_count: z.number().int(),
    next_attempt_at: z
      .string()
      .datetime()
      .nullable()
      .openapi({ description: "While pending: when the next attempt is due" }),
    last_error: z.enum(ATTEMPT_ERRORS).nullable(),
    webhook_url: z.string().nullable().openapi({ description: "The event's own URL; null means the org default" }),
    created_at: z.string().datetime(),
    last_attempt_at: z.string().datetime(),
  })
  .openapi("Delivery");

export const DeliveryDetailSchema = DeliverySchema.extend({
  payload: z.unknown().openapi({ description: "The delivered body, parsed" }),
  attempts: z.array(AttemptSummarySchema).openapi({ description: "Oldest first; the newest 1,000 at most" }),
  attempts_truncated: z.boolean().openapi({
    description:
      "True when the delivery has more than 1,000 attempts (it was redelivered again and again): `attempts` " +
      "holds the newest 1,000, and `GET /v1/webhook-logs?delivery_id=` pages through them all",
  }),
}).openapi("DeliveryDetail");

export function page<T extends z.ZodTypeAny>(item: T, name: string) {
  return z
    .object({
      data: z.array(item),
      next_cursor: z
        .string()
        .nullable()
        .openapi({
          description:
            "Pass as `cursor` for the next page; null on the last. With a filter the index does not hold " +
            "(`status`, `event_type`, `outcome=succeeded`) a page reads at most 2,000 entries of the org's log " +
            "(of deliveries: 2,000 deliveries, with the later attempts logged among them), so it may hold " +
            "fewer than `limit` items, even none, and still have a `next_cursor`",
        }),
    })
    .openapi(name);
}

export function presentAttempt(row: AttemptSummaryRow): z.infer<typeof AttemptSummarySchema> {
  return {
    id: attemptId(row.delivery_id, row.attempt),
    delivery_id: row.delivery_id,
    job_id: row.job_id,
    event_type: row.event_type,
    attempt: row.attempt,
    status_code: row.status_code,
    response_time_ms: row.response_time_ms,
    attempted_at: iso(row.attempted_at),
    outcome: row.outcome,
    error: row.error as AttemptError | null,
    error_detail: row.error_detail,
    url: row.url,
  };
}

export function presentAttemptDetail(row: AttemptDetailRow): z.infer<typeof AttemptDetailSchema> {
  // The headers as sent: the same function that built them, fed from the row.
  const headers =
    row.signatures &&
    attemptHeaders({
      deliveryId: row.delivery_id,
      eventType: row.event_type,
      attempt: row.attempt,
      timestamp: Math.floor(row.attempted_at / 1000),
      signatures: row.signatures,
    });
  return {
    ...presentAttempt(row),
    request: { headers, body: row.request_body },
    response: { headers: row.response_headers, body: row.response_body, truncated: row.response_truncated },
  };
}

export function deliveryStatus(
  row: Pick<DeliveryRow, "delivered" | "next_attempt_at">,
): "pending" | "delivered" | "failed" {
  if (row.delivered) return "delivered";
  return row.next_attempt_at === null ? "failed" : "pending";
}

export function presentDelivery(row: DeliveryRow): z.infer<typeof DeliverySchema> {
  return {
    id: row.delivery_id,
    job_id: row.job_id,
    event_type: row.event_type,
    status: deliveryStatus(row),
    attempt_count: row.attempt_count,
    next_attempt_at: isoOrNull(row.next_attempt_at),
    last_error: row.delivered ? null : (row.last_error as AttemptError | null),
    webhook_url: row.event_webhook_url,
    created_at: iso(row.created_at),
    last_attempt_at: iso(row.last_attempt_at),
  };
}
