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
