import type { DeliveryFrame } from "../org/listeners";
import { orgSettings } from "../org/org-settings";
import { signedAttemptHeaders } from "./headers";
import type { DeliveryMessage } from "./message";
import type { Signer } from "./signing";

/**
 * Relays a run's attempts to the org's `zupertry listen` sessions (src/org/listeners.ts):
 * one call per org that has listeners, made when the attempts start. The consumer hands
 * the returned promise to `waitUntil` and never awaits it: a listener, slow or gone,
 * costs a delivery nothing. Relayed copies are signed like the attempt (the same
 * secrets, the same headers), so a receiver's check runs unchanged on a laptop.
 */

export interface RelayItem {
  orgId: string;
  event: DeliveryMessage;
  attempt: number;
  signer: Signer;
}

const decoder = new TextDecoder();

export async function relayToListeners(env: Pick<Env, "ORG_SETTINGS">, items: readonly RelayItem[]): Promise<void> {
  await Promise.all(
    [...Map.groupBy(items, (item) => item.orgId)].map(async ([orgId, list]) => {
      try {
        const timestamp = Math.floor(Date.now() / 1000);
        const frames = await Promise.all(
          list.map(
            async ({ event, attempt, signer }): Promise<DeliveryFrame> => ({
              type: "delivery",
              delivery_id: event.delivery_id,
              job_id: event.job_id,
              event_type: event.event_type,
              attempt,
              headers: (await signedAttemptHeaders(signer, event, attempt, timestamp)).headers,
              body: decoder.decode(event.body),
            }),
          ),
        );
        await orgSettings(env, orgId).relay(frames);
      } catch (error) {
        // Listeners miss these; deliveries go on as ever.
        console.error(
          JSON.stringify({ event: "listeners.relay_failed", org_id: orgId, count: list.length, error: String(error) }),
        );
      }
    }),
  );
}
