import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { orgSettings } from "../org/org-settings";
import { MAX_WEBHOOK_URL_LENGTH } from "../org/webhook-url";
import { requireOrgKey, type OrgVariables } from "./auth";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { jsonBody, type JsonBodyVariables } from "./json-body";

/**
 * The org's endpoint settings, kept in its OrgSettings Durable Object: the default
 * webhook URL and the signing secret its receivers verify with.
 */

export const WebhookSettingsSchema = z
  .object({
    webhook_url: z.string().nullable().openapi({ example: "https://your-app.com/webhooks/zupertry" }),
    signing_secret: z.string().openapi({
      description: "Verify `X-Zupertry-Signature` (the seed snippets) or `webhook-signature` (Standard Webhooks) with it.",
      example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }),
    secret_rotated_at: z.string().datetime().nullable(),
  })
  .openapi("WebhookSettings");

const settingsContent = { "application/json": { schema: WebhookSettingsSchema } };

const getWebhook = createRoute({
  method: "get",
  path: "/v1/webhook",
  summary: "The org's default webhook URL and signing secret (created on first read)",
  tags: ["Webhook"],
  security: [{ orgKey: [] }],
  middleware: [requireOrgKey] as const,
  responses: {
    200: { description: "Settings", content: settingsContent },
    401: errorResponseSpec("Missing, invalid or revoked org API key"),
  },
});

const putWebhook = createRoute({
  method: "put",
  path: "/v1/webhook",
  summary: "Set or clear (null) the org's default webhook URL",
  tags: ["Webhook"],
  security: [{ orgKey: [] }],
  middleware: [requireOrgKey, ...jsonBody(16_384)] as const,
  request: {
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z.strictObject({ webhook_url: z.string().max(MAX_WEBHOOK_URL_LENGTH).nullable() }).openapi("WebhookUpdate"),
        },
      },
    },
  },
  responses: {
    200: { description: "Settings", content: settingsContent },
    400: errorResponseSpec("Not JSON, not the schema, or a URL the rules refuse"),
    401: errorResponseSpec("Missing, invalid or revoked org API key"),
    415: errorResponseSpec("Body is not `application/json`"),
  },
});

export const webhook = new OpenAPIHono<{ Bindings: Env; Variables: OrgVariables & JsonBodyVariables }>({
  defaultHook: validationHook,
})
  .openapi(getWebhook, async (c) => c.json(await orgSettings(c.env, c.var.orgId).getWebhook(), 200))
  .openapi(putWebhook, async (c) => {
    const { webhook_url } = c.req.valid("json");
    const result = await orgSettings(c.env, c.var.orgId).setWebhookUrl(webhook_url);
    if (!result.ok) {
      throw new ApiError(400, "invalid_request", result.reason, [{ path: ["webhook_url"], code: "invalid_url", message: result.reason }]);
    }
    return c.json(result.settings, 200);
  });
