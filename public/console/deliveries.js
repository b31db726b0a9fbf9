// @ts-check
// Deliveries: one row per event sent to the org, with its final status (delivered,
// pending with its next retry, failed), its attempts inside, and Redeliver / Resend now.

import { api } from "./api.js";
import { $, $input, $select, copyButton, el, exactTime, idFacts, pretty, timeEl } from "./dom.js";
import { attemptDetail, attemptStatus } from "./logs.js";
import { navigate, Pager, viewLink } from "./nav.js";
import { redeliverButton } from "./redeliver.js";
import { ListView } from "./rows.js";

/** @typedef {import("./api.js").Delivery} Delivery */
/** @typedef {import("./api.js").DeliveryDetail} DeliveryDetail */

/** The filters: URL parameter → the form control that edits it. */
const FILTERS = {
  status: "filter-status",
  event_type: "filter-event",
  job_id: "filter-delivery-job",
  delivery_id: "filter-delivery-id",
  since: "filter-since",
  until: "filter-until",
};
const TIME_FILTERS = new Set(["since", "until"]);

const pager = new Pager({ previous: "deliveries-previous", next: "deliveries-next", top: "deliveries-title" });

/** `2026-03-19T10:00` (a datetime-local value, the reader's time) ↔ an ISO time. @param {string} value */
const localToIso = (value) => (value ? new Date(value).toISOString() : "");
/** @param {string} iso */
function isoToLocal(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

$("delivery-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  /** @type {Record<string, string>} */
  const next = { view: "deliveries" };
  for (const [name, id] of Object.entries(FILTERS)) {
    const value = $input(id).value.trim();
    next[name] = TIME_FILTERS.has(name) ? localToIso(value) : value;
  }
  navigate(next);
});
$("clear-delivery-filters").addEventListener("click", () => {
  for (const id of Object.values(FILTERS)) $input(id).value = "";
  navigate({ view: "deliveries" });
});
$("deliveries-refresh").addEventListener("click", () => loadDeliveries());

/** @type {Record<Delivery["status"], string>} */
const STATUS_BADGES = { delivered: "ok", pending: "warn", failed: "fail" };
/** @type {Record<Delivery["status"], string>} */
const STATUS_LABELS = { delivered: "✓ Delivered", pending: "◷ Pending", failed: "✗ Failed" };

/** @param {Delivery} d */
const statusBadge = (d) => el("span", { class: `badge ${STATUS_BADGES[d.status]}`, text: STATUS_LABELS[d.status] });

/** @type {ListView<Delivery>} */
const view = new ListView({
  ids: { table: "deliveries-table", body: "deliveries-body", empty: "deliveries-empty", status: "deliveries-status" },
  path: "/v1/deliveries",
  filters: FILTERS,
  toInput: (name, value) => (TIME_FILTERS.has(name) ? isoToLocal(value) : value),
  pager,
  noun: ["delivery", "deliveries"],
  emptyText: {
    filtered: "No deliveries match these filters.",
    none: "No deliveries yet. Send a test event from Settings, or wait for your first job.",
  },
  columns: 6,
  rows: (deliveries) =>
    deliveries.map((d) => ({
      id: d.id,
      rowClass: "delivery",
      time: timeEl(d.created_at),
      label: `${d.event_type} ${d.job_id}, ${d.status}`,
      cells: [
        el("td", { "data-label": "Created" }),
        el("td", { "data-label": "Event", text: d.event_type }),
        el("td", { "data-label": "Job ID", class: "mono", text: d.job_id }),
        el("td", { "data-label": "Status" }, statusBadge(d)),
        el("td", { "data-label": "Attempts", text: String(d.attempt_count) }),
        el("td", { "data-label": "Next retry" }, d.next_attempt_at ? timeEl(d.next_attempt_at, true) : "—"),
      ],
      detail: async () => {
        // Attempt 1 holds the bytes every attempt sent (the payload below is parsed JSON).
        const [detail, first] = await Promise.all([
          api("GET", `/v1/deliveries/${encodeURIComponent(d.id)}`),
          attemptDetail(`att_${d.id.slice("dlv_".length)}_1`).catch(() => null),
        ]);
        return renderDetail(detail, first?.request.body ?? null);
      },
    })),
});

/** Loads the page the URL names. */
export const loadDeliveries = () => view.load();

/**
 * @param {DeliveryDetail} d
 * @param {string | null} sentBody the bytes sent, not `payload` re-serialised (null if they could not be read)
 */
function renderDetail(d, sentBody) {
  const last = d.attempts.at(-1);
  const status = el("p", { class: "status", role: "status" });
  const pending = d.status === "pending";
  const redeliver = redeliverButton(d.id, status, {
    label: pending ? "Resend now" : "Redeliver",
    after: () => loadDeliveries(),
  });
  const toLog = viewLink("Open its attempts in the log", { view: "logs", delivery_id: d.id });
  const payload = el("pre", {
    class: "code",
    tabindex: "0",
    "aria-label": "Payload",
    text: pretty(JSON.stringify(d.payload)),
  });
  return el(
    "div",
    { class: "detail-grid" },
    el(
      "dl",
      { class: "facts" },
      ...idFacts(d.id, d.job_id),
      el("dt", { text: "Status" }),
      el("dd", {}, statusBadge(d), d.last_error ? ` last error: ${d.last_error}` : ""),
      el("dt", { text: "Sent to" }),
      el("dd", {
        class: "mono",
        text: last?.url ?? (last?.error === "no_webhook_url" ? "(no URL)" : (d.webhook_url ?? "the org's default URL")),
      }),
      el("dt", { text: "Created" }),
      el("dd", { text: exactTime(d.created_at) }),
      pending && d.next_attempt_at ? el("dt", { text: "Next retry" }) : null,
      pending && d.next_attempt_at
        ? el("dd", {}, timeEl(d.next_attempt_at, true), ` (${exactTime(d.next_attempt_at)})`)
        : null,
    ),
    el("div", { class: "actions" }, redeliver, toLog),
    status,
    el("h4", { text: `Attempts (${d.attempt_count})` }),
    d.attempts_truncated
      ? el("p", { class: "muted", text: `The newest ${d.attempts.length} are listed here; the log has them all.` })
      : null,
    el(
      "ol",
      { class: "attempts" },
      ...d.attempts.map((a) =>
        el(
          "li",
          {},
          el("span", { text: `#${a.attempt}` }),
          timeEl(a.attempted_at),
          attemptStatus(a),
          el("span", { class: "muted", text: `${a.response_time_ms} ms` }),
          a.error_detail ? el("span", { class: "muted", text: a.error_detail }) : null,
        ),
      ),
    ),
    el(
      "h4",
      {},
      "Payload",
      copyButton("Copy payload", () => sentBody ?? JSON.stringify(d.payload, null, 2)),
    ),
    payload,
  );
}

/** Forgets what this view showed (sign-out). */
export function clearDeliveries() {
  view.clear();
  $select("filter-status").value = "";
}
