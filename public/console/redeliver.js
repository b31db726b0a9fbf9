// @ts-check
// The Redeliver / Resend now button of a delivery, in the Deliveries and the log views.

import { asApiError, isQuiet, thisSession } from "./api.js";
import { button, exactTime, say } from "./dom.js";

/**
 * What a click said, by delivery: the reload after it rebuilds the rows, and the new
 * button says it again and takes the focus back.
 * @type {Map<string, { text: string, at: number, refocus: boolean }>}
 */
const said = new Map();
const SAID_FOR_MS = 5_000;

/**
 * When its next retry is due now (null: finished); the view may be older than that retry.
 * @param {(method: string, path: string) => Promise<any>} call
 * @param {string} deliveryId
 * @returns {Promise<string | null>}
 */
async function dueNow(call, deliveryId) {
  /** @type {import("./api.js").Delivery} */
  const delivery = await call("GET", `/v1/deliveries/${encodeURIComponent(deliveryId)}`);
  return delivery.status === "pending" ? delivery.next_attempt_at : null;
}

/**
 * A button that makes an attempt now (POST /v1/deliveries/{id}/redeliver) and says
 * what happened in `status`, in words: for a pending delivery, the time its scheduled
 * retry was due (never the API's field names).
 * @param {string} deliveryId
 * @param {HTMLElement} status
 * @param {{ label: string, after: () => void }} options `after`: a reload, a moment later
 */
export function redeliverButton(deliveryId, status, { label, after }) {
  const node = button(label, { class: "secondary" });
  const last = said.get(deliveryId);
  if (last && Date.now() - last.at < SAID_FOR_MS) {
    say(status, last.text, "ok");
    // Only when the focus was lost with the old button, not taken elsewhere meanwhile.
    const lost = () => document.activeElement === document.body || document.activeElement === null;
    if (last.refocus) setTimeout(() => node.isConnected && lost() && node.focus(), 0);
    last.refocus = false;
  }
  node.addEventListener("click", async () => {
    node.disabled = true;
    say(status, "Sending it now…");
    const scope = thisSession();
    // Reloaded only if still shown: another view has its own URL and open rows.
    const view = node.closest("section");
    try {
      const due = await dueNow(scope.api, deliveryId);
      await scope.api("POST", `/v1/deliveries/${encodeURIComponent(deliveryId)}/redeliver`);
      const text = !due
        ? "Redelivery queued: a new attempt is made in a moment."
        : Date.parse(due) > Date.now()
          ? `Sent now instead of at ${exactTime(due)}. If it succeeds, that retry is dropped; ` +
            "if it fails, the schedule goes on from it."
          : "Sent now: its retry was overdue. If it fails, the schedule goes on from it.";
      say(status, text, "ok");
      said.set(deliveryId, { text, at: Date.now(), refocus: true });
      setTimeout(() => scope.active() && !view?.hidden && after(), 1500);
    } catch (thrown) {
      said.delete(deliveryId);
      const error = asApiError(thrown);
      if (isQuiet(error)) return;
      // 409: the scheduled attempt is due and under way; one attempt is enough.
      const text =
        error.code === "conflict"
          ? "Its next attempt is due now and is being made: refresh in a moment to see how it went."
          : error.message;
      say(status, text, "error");
    } finally {
      node.disabled = false;
    }
  });
  return node;
}
