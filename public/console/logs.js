// @ts-check
// Logs → Webhook logs: every attempt, newest first, and one attempt in full (what was
// sent, what came back), with Redeliver and "copy as curl".

import { api } from "./api.js";
import { $, $input, copyButton, curlCommand, el, exactTime, idFacts, pretty, timeEl } from "./dom.js";
import { navigate, Pager, viewLink } from "./nav.js";
import { redeliverButton } from "./redeliver.js";
import { ListView } from "./rows.js";

/** @typedef {import("./api.js").Attempt} Attempt */
/** @typedef {import("./api.js").AttemptDetail} AttemptDetail */

const FILTERS = { job_id: "filter-job", delivery_id: "filter-delivery", outcome: "filter-outcome" };

const pager = new Pager({ previous: "logs-previous", next: "logs-next", top: "logs-title" });
/** Attempts never change once logged: their details are fetched once. @type {Map<string, AttemptDetail>} */
const details = new Map();

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  /** @type {Record<string, string>} */
  const next = { view: "logs" };
  for (const [name, id] of Object.entries(FILTERS)) next[name] = $input(id).value.trim();
  navigate(next);
});
$("refresh").addEventListener("click", () => loadLogs());

/** An attempt's outcome as a badge ("✗ 200 · timeout": the body timed out), why on hover. @param {Attempt} attempt */
export function attemptStatus(attempt) {
  const label =
    attempt.status_code === null
      ? String(attempt.error)
      : attempt.error && attempt.error !== "http_status"
        ? `${attempt.status_code} · ${attempt.error}`
        : String(attempt.status_code);
  return el("span", {
    class: `badge ${attempt.outcome === "succeeded" ? "ok" : "fail"}`,
    title: attempt.error_detail ?? undefined,
    text: `${attempt.outcome === "succeeded" ? "✓" : "✗"} ${label}`,
  });
}

/** @type {ListView<Attempt>} */
const view = new ListView({
  ids: { table: "logs-table", body: "logs-body", empty: "logs-empty", status: "logs-status" },
  path: "/v1/webhook-logs",
  filters: FILTERS,
  pager,
  noun: ["attempt", "attempts"],
  emptyText: {
    filtered: "No attempts match these filters.",
    none: "No webhook attempts yet. Send a test event from Settings, or wait for your first job.",
  },
  columns: 6,
  rows: (attempts) =>
    attempts.map((a) => ({
      id: a.id,
      rowClass: "attempt",
      time: timeEl(a.attempted_at),
      label: `${a.event_type} ${a.job_id} attempt ${a.attempt}`,
      cells: [
        el("td", { "data-label": "Time" }),
        el("td", { "data-label": "Event", text: a.event_type }),
        el("td", { "data-label": "Job ID", class: "mono", text: a.job_id }),
        el("td", { "data-label": "Attempt", text: `#${a.attempt}` }),
        el("td", { "data-label": "Status" }, attemptStatus(a)),
        el("td", { "data-label": "Response time", text: `${a.response_time_ms} ms` }),
      ],
      detail: async () => renderDetail(await attemptDetail(a.id)),
    })),
});

/** One attempt in full. @param {string} id @returns {Promise<AttemptDetail>} */
export async function attemptDetail(id) {
  const detail = details.get(id) ?? (await api("GET", `/v1/webhook-logs/${encodeURIComponent(id)}`));
  details.set(id, detail);
  return detail;
}

/** Loads the page the URL names. */
export const loadLogs = () => view.load();

/**
 * @param {Record<string, string> | null} headers
 * @param {string} none what to show when there are none
 */
function headerText(headers, none) {
  return headers
    ? Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}`)
        .join("\n")
    : none;
}

/**
 * A labelled code block with a copy button in its heading.
 * @param {string} title
 * @param {string} text what is shown
 * @param {HTMLElement | null} [badge]
 * @param {string} [copied] what the button copies, when not what is shown
 */
function block(title, text, badge = null, copied = text) {
  const pre = el("pre", { class: "code", tabindex: "0", "aria-label": title, text });
  return [
    el(
      "h4",
      {},
      title,
      badge,
      copyButton(`Copy ${title.toLowerCase()}`, () => copied, { fallback: () => pre }),
    ),
    pre,
  ];
}

/** @param {AttemptDetail} d */
function renderDetail(d) {
  const status = el("p", { class: "status", role: "status" });
  const redeliver = redeliverButton(d.delivery_id, status, { label: "Redeliver", after: () => loadLogs() });
  const curl = d.url && d.request.headers ? curlCommand(d.url, d.request.headers, d.request.body) : null;
  const ofDelivery = viewLink("Its delivery", { view: "deliveries", delivery_id: d.delivery_id });
  return el(
    "div",
    { class: "detail-grid" },
    el(
      "dl",
      { class: "facts" },
      ...idFacts(d.delivery_id, d.job_id),
      el("dt", { text: "URL" }),
      el("dd", { class: "mono", text: d.url ?? "(none)" }),
      el("dt", { text: "Attempted" }),
      el("dd", { text: exactTime(d.attempted_at) }),
      el("dt", { text: "Outcome" }),
      el("dd", { text: d.error ? `${d.outcome} (${d.error})` : d.outcome }),
      d.error_detail ? el("dt", { text: "Why" }) : null,
      d.error_detail ? el("dd", { text: d.error_detail }) : null,
    ),
    el(
      "div",
      { class: "actions" },
      redeliver,
      curl ? copyButton("Copy as curl", () => curl, { visible: "Copy as curl" }) : null,
      ofDelivery,
    ),
    status,
    ...block("Request headers", headerText(d.request.headers, "(nothing was sent)")),
    // Shown indented; copied as sent, the bytes its signature is over.
    ...block("Request payload", pretty(d.request.body), null, d.request.body),
    ...block("Response headers", headerText(d.response.headers, "(no response)")),
    ...block(
      "Response body",
      d.response.body ?? "(no body)",
      d.response.truncated ? el("span", { class: "badge warn", text: "truncated" }) : null,
    ),
  );
}

/** Forgets what this view showed (sign-out). */
export function clearLogs() {
  view.clear();
  details.clear();
}
