import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { type Config, readConfig } from "../config";
import { enqueueEvents } from "../delivery/enqueue";
import { type DeliveryMessage, EVENT_TYPES, MAX_BODY_BYTES, newDeliveryMessage } from "../delivery/message";
import { checkWebhookUrl, MAX_WEBHOOK_URL_LENGTH } from "../org/webhook-url";
import { PRODUCER_401, producerRoute } from "./auth";
import { ApiError, ErrorSchema, errorResponseSpec, invalidWebhookUrl, issueDetails, validationHook } from "./errors";
import { MAX_DATA_DEPTH, nestsDeeperThan } from "./exact-json";
import { IdSchema } from "./ids";
import { inexactNumbersError, JSON_BODY_ERRORS, type JsonBodyVariables, jsonBody } from "./json-body";
import { strictQuery } from "./query";
import { RecentDeliveries } from "./recent-deliveries";
import { sampleJobData } from "./sample-event";

/**
 * Ingest: the job service hands over job events. This path is the producer's latency,
 * so it does only what needs no storage: check, serialise the body once, compute the
 * delivery id, `Queue.send`, 202. No D1, no Durable Object. Everything stateful
 * (dedupe, the org default URL, secrets) happens in the consumer.
 */

export const EventInputSchema = z
  .strictObject({
    type: z.enum(EVENT_TYPES),
    data: z.looseObject({ job_id: IdSchema, org_id: IdSchema }).openapi({
      description:
        "Passed through to the receiver with every value as sent (written compactly, and an object's " +
        "integer-like keys first, as JavaScript orders them). `org_id` routes the event. " +
        `It nests at most ${MAX_DATA_DEPTH} levels, and ` +
        "every number in it must survive as a 64-bit float exactly (send larger or more precise ones as strings): " +
        "anything else is refused with 400 rather than changed.",
      example: sampleJobData("org_def456", "job_abc123"),
    }),
    webhook_url: z
      .string()
      .max(MAX_WEBHOOK_URL_LENGTH)
      .nullish()
      .openapi({ description: "Overrides the org default for this event." }),
  })
  .openapi("EventInput");

type EventInput = z.infer<typeof EventInputSchema>;

const QueuedSchema = z
  .object({
    delivery_id: z.string().openapi({ example: "dlv_5d41402abc4b2a76b9719d911017c592" }),
    status: z.literal("queued"),
    duplicate: z.literal(true).optional().openapi({ description: "This id was already queued." }),
  })
  .openapi("EventQueued");

const BatchResultSchema = z
  .union([
    QueuedSchema.extend({ index: z.number().int() }),
    z.object({ index: z.number().int(), error: ErrorSchema.shape.error }),
  ])
  .openapi("EventBatchResult");

const BatchInputSchema = z
  .strictObject({
    events: z
      .array(
        // Documented as EventInput, validated one by one in the handler so that one bad
        // event is reported in `results` instead of failing the batch.
        z.unknown().openapi({
          allOf: [{ $ref: "#/components/schemas/EventInput" }],
          description: "Each event is checked on its own.",
        }),
      )
      .min(1)
      .max(100),
  })
  .openapi("EventBatchInput");

const BatchOutputSchema = z.object({ results: z.array(BatchResultSchema) }).openapi("EventBatchResults");

/** What a producer flood means for delivery (src/delivery/lanes.ts), in both routes' reference. */
const BULK_LANE_NOTE =
  "Events are counted per org: beyond about 1,000 in 10 s, an org's further events are queued on the bulk " +
  "lane, delivered the same way but behind other floods rather than ahead of other orgs' events. Nothing is " +
  "refused for volume.";

const ingestErrors = {
  401: PRODUCER_401,
  ...JSON_BODY_ERRORS,
};

const postEvent = createRoute({
  method: "post",
  path: "/v1/events",
  summary: "Queue one job event for delivery",
  description: BULK_LANE_NOTE,
  tags: ["Producer"],
  ...producerRoute,
  middleware: jsonBody(MAX_BODY_BYTES),
  request: {
    query: strictQuery({}),
    body: { required: true, content: { "application/json": { schema: EventInputSchema } } },
  },
  responses: {
    202: { description: "Queued", content: { "application/json": { schema: QueuedSchema } } },
    400: errorResponseSpec("`invalid_json`, or `invalid_request` with each problem (its field and why) in `details`"),
    ...ingestErrors,
  },
});

const postEventBatch = createRoute({
  method: "post",
  path: "/v1/events/batch",
  summary: "Queue up to 100 job events; invalid ones are reported without failing the rest",
  description: BULK_LANE_NOTE,
  tags: ["Producer"],
  ...producerRoute,
  middleware: jsonBody(1_048_576, { inexactNumbers: "report" }),
  request: {
    query: strictQuery({}),
    body: { required: true, content: { "application/json": { schema: BatchInputSchema } } },
  },
  responses: {
    202: {
      description:
        "At least one event was queued (or is a duplicate of one queued). An event the queue did not take, " +
        "while others went through, has an `internal` error in `results`: send it again",
      content: { "application/json": { schema: BatchOutputSchema } },
    },
    400: {
      description:
        "Nothing was queued: every event was refused (`invalid_request`, and `results` says why for each), or " +
        "the request is not a batch at all (`invalid_json`, no `events` or more than 100, an unknown query " +
        "parameter), when the error comes alone",
      content: {
        "application/json": {
          schema: z.union([ErrorSchema.extend(BatchOutputSchema.shape).openapi("EventBatchRefused"), ErrorSchema]),
        },
      },
    },
    ...ingestErrors,
  },
});

const recent = new RecentDeliveries();

type Prepared = { ok: true; message: DeliveryMessage } | { ok: false; error: ApiError };

/** Turns a valid event into its queue message: URL rules, body serialised once, id. */
async function prepare(event: EventInput, raw: { data: unknown }, config: Config): Promise<Prepared> {
  if (nestsDeeperThan(raw.data, MAX_DATA_DEPTH)) {
    return {
      ok: false,
      error: new ApiError(400, "invalid_request", `data nests deeper than ${MAX_DATA_DEPTH} levels`, [
        { path: ["data"], code: "too_deep", message: `at most ${MAX_DATA_DEPTH} levels of objects and arrays` },
      ]),
    };
  }
  const webhookUrl = event.webhook_url ?? null;
  if (webhookUrl !== null) {
    const check = checkWebhookUrl(webhookUrl, { allowInsecure: config.allowInsecureWebhookUrls });
    if (!check.ok) return { ok: false, error: invalidWebhookUrl(check.reason) };
  }
  // `data` goes out as the producer sent it (zod's copy reorders keys).
  const message = await newDeliveryMessage(event.type, event.data, raw.data, webhookUrl);
  const size = message.body.byteLength;
  if (size > MAX_BODY_BYTES) {
    return {
      ok: false,
      error: new ApiError(
        413,
        "payload_too_large",
        `the delivered body would be ${size} bytes; at most ${MAX_BODY_BYTES}`,
      ),
    };
  }
  return { ok: true, message };
}

export const events = new OpenAPIHono<{ Bindings: Env; Variables: JsonBodyVariables }>({ defaultHook: validationHook })
  .openapi(postEvent, async (c) => {
    const prepared = await prepare(c.req.valid("json"), c.var.json as { data: unknown }, readConfig(c.env));
    if (!prepared.ok) throw prepared.error;
    const { delivery_id } = prepared.message;
    if (recent.has(delivery_id))
      return c.json({ delivery_id, status: "queued" as const, duplicate: true as const }, 202);
    await enqueueEvents(c.env, [prepared.message]);
    recent.add(delivery_id);
    return c.json({ delivery_id, status: "queued" as const }, 202);
  })
  .openapi(postEventBatch, async (c) => {
    const config = readConfig(c.env);
    const now = Date.now();
    const raws = c.req.valid("json").events;
    // Each event's inexact numbers, with paths from its own root (`events[i]` dropped).
    const inexact = Map.groupBy(c.var.inexact, ({ path }) => path[1]);
    const results: z.infer<typeof BatchResultSchema>[] = [];
    const messages: DeliveryMessage[] = [];
    const queued = new Set<string>();
    for (const [index, raw] of raws.entries()) {
      const parsed = EventInputSchema.safeParse(raw);
      const ownInexact = (inexact.get(index) ?? []).map((n) => ({ ...n, path: n.path.slice(2) }));
      const prepared =
        ownInexact.length > 0
          ? { ok: false as const, error: inexactNumbersError(ownInexact) }
          : parsed.success
            ? await prepare(parsed.data, raw as { data: unknown }, config)
            : {
                ok: false as const,
                error: new ApiError(
                  400,
                  "invalid_request",
                  "the event does not match the schema",
                  issueDetails(parsed.error),
                ),
              };
      if (!prepared.ok) {
        results.push({ index, error: prepared.error.body().error });
        continue;
      }
      const { delivery_id } = prepared.message;
      if (queued.has(delivery_id) || recent.has(delivery_id, now)) {
        results.push({ index, delivery_id, status: "queued", duplicate: true });
        continue;
      }
      queued.add(delivery_id);
      messages.push(prepared.message);
      results.push({ index, delivery_id, status: "queued" });
    }
    const unqueued = await enqueueEvents(c.env, messages);
    for (const id of queued) if (!unqueued.has(id)) recent.add(id, now);
    // Events whose send failed while others' went through: the producer sends them again.
    for (const [i, result] of results.entries()) {
      if ("delivery_id" in result && unqueued.has(result.delivery_id)) {
        results[i] = {
          index: result.index,
          error: { code: "internal", message: "the queue did not take this event: send it again (same id)" },
        };
      }
    }
    if (results.some((r) => "delivery_id" in r)) return c.json({ results }, 202);
    return c.json(
      { error: { code: "invalid_request", message: "no event in the batch could be queued" }, results },
      400,
    );
  });
