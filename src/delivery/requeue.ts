import { inSendLimits } from "./enqueue";
import { type LaneName, laneQueue } from "./lanes";
import { DELIVERY_MESSAGE_CONTENT_TYPE, type DeliveryMessage } from "./message";
import { ownerOf } from "./plan";

/**
 * A delivery's message sent again as a new message, not by `retry`: a retry counts toward
 * the queue's `max_retries`, and a message that is waiting, or put back through no fault
 * of its own, must not use them up. The new message keeps its owner (`ownerOf`), so the
 * plan still knows it as the one that may make the next attempt.
 */

/** A message to send again, after `delaySeconds` (none: at once). */
export interface Requeue {
  message: Message<DeliveryMessage>;
  delaySeconds?: number;
}

/** The same delivery as a new queue message (in any lane) that keeps its owner. */
export function requeued(message: Message<DeliveryMessage>): MessageSendRequest<DeliveryMessage> {
  return { body: { ...message.body, owner: ownerOf(message) }, contentType: DELIVERY_MESSAGE_CONTENT_TYPE };
}

/**
 * Sends `items` to `lane` as new messages, in `sendBatch` calls within the queue's limits,
 * and acks each chunk's messages as soon as it is sent: a later chunk's failure must not
 * send it again (two messages with one owner would make its next attempt twice). A chunk
 * whose send fails goes to `failed`, which retries its messages as the caller's queue does.
 */
export async function requeue(
  env: Env,
  lane: LaneName,
  items: readonly Requeue[],
  failed: (chunk: readonly Requeue[], error: unknown) => void,
): Promise<void> {
  for (const chunk of inSendLimits(items, (item) => item.message.body)) {
    try {
      await laneQueue(env, lane).sendBatch(
        chunk.map(({ message, delaySeconds }) =>
          delaySeconds === undefined ? requeued(message) : { ...requeued(message), delaySeconds },
        ),
      );
      for (const { message } of chunk) message.ack();
    } catch (error) {
      failed(chunk, error);
    }
  }
}
