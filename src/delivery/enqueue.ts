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
  // One event (POST /v1/events, the hot path): `send` costs less than a batch of one.
  if (messages.length === 1) {
    await queue.send(messages[0], { contentType: DELIVERY_MESSAGE_CONTENT_TYPE });
    return;
  }
  for (const chunk of inSendLimits(messages, (body) => body)) {
    await queue.sendBatch(chunk.map((body) => ({ body, contentType: DELIVERY_MESSAGE_CONTENT_TYPE })));
  }
}

/**
 * Queues the producer's events, each in its org's lane for now (src/delivery/lanes.ts):
 * the fast lane while the org has queued fewer than FAST_LANE_ORG_LIMIT events (1,000 in
 * 10 s, wrangler.toml), the bulk lane beyond. One count per event, so a batch request
 * counts as its events do.
 *
 * The count is advice, like endpoint health: when the binding cannot answer, the event
 * takes the fast lane, as it did before there were two. Nothing is lost either way, and
 * both lanes deliver the same way.
 */
export async function enqueueEvents(
  env: Pick<Env, "DELIVERIES" | "DELIVERIES_BULK" | "FAST_LANE_ORG_LIMIT">,
  messages: readonly DeliveryMessage[],
): Promise<void> {
  const inBulk = await Promise.all(
    messages.map(async (message) => {
      try {
        return !(await env.FAST_LANE_ORG_LIMIT.limit({ key: message.org_id })).success;
      } catch (error) {
        console.error(
          JSON.stringify({
            event: "deliveries.fault",
            stage: "fast_lane_limit",
            count: 1,
            error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
          }),
        );
        return false;
      }
    }),
  );
  const fast = messages.filter((_, i) => !inBulk[i]);
  const bulk = messages.filter((_, i) => inBulk[i]);
  if (fast.length > 0) await enqueueDeliveries(env.DELIVERIES, fast);
  if (bulk.length > 0) await enqueueDeliveries(env.DELIVERIES_BULK, bulk);
}
