import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { KEY_ID_HEADER, MAX_LISTENER_RESULTS, MAX_LISTENERS } from "../org/listeners";
import { orgSettings } from "../org/org-settings";
import { ORG_KEY_401, type OrgVariables, orgKeyRoute } from "./auth";
import { ApiError, errorResponseSpec, validationHook } from "./errors";
import { strictQuery } from "./query";
import { RATE_LIMITED_429 } from "./rate-limit";

/**
 * `zupertry listen` (cli/): a WebSocket per listener, held by the org's Durable Object
 * (src/org/org-settings.ts), which relays the org's deliveries to it; and what the
 * listeners answered, kept apart from the attempt log.
 */

const listenRoute = createRoute({
  method: "get",
  path: "/v1/listen",
  summary: "Open a listener session (WebSocket): the org's deliveries, relayed as they are attempted",
  description:
    "Upgrade to a WebSocket with an org key. Each attempt the dispatcher makes for the org arrives as a text " +
    'frame `{"type": "delivery", "delivery_id", "job_id", "event_type", "attempt", "headers", "body"}`, with ' +
    "the headers and bytes a real endpoint gets. Answer each with " +
    '`{"type": "result", "delivery_id", "attempt", "job_id", "event_type", "status_code", "response_time_ms", ' +
    '"error"}`, or several as `{"type": "results", "results": [...]}` (at most 25). A text `ping` is answered ' +
    "`pong`. Frames of at most 8 KiB; a revoked key closes the session " +
    `(4001). At most ${MAX_LISTENERS} sessions per org. Relayed deliveries are not attempts: they change no status.`,
  tags: ["Listen"],
  ...orgKeyRoute,
  request: { query: strictQuery({}) },
  responses: {
    101: { description: "Switching protocols: the session is open" },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: ORG_KEY_401,
    426: errorResponseSpec("Not a WebSocket upgrade"),
    429: {
      ...RATE_LIMITED_429,
      description:
        "`rate_limited`: the org API's rate limit (`Retry-After` says when to try again), or the org has " +
        `${MAX_LISTENERS} sessions open already: then without \`Retry-After\`, as only a session ending makes room`,
    },
  },
});

const ListenerResultSchema = z
  .object({
    delivery_id: z.string(),
    attempt: z.number().int(),
    job_id: z.string(),
    event_type: z.string(),
    listener_key_id: z.string().openapi({ description: "The key the listener signed in with" }),
    status_code: z.number().int().nullable().openapi({ description: "What the local receiver answered" }),
    response_time_ms: z.number().int(),
    error: z.string().nullable().openapi({ description: "Why the local receiver could not be reached" }),
    received_at: z.string().datetime(),
  })
  .openapi("ListenerResult");

const resultsRoute = createRoute({
  method: "get",
  path: "/v1/listen/deliveries",
  summary: "What the org's listeners answered for relayed deliveries, newest first (not attempts)",
  tags: ["Listen"],
  ...orgKeyRoute,
  request: { query: strictQuery({}) },
  responses: {
    200: {
      description: `The last ${MAX_LISTENER_RESULTS} at most`,
      content: {
        "application/json": {
          schema: z.object({ data: z.array(ListenerResultSchema) }).openapi("ListenerResultList"),
        },
      },
    },
    400: errorResponseSpec("A query parameter this route does not take"),
    401: ORG_KEY_401,
    429: RATE_LIMITED_429,
  },
});

export const listen = new OpenAPIHono<{ Bindings: Env; Variables: OrgVariables }>({ defaultHook: validationHook })
  .openapi(listenRoute, async (c) => {
    if (c.req.header("Upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError(426, "invalid_request", "this route takes a WebSocket upgrade (zupertry listen)", undefined, {
        Upgrade: "websocket",
      });
    }
    // The object accepts the socket; the request it gets names the key, never carries it.
    const upgrade = new Request("https://org-settings/listen", {
      headers: { Upgrade: "websocket", [KEY_ID_HEADER]: c.var.keyId },
    });
    return (await orgSettings(c.env, c.var.orgId).fetch(upgrade)) as never;
  })
  .openapi(resultsRoute, async (c) =>
    c.json({ data: await orgSettings(c.env, c.var.orgId).getListenerResults(MAX_LISTENER_RESULTS) }, 200),
  );
