import type { AttemptRecord } from "../store/attempts";
import type { DeliveryMessage } from "./message";

/** What attempt 1 stores once for the whole delivery: the event as it came in. */
export function eventColumns(
  attempt: number,
  event: DeliveryMessage,
): Pick<AttemptRecord, "url_from_event" | "request_body"> {
  return attempt === 1
    ? { url_from_event: event.webhook_url !== null, request_body: new TextDecoder().decode(event.body) }
    : { url_from_event: null, request_body: null };
}
