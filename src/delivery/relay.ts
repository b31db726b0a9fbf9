import type { DeliveryFrame } from "../org/listeners";
import { orgSettings } from "../org/org-settings";
import { signedAttemptHeaders } from "./headers";
import type { DeliveryMessage } from "./message";
import type { Signer } from "./signing";

/**
 * Relays a run's attempts to the org's `zupertry listen` sessions (src/org/listeners.ts).
 * An attempt is relayed when it starts, with the headers it is sent with: the listener
 * gets exactly what the endpoint gets, and a delivery the run moves aside or releases
 * without attempting it is relayed once, by the run that makes the attempt. An attempt
 * that cannot be sent (no URL, a refused URL) is relayed all the same, signed the same
 * way with the org's secrets: a developer with no endpoint yet still sees the event.
 *
 * The frames go to the org's object in one call per org every RELAY_FLUSH_MS and when
 * the run's attempts have ended, each call handed to `waitUntil` and never awaited by
 * the run: a listener, slow or gone, costs a delivery nothing.
 */

export type RelayItem = { orgId: string; event: DeliveryMessage; attempt: number } & (
  | { headers: Record<string, string> }
  | { signer: Signer }
);

/** How long a started attempt's frame may wait for others to share its call. */
export const RELAY_FLUSH_MS = 50;

const decoder = new TextDecoder();

/** One consumer run's relay. */
export class RunRelay {
  #pending: RelayItem[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly env: Pick<Env, "ORG_SETTINGS">,
    private readonly ctx: Pick<ExecutionContext, "waitUntil">,
  ) {}

  add(item: RelayItem): void {
    this.#pending.push(item);
    this.#timer ??= setTimeout(() => this.flush(), RELAY_FLUSH_MS);
  }

  /** Sends what is pending now. The run calls it once its attempts have ended. */
  flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#pending.length > 0) this.ctx.waitUntil(relayToListeners(this.env, this.#pending.splice(0)));
  }
}

export async function relayToListeners(env: Pick<Env, "ORG_SETTINGS">, items: readonly RelayItem[]): Promise<void> {
  await Promise.all(
    [...Map.groupBy(items, (item) => item.orgId)].map(async ([orgId, list]) => {
      try {
        const timestamp = Math.floor(Date.now() / 1000);
        const frames = await Promise.all(
          list.map(
            async (item): Promise<DeliveryFrame> => ({
              type: "delivery",
              delivery_id: item.event.delivery_id,
              job_id: item.event.job_id,
              event_type: item.event.event_type,
              attempt: item.attempt,
              headers:
                "headers" in item
                  ? item.headers
                  : (await signedAttemptHeaders(item.signer, item.event, item.attempt, timestamp)).headers,
              body: decoder.decode(item.event.body),
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
