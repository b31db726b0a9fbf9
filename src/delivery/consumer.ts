import { readConfig, type Config } from "../config";
import { orgSettings, type DeliverySettings } from "../org/org-settings";
import { checkWebhookUrl } from "../org/webhook-url";
import { insertAttempts, readDeliveryStates, type AttemptRecord } from "../store/attempts";
import { postWebhook, unsentResponse, type AttemptError } from "./attempt";
import { attemptHeaders } from "./headers";
import type { DeliveryMessage } from "./message";
import { planMessage, type Plan } from "./plan";
import { crashBackoffSeconds, retryDelayAfter } from "./retry-policy";
import { Signer } from "./signing";

/**
 * The queue consumer: one run delivers one batch.
 *
 *   1. one D1 read: the logged state of every delivery in the batch;
 *   2. a plan per message (src/delivery/plan.ts): attempt, wait, or drop;
 *   3. one Durable Object call per org with work: its URL and signing secrets;
 *   4. the attempts, 6 at a time (a run's open-connection limit), each timed from the
 *      moment it gets its connection;
 *   5. one D1 write (`DB.batch`) with all the attempts;
 *   6. only then ack or retry each message.
 *
 * Acking after the write is what makes a crash harmless: a run that dies before step 5
 * leaves its messages unacked, they come back, and the attempts are made again (the
 * receiver may see a duplicate, which the seed tells it to expect; the log never
 * does). A run that dies after step 5 finds its attempts logged and only waits.
 */

type BatchMessage = Message<DeliveryMessage>;

/**
 * A Worker invocation holds at most 6 open connections; further fetches wait in a queue
 * for one. Running at most 6 attempts at once keeps that wait out of the attempts: each
 * one's 10 s timeout and `attempted_at` start when it can actually connect.
 */
export const MAX_OPEN_CONNECTIONS = 6;

interface OrgContext {
  settings: DeliverySettings;
  signer: Signer;
}

interface Planned {
  message: BatchMessage;
  plan: Extract<Plan, { kind: "attempt" }>;
}

interface Attempted {
  message: BatchMessage;
  record: AttemptRecord;
  /** Seconds until the next attempt, when the schedule has one. */
  retryDelaySeconds: number | null;
}

export async function deliverBatch(batch: MessageBatch<DeliveryMessage>, env: Env): Promise<void> {
  const config = readConfig(env);
  const summary = { queue: batch.queue, messages: batch.messages.length, delivered: 0, retrying: 0, failed: 0, dropped: 0, waiting: 0, deferred: 0 };

  const ids = [...new Set(batch.messages.map((m) => m.body.delivery_id))];
  let states;
  try {
    states = await readDeliveryStates(env.DB, ids);
  } catch (error) {
    defer(batch.messages, "read_state", error);
    logBatch({ ...summary, deferred: batch.messages.length });
    return;
  }

  const now = Date.now();
  const planned: Planned[] = [];
  const claimed = new Set<string>();
  for (const message of batch.messages) {
    const plan = planMessage(message.id, message.body, states.get(message.body.delivery_id), now);
    if (plan.kind === "wait") {
      message.retry({ delaySeconds: plan.delaySeconds });
      summary.waiting++;
    } else if (plan.kind === "attempt" && !claimed.has(message.body.delivery_id)) {
      claimed.add(message.body.delivery_id);
      planned.push({ message, plan });
    } else {
      // Finished, not the owner, or a second message for a delivery this run attempts.
      message.ack();
      summary.dropped++;
    }
  }

  const orgs = loadOrgContexts(env, planned);
  const settled = await mapConcurrently(planned, MAX_OPEN_CONNECTIONS, async ({ message, plan }): Promise<Attempted | null> => {
    try {
      const org = await orgs.get(message.body.org_id)!;
      return await attempt(message, plan, org, config);
    } catch (error) {
      defer([message], "attempt", error);
      summary.deferred++;
      return null;
    }
  });
  const attempted = settled.filter((a): a is Attempted => a !== null);

  let fresh: boolean[];
  try {
    fresh = await insertAttempts(env.DB, attempted.map((a) => a.record));
  } catch (error) {
    defer(attempted.map((a) => a.message), "write_log", error);
    logBatch({ ...summary, deferred: summary.deferred + attempted.length });
    return;
  }

  attempted.forEach(({ message, record, retryDelaySeconds }, i) => {
    if (!fresh[i]) {
      // Another message logged this attempt first; it carries the delivery on.
      message.ack();
      summary.dropped++;
    } else if (retryDelaySeconds !== null) {
      message.retry({ delaySeconds: retryDelaySeconds });
      summary.retrying++;
    } else {
      message.ack();
      summary[record.outcome === "succeeded" ? "delivered" : "failed"]++;
    }
  });
  logBatch(summary);
}

/** `items.map(fn)`, with at most `limit` calls of `fn` running at once; results in order. */
async function mapConcurrently<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** Starts one settings read per org that has work in this batch. */
function loadOrgContexts(env: Env, planned: readonly Planned[]): Map<string, Promise<OrgContext>> {
  const orgs = new Map<string, Promise<OrgContext>>();
  for (const { message } of planned) {
    const orgId = message.body.org_id;
    if (orgs.has(orgId)) continue;
    const context = orgSettings(env, orgId)
      .getDeliverySettings()
      .then(async (settings) => ({ settings, signer: await Signer.create(settings.signing_secrets) }));
    context.catch(() => {}); // handled where awaited; avoids an unhandled rejection when unused
    orgs.set(orgId, context);
  }
  return orgs;
}

/** Makes one attempt and describes it as a log row. Throws only on internal faults. */
async function attempt(
  message: BatchMessage,
  plan: Planned["plan"],
  org: OrgContext,
  config: Config,
): Promise<Attempted> {
  const event = message.body;
  const url = event.webhook_url ?? org.settings.webhook_url;
  const attemptedAt = Date.now();
  const base = {
    delivery_id: event.delivery_id,
    attempt: plan.attempt,
    org_id: event.org_id,
    job_id: event.job_id,
    event_type: event.event_type,
    message_id: message.id,
    attempted_at: attemptedAt,
    url,
    ...eventColumns(plan.attempt, event),
  };

  // Nothing can be sent, and retrying cannot help: the delivery fails now.
  const failNow = (error: AttemptError): Attempted => ({
    message,
    retryDelaySeconds: null,
    record: { ...base, ...unsentResponse(error), outcome: "failed", next_attempt_at: null, signatures: null },
  });
  if (url === null) return failNow("no_webhook_url");
  if (!checkWebhookUrl(url, { allowInsecure: config.allowInsecureWebhookUrls }).ok) return failNow("invalid_url");

  const timestamp = Math.floor(attemptedAt / 1000);
  const signatures = await org.signer.sign(event.delivery_id, timestamp, event.body);
  const headers = attemptHeaders({ deliveryId: event.delivery_id, eventType: event.event_type, attempt: plan.attempt, timestamp, signatures });
  const response = await postWebhook(url, headers, event.body, {
    timeoutMs: config.attemptTimeoutMs,
    responseBodyLimitBytes: config.responseBodyLimitBytes,
  });
  const retryDelaySeconds =
    response.error !== null && plan.scheduled ? retryDelayAfter(plan.attempt, config.retryDelaysSeconds) : null;
  return {
    message,
    retryDelaySeconds,
    record: {
      ...base,
      ...response,
      outcome: response.error === null ? "succeeded" : "failed",
      next_attempt_at: retryDelaySeconds === null ? null : Date.now() + retryDelaySeconds * 1000,
      // The log keeps the signatures; the other headers follow from the row (attemptHeaders).
      signatures,
    },
  };
}

/** What attempt 1 stores once for the whole delivery: the event as it came in. */
export function eventColumns(attempt: number, event: DeliveryMessage): Pick<AttemptRecord, "url_from_event" | "request_body"> {
  return attempt === 1
    ? { url_from_event: event.webhook_url !== null, request_body: new TextDecoder().decode(event.body) }
    : { url_from_event: null, request_body: null };
}

/** Gives messages back to the queue with back-off: their attempt was not logged. */
function defer(messages: readonly BatchMessage[], stage: string, error: unknown): void {
  for (const message of messages) message.retry({ delaySeconds: crashBackoffSeconds(message.attempts) });
  console.error(
    JSON.stringify({
      event: "deliveries.deferred",
      stage,
      messages: messages.length,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    }),
  );
}

function logBatch(summary: Record<string, string | number>): void {
  console.log(JSON.stringify({ event: "deliveries.batch", ...summary }));
}
