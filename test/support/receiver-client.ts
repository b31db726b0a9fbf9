import { inject } from "vitest";
import type { ReceivedRequest, Scenario } from "./receiver-types";

/**
 * A client for one endpoint of the programmable receiver (receiver.ts), over its HTTP
 * control API: the same from workerd tests and from the Node e2e tests.
 */
export function receiver(name: string, { origin = "first" }: { origin?: "first" | "second" } = {}) {
  const base = inject(origin === "first" ? "receiverUrl" : "secondReceiverUrl");
  return {
    url: `${base}/hook/${name}`,
    async script(scenario: Scenario): Promise<void> {
      await fetch(`${base}/_scenario/${name}`, { method: "PUT", body: JSON.stringify(scenario) });
    },
    async requests(): Promise<Array<ReceivedRequest & { text: string }>> {
      const list = (await (await fetch(`${base}/_requests/${name}`)).json()) as ReceivedRequest[];
      return list.map((r) => ({
        ...r,
        text: new TextDecoder().decode(Uint8Array.from(atob(r.body), (ch) => ch.charCodeAt(0))),
      }));
    },
  };
}
