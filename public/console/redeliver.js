// @ts-check
// The Redeliver / Resend now button of a delivery, in the Deliveries and the log views.

import { asApiError, isQuiet, thisSession } from "./api.js";
import { button, exactTime, say } from "./dom.js";

/**
 * A button that makes an attempt now (POST /v1/deliveries/{id}/redeliver) and says
 * what happened in `status`, in words: for a pending delivery, the time its scheduled
 * retry was due (never the API's field names).
 * @param {string} deliveryId
 * @param {HTMLElement} status
 * @param {{ label: string, dueAt: () => Promise<string | null>, after: () => void }} options
 *   `dueAt`: when the delivery's next retry is due (null: it is finished); `after`: a reload, a moment later
 */
export function redeliverButton(deliveryId, status, { label, dueAt, after }) {
  const node = button(label, { class: "secondary" });
  node.addEventListener("click", async () => {
    node.disabled = true;
    say(status, "Sending it now…");
    const scope = thisSession();
    try {
      const due = await dueAt();
      await scope.api("POST", `/v1/deliveries/${encodeURIComponent(deliveryId)}/redeliver`);
      say(
        status,
        due
          ? `Sent now instead of at ${exactTime(due)}. If it succeeds, that retry is dropped; ` +
              "if it fails, the schedule goes on from it."
          : "Redelivery queued: a new attempt is made in a moment.",
        "ok",
      );
      setTimeout(() => scope.active() && after(), 1500);
    } catch (thrown) {
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
