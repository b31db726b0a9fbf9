import type { AttemptSignatures } from "../store/attempts";

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
