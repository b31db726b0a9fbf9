import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { readConfig } from "../config";
import { ATTEMPT_ERRORS } from "../delivery/attempt";
import { enqueueDeliveries } from "../delivery/enqueue";
import { type EventType, newDeliveryMessage } from "../delivery/message";
import { toHex } from "../encoding";
import { RECENT_OUTCOMES } from "../org/endpoint-health";
import { orgSettings } from "../org/org-settings";
import { checkWebhookUrl, MAX_WEBHOOK_URL_LENGTH } from "../org/webhook-url";
import { ORG_KEY_401, type OrgVariables, orgKeyRoute } from "./auth";
import { ApiError, errorResponseSpec, invalidWebhookUrl, validationHook } from "./errors";
import { EventTypeSchema } from "./ids";
import { JSON_BODY_ERRORS, type JsonBodyVariables, jsonBody } from "./json-body";
import { strictQuery } from "./query";
import { RATE_LIMITED_429, spendSend } from "./rate-limit";
import { sampleJobData, sampleJobFailedData } from "./sample-event";

/**
 * The org's endpoint settings, kept in its OrgSettings Durable Object: the default
 * webhook URL and the signing secret its receivers verify with.
 */

export const EndpointHealthSchema = z
  .object({
    endpoint: z
      .string()
      .openapi({ description: "The endpoint: scheme, host and port of the URL", example: "https://your-app.com" }),
    lane: z.enum(["fast", "slow"]).openapi({
      description:
        "`slow`: the endpoint hangs, answers slowly or keeps failing, so its deliveries wait in a lane of their own, " +
        "on the same retry schedule, until it answers well again (a few good answers in a row).",
    }),
    lane_reason: z
      .enum(["timeout", "slow", "failing"])
      .nullable()
      .openapi({ description: "Why it is in the slow lane" }),
    lane_since: z.string().datetime().nullable(),
    success_rate_24h: z
      .number()
      .min(0)
      .max(1)
      .nullable()
      .openapi({ description: "Share of attempts in the last 24 h that succeeded; null without attempts" }),
    attempts_24h: z.number().int(),
    timeouts_24h: z.number().int(),
    consecutive_failures: z.number().int(),
    last_success_at: z.string().datetime().nullable(),
    last_failure_at: z.string().datetime().nullable(),
    last_error: z.enum(ATTEMPT_ERRORS).nullable(),
    latency_ms: z
      .number()
      .int()
      .nullable()
      .openapi({ description: "Moving average of response times (timeouts included)" }),
    recent: z.array(z.enum(RECENT_OUTCOMES)).openapi({ description: "The last outcomes, oldest first (up to 20)" }),
    hourly: z
      .array(
        z.object({
          hour: z.string().datetime().openapi({ description: "The start of the hour" }),
          succeeded: z.number().int(),
          failed: z.number().int(),
          timeouts: z.number().int().openapi({ description: "Of the failed, how many timed out" }),
        }),
      )
      .openapi({ description: "The last 24 hours, oldest first, one entry per hour (the current hour last)" }),
  })
  .openapi("EndpointHealth");

export const WebhookSettingsSchema = z
  .object({
    webhook_url: z.string().nullable().openapi({ example: "https://your-app.com/webhooks/zupertry" }),
    signing_secret: z.string().openapi({
      description:
        "Verify `X-Zupertry-Signature` (the seed snippets) or `webhook-signature` (Standard Webhooks) with it.",
      example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }),
    secret_rotated_at: z.string().datetime().nullable(),
    health: EndpointHealthSchema.nullable().openapi({
      description: "How the default URL's endpoint has been answering; null without a default URL",
    }),
    listeners: z.number().int().openapi({ description: "`zupertry listen` sessions connected now (GET /v1/listen)" }),
  })
  .openapi("WebhookSettings");

const settingsContent = { "application/json": { schema: WebhookSettingsSchema } };

const getWebhook = createRoute({
  method: "get",
  path: "/v1/webhook",
  summary: "The org's default webhook URL, its endpoint's health, and the signing secret (created on first read)",
  tags: ["Webhook"],
  ...orgKeyRoute,
  request: { query: strictQuery({}) },
  responses: {
    200: { description: "Settings", content: settingsContent },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
  },
});

const putWebhook = createRoute({
  method: "put",
  path: "/v1/webhook",
  summary: "Set or clear (null) the org's default webhook URL",
  tags: ["Webhook"],
  ...orgKeyRoute,
  middleware: jsonBody(16_384),
  request: {
    query: strictQuery({}),
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z
            .strictObject({ webhook_url: z.string().max(MAX_WEBHOOK_URL_LENGTH).nullable() })
            .openapi("WebhookUpdate"),
        },
      },
    },
  },
  responses: {
    200: { description: "Settings", content: settingsContent },
    400: errorResponseSpec("Not JSON, not the schema, or a URL the rules refuse"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
    ...JSON_BODY_ERRORS,
  },
});

const rotateSecret = createRoute({
  method: "post",
  path: "/v1/webhook/rotate-secret",
  summary: "Replace the signing secret",
  description:
    "`X-Zupertry-Signature` uses the new secret in the queue runs that start after this (runs under way " +
    "finish with the old one: about 10 s); `webhook-signature` carries signatures with both the new and " +
    "the previous secret for 24 h.",
  tags: ["Webhook"],
  ...orgKeyRoute,
  request: { query: strictQuery({}) },
  responses: {
    200: { description: "Settings with the new secret", content: settingsContent },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
  },
});

const sendTest = createRoute({
  method: "post",
  path: "/v1/webhook/test",
  summary: "Send a signed sample event (its job_id starts with job_test_)",
  tags: ["Webhook"],
  ...orgKeyRoute,
  middleware: jsonBody(16_384, { optional: true }),
  request: {
    query: strictQuery({}),
    body: {
      required: false,
      content: {
        "application/json": {
          schema: z
            .strictObject({
              webhook_url: z
                .string()
                .max(MAX_WEBHOOK_URL_LENGTH)
                .nullish()
                .openapi({ description: "Defaults to the org default (also when null, as on ingest)" }),
              event_type: EventTypeSchema.default("job.completed").openapi({
                description: "Which sample event to send, shaped as the docs show it",
              }),
            })
            .openapi("WebhookTest"),
        },
      },
    },
  },
  responses: {
    202: {
      description: "Queued; it shows in the logs as soon as its attempt is made",
      content: {
        "application/json": {
          schema: z
            .object({ delivery_id: z.string(), job_id: z.string(), status: z.literal("queued") })
            .openapi("WebhookTestQueued"),
        },
      },
    },
    400: errorResponseSpec(
      "`no_webhook_url` (none given, no org default, no listener connected), or a URL the rules refuse",
    ),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
    ...JSON_BODY_ERRORS,
  },
});

/** `data` of a test event: what routing needs, and the rest of the sample. */
type TestEventData = { org_id: string; job_id: string } & Record<string, unknown>;

/** The sample event of a test delivery: seed-shaped, marked by its job id and zero credits. */
export function testEventData(orgId: string, now: Date, type: EventType = "job.completed"): TestEventData {
  const jobId = `job_test_${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
  const at = now.toISOString();
  if (type === "job.failed") return { ...sampleJobFailedData(orgId, jobId), created_at: at };
  return sampleJobData(orgId, jobId, {
    workspace_id: "ws_test",
    output_url: "https://storage.googleapis.com/zupertry-outputs/test.png",
    credits_consumed: 0,
    created_at: at,
    completed_at: at,
  });
}

export const webhook = new OpenAPIHono<{ Bindings: Env; Variables: OrgVariables & JsonBodyVariables }>({
  defaultHook: validationHook,
})
  .openapi(getWebhook, async (c) => c.json(await orgSettings(c.env, c.var.orgId).getWebhook(), 200))
  .openapi(putWebhook, async (c) => {
    const { webhook_url } = c.req.valid("json");
    const result = await orgSettings(c.env, c.var.orgId).setWebhookUrl(webhook_url);
    if (!result.ok) throw invalidWebhookUrl(result.reason);
    return c.json(result.settings, 200);
  })
  .openapi(rotateSecret, async (c) => c.json(await orgSettings(c.env, c.var.orgId).rotateSecret(), 200))
  .openapi(sendTest, async (c) => {
    const { webhook_url, event_type } = c.req.valid("json");
    const webhookUrl = webhook_url ?? null;
    if (webhookUrl !== null) {
      const check = checkWebhookUrl(webhookUrl, { allowInsecure: readConfig(c.env).allowInsecureWebhookUrls });
      if (!check.ok) throw invalidWebhookUrl(check.reason);
    } else {
      // With a `zupertry listen` session connected, no URL at all is fine: the listener
      // gets the event (and the log says no_webhook_url, as it would for any event).
      const settings = await orgSettings(c.env, c.var.orgId).getWebhook();
      if (settings.webhook_url === null && settings.listeners === 0) {
        throw new ApiError(
          400,
          "no_webhook_url",
          "pass a webhook_url, set the org default with PUT /v1/webhook first, or connect zupertry listen",
        );
      }
    }
    await spendSend(c.env, c.var.orgId);
    const now = Date.now();
    const data = testEventData(c.var.orgId, new Date(now), event_type);
    const message = await newDeliveryMessage(event_type, data, data, webhookUrl);
    await enqueueDeliveries(c.env.DELIVERIES, [message]);
    return c.json({ delivery_id: message.delivery_id, job_id: message.job_id, status: "queued" as const }, 202);
  });
