import type { AttemptSignatures } from "../store/attempts";
import type { DeliveryMessage } from "./message";
import type { Signer } from "./signing";

/** The headers of every attempt, in the order DESIGN.md lists them. */
export interface AttemptHeaderFields {
  deliveryId: string;
  eventType: string;
  attempt: number;
  /** Unix seconds of this attempt's send time (`webhook-timestamp`). */
  timestamp: number;
  signatures: AttemptSignatures;
}

export const USER_AGENT = "Zupertry-Webhooks/1";

export function attemptHeaders(f: AttemptHeaderFields): Record<string, string> {
  return {
    "Content-Type": "application/json",
    "User-Agent": USER_AGENT,
    "X-Zupertry-Signature": f.signatures.zupertry,
    "X-Zupertry-Event": f.eventType,
    "X-Zupertry-Delivery": f.deliveryId,
    "X-Zupertry-Attempt": String(f.attempt),
    "webhook-id": f.deliveryId,
    "webhook-timestamp": String(f.timestamp),
    "webhook-signature": f.signatures.standard,
  };
}

/**
 * Signs an attempt of `event` sent at `timestamp` (unix seconds) and builds its headers:
 * what the attempt POSTs, and what a `zupertry listen` session gets (src/delivery/relay.ts).
 */
export async function signedAttemptHeaders(
  signer: Signer,
  event: Pick<DeliveryMessage, "delivery_id" | "event_type" | "body">,
  attempt: number,
  timestamp: number,
): Promise<{ signatures: AttemptSignatures; headers: Record<string, string> }> {
  const signatures = await signer.sign(event.delivery_id, timestamp, event.body);
  const headers = attemptHeaders({
    deliveryId: event.delivery_id,
    eventType: event.event_type,
    attempt,
    timestamp,
    signatures,
  });
  return { signatures, headers };
}
