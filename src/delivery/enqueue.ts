import { logFault } from "./fault-log";
import { DELIVERY_MESSAGE_CONTENT_TYPE, type DeliveryMessage, messageSizeEstimate } from "./message";

/** Queue limits for one `sendBatch` call. */
const MAX_MESSAGES_PER_SEND = 100;
const MAX_BYTES_PER_SEND = 256_000;

/**
 * Splits `items` into groups that one `sendBatch` call takes (100 messages, 256 KB by
 * `messageSizeEstimate`), in order.
 */
export function inSendLimits<T>(items: readonly T[], bodyOf: (item: T) => DeliveryMessage): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = messageSizeEstimate(bodyOf(item));
    if (chunk.length === MAX_MESSAGES_PER_SEND || (chunk.length > 0 && bytes + size > MAX_BYTES_PER_SEND)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/**
 * Puts deliveries on the queue in as few `sendBatch` calls as the limits allow. A
 * failure part-way throws; what was sent stays sent, and a producer that retries the
 * whole request creates no second delivery (same ids).
 */
export async function enqueueDeliveries(queue: Queue, messages: readonly DeliveryMessage[]): Promise<void> {
  for (const chunk of inSendLimits(messages, (body) => body)) await sendChunk(queue, chunk);
}

/**
 * One call for a chunk within the limits. One event (POST /v1/events, the hot path):
 * `send` costs less than a batch of one.
 */
async function sendChunk(queue: Queue, chunk: readonly DeliveryMessage[]): Promise<void> {
  if (chunk.length === 1) await queue.send(chunk[0], { contentType: DELIVERY_MESSAGE_CONTENT_TYPE });
  else await queue.sendBatch(chunk.map((body) => ({ body, contentType: DELIVERY_MESSAGE_CONTENT_TYPE })));
}

/** How long ingest waits for the org counts before it queues the events on the fast lane anyway. */
export const LANE_COUNT_TIMEOUT_MS = 1_000;

/** Orgs whose events went to the bulk lane, by the 10 s window they were logged in (one line each). */
const loggedBulk = new Map<string, number>();

/**
 * Queues the producer's events, each in its org's lane for now (src/delivery/lanes.ts):
 * the fast lane while the org has queued fewer than FAST_LANE_ORG_LIMIT events (1,000 in
 * 10 s, wrangler.toml), the bulk lane beyond. One count per event, so a batch request
 * counts as its events do; its events are counted at once, so which of a batch crossing
 * the limit take the bulk lane is not decided by their order.
 *
 * The count is advice, like endpoint health: when the binding fails, or has not answered
 * within LANE_COUNT_TIMEOUT_MS, the events take the fast lane, as they did before there
 * were two. Nothing is refused or lost either way, and both lanes deliver the same way.
 *
 * Every send is made even if another fails (each lane's, each `sendBatch` of a lane's):
 * what was sent stays sent, and the events of a send that failed are returned, for the
 * producer to send again (same ids); when not one event was queued, it throws. An event
 * sent again that had been queued after all is dropped by the consumer (the log keeps
 * one attempt 1; the org's object holds it for one message).
 */
export async function enqueueEvents(
  env: Pick<Env, "DELIVERIES" | "DELIVERIES_BULK" | "FAST_LANE_ORG_LIMIT">,
  messages: readonly DeliveryMessage[],
): Promise<ReadonlySet<string>> {
  const inBulk = await bulkLaneChoices(env.FAST_LANE_ORG_LIMIT, messages);
  const fast = messages.filter((_, i) => !inBulk[i]);
  const bulk = messages.filter((_, i) => inBulk[i]);
  logBulk(bulk);
  const unqueued = new Set<string>();
  const faults: unknown[] = [];
  const sendAll = async (queue: Queue, lane: readonly DeliveryMessage[]) => {
    for (const chunk of inSendLimits(lane, (body) => body)) {
      try {
        await sendChunk(queue, chunk);
      } catch (error) {
        faults.push(error);
        for (const message of chunk) unqueued.add(message.delivery_id);
      }
    }
  };
  await Promise.all([sendAll(env.DELIVERIES, fast), sendAll(env.DELIVERIES_BULK, bulk)]);
  if (faults.length === 0) return unqueued;
  if (unqueued.size === new Set(messages.map((m) => m.delivery_id)).size) throw faults[0];
  logFault("enqueue", unqueued.size, faults[0], "ingest.fault");
  return unqueued;
}

/** Whether each event goes to the bulk lane: its org's count is over the limit. */
async function bulkLaneChoices(limiter: RateLimit, messages: readonly DeliveryMessage[]): Promise<boolean[]> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), LANE_COUNT_TIMEOUT_MS);
  });
  try {
    const counted = await Promise.race([
      Promise.all(messages.map(async (m) => !(await limiter.limit({ key: m.org_id })).success)),
      timedOut,
    ]);
    if (counted !== "timeout") return counted;
    logFault("fast_lane_limit", messages.length, `no answer within ${LANE_COUNT_TIMEOUT_MS} ms`);
  } catch (error) {
    logFault("fast_lane_limit", messages.length, error);
  } finally {
    clearTimeout(timer);
  }
  return messages.map(() => false);
}

/**
 * One line per org and 10 s window in this isolate when its events take the bulk lane, so
 * an operator sees who floods without a line per event.
 */
function logBulk(bulk: readonly DeliveryMessage[]): void {
  if (bulk.length === 0) return;
  const window = Math.floor(Date.now() / 10_000);
  const counts = Map.groupBy(bulk, (m) => m.org_id);
  if (loggedBulk.size > 10_000) loggedBulk.clear();
  for (const [org, list] of counts) {
    if (loggedBulk.get(org) === window) continue;
    loggedBulk.set(org, window);
    console.log(JSON.stringify({ event: "ingest.bulk_lane", org_id: org, events: list.length }));
  }
}
