// @ts-check
// Settings: the default webhook URL and its endpoint's health (a 24-hour chart, recent
// failures), the signing secret, and test events.

import { api, asApiError, isQuiet, thisSession, worthRetrying } from "./api.js";
import {
  $,
  $button,
  $control,
  $dialog,
  $input,
  $select,
  askToConfirm,
  button,
  copyText,
  el,
  exactTime,
  say,
  timeEl,
} from "./dom.js";
import { loadKeys } from "./keys.js";
import { attemptStatus } from "./logs.js";
import { viewLink } from "./nav.js";

/** @typedef {import("./api.js").Settings} Settings */
/** @typedef {import("./api.js").RecentOutcome} RecentOutcome */
/** @typedef {import("./api.js").HourCounts} HourCounts */

/** @type {{ settings: Settings | null, secretShown: boolean }} */
const state = { settings: null, secretShown: false };

/**
 * The controls that act on the loaded settings stay disabled while they load: a URL
 * typed before the answer arrives would otherwise be overwritten by it, and then saved
 * as whatever the server had (or cleared).
 */
const SETTINGS_CONTROLS = ["webhook-url", "save-url", "reveal", "copy", "rotate"];

/** Counts loads: an older answer landing last must not overwrite a URL typed since. */
let loads = 0;

export async function loadSettings() {
  const load = ++loads;
  for (const id of SETTINGS_CONTROLS) $control(id).disabled = true;
  state.secretShown = false; // shown after a rotation, not whenever Settings is opened again
  $("view-settings").setAttribute("aria-busy", "true");
  loadKeys();
  try {
    const answer = await api("GET", "/v1/webhook");
    if (load !== loads) return;
    state.settings = answer;
    renderUrl();
    renderSecret();
    for (const id of SETTINGS_CONTROLS) $control(id).disabled = false;
  } catch (thrown) {
    const error = asApiError(thrown);
    if (isQuiet(error) || load !== loads) return;
    say("url-status", error.message, "error");
    // The controls stay off until the settings are known: offer to ask again.
    if (worthRetrying(error)) {
      const again = button("Try again", { class: "secondary small" });
      again.addEventListener("click", () => loadSettings());
      $("url-status").append(" ", again);
    }
  } finally {
    if (load === loads) $("view-settings").removeAttribute("aria-busy");
  }
}

/** Sign-in answers the settings already: kept, so the first view does not ask again. @param {Settings} settings */
export function useSettings(settings) {
  state.settings = settings;
}

/** The loaded settings (every caller renders after they are loaded). */
function settings() {
  if (!state.settings) throw new Error("settings are not loaded");
  return state.settings;
}

function renderUrl() {
  $input("webhook-url").value = settings().webhook_url ?? "";
  renderHealth();
  loadListenerResults();
}

// ---- zupertry listen ---------------------------------------------------------------

/** How many `zupertry listen` sessions are connected, and what they answered (not attempts). */
async function loadListenerResults() {
  const n = settings().listeners;
  $("listeners-count").textContent = n
    ? `${n} listener${n === 1 ? "" : "s"} connected now.`
    : "No listener connected now.";
  try {
    /** @type {{ data: import("./api.js").ListenerResult[] }} */
    const { data } = await api("GET", "/v1/listen/deliveries");
    $("listener-body").replaceChildren(
      ...(data.length
        ? data.slice(0, 10).map((r) =>
            el(
              "tr",
              {},
              el("td", { "data-label": "Forwarded" }, timeEl(r.received_at)),
              el("td", { "data-label": "Event", text: r.event_type }),
              el("td", { "data-label": "Job ID", class: "mono", text: r.job_id }),
              el("td", { "data-label": "Attempt", text: `#${r.attempt}` }),
              el(
                "td",
                { "data-label": "Local answer" },
                r.error === null
                  ? el("span", {
                      class: `badge ${r.status_code !== null && r.status_code < 300 ? "ok" : "fail"}`,
                      text: `${r.status_code} in ${r.response_time_ms} ms`,
                    })
                  : el("span", { class: "badge fail", text: r.error }),
              ),
              el("td", { "data-label": "Listener key", class: "mono", text: r.listener_key_id }),
            ),
          )
        : [el("tr", {}, el("td", { colspan: "6", class: "muted", text: "Nothing forwarded yet." }))]),
    );
  } catch (error) {
    if (!isQuiet(error)) say("listeners-count", asApiError(error).message, "error");
  }
}

// ---- endpoint health ---------------------------------------------------------------

/** @type {Record<string, string>} */
const SLOW_REASONS = {
  timeout: "it did not answer within the timeout",
  slow: "it answers slowly",
  failing: "it failed several times in a row",
};
/** @type {Record<RecentOutcome, string>} */
const RECENT_LABELS = {
  ok: "OK",
  slow_ok: "OK, slow",
  http_error: "error status",
  timeout: "timeout",
  network_error: "network error",
};

/** The default endpoint's health: its lane, how it answered lately, and its last day by the hour. */
function renderHealth() {
  const h = settings().health;
  $("health").hidden = !h;
  $("health-chart").hidden = !h;
  if (!h) {
    $("health-lane").textContent = "No default URL.";
    $("health-lane").dataset.lane = "";
    $("recent-failures").replaceChildren();
    return;
  }
  $("health-lane").dataset.lane = h.lane;
  $("health-lane").textContent =
    h.lane === "fast"
      ? `${h.endpoint} is answering well: its webhooks go out at once.`
      : `${h.endpoint} is in the slow lane since ${h.lane_since ? exactTime(h.lane_since) : "now"}: ` +
        `${SLOW_REASONS[h.lane_reason ?? ""] ?? "it answers badly"}. ` +
        "Its webhooks keep the same retry schedule, apart from other customers' traffic, until it answers well again.";
  $("health-rate").textContent =
    h.success_rate_24h === null
      ? "No attempts yet"
      : `${Math.round(h.success_rate_24h * 1000) / 10}% of ${h.attempts_24h} (${h.timeouts_24h} timed out)`;
  $("health-failures").textContent = String(h.consecutive_failures) + (h.last_error ? ` (last: ${h.last_error})` : "");
  $("health-last-success").replaceChildren(h.last_success_at ? timeEl(h.last_success_at) : "Never");
  $("health-latency").textContent = h.latency_ms === null ? "—" : `about ${h.latency_ms} ms`;
  /** @type {Partial<Record<RecentOutcome, number>>} */
  const counts = {};
  for (const outcome of h.recent) counts[outcome] = (counts[outcome] ?? 0) + 1;
  $("health-recent").replaceChildren(
    el(
      "span",
      { class: "recent", "aria-hidden": "true" },
      ...h.recent.map((o) => el("span", { class: `dot ${o}`, title: RECENT_LABELS[o] })),
    ),
    el("span", {
      class: "visually-hidden",
      text:
        Object.entries(counts)
          .map(([o, n]) => `${n} ${RECENT_LABELS[/** @type {RecentOutcome} */ (o)]}`)
          .join(", ") || "none",
    }),
    h.recent.length === 0 ? "None yet" : "",
  );
  renderChart(h.hourly);
  loadRecentFailures(h.endpoint);
}

const SVG = "http://www.w3.org/2000/svg";
/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 */
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

const hourFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/**
 * 24 bars, one per hour, each as tall as the hour's attempts (to the busiest hour) and
 * split into succeeded and failed. Its text alternative says the same in words.
 * @param {HourCounts[]} hours
 */
function renderChart(hours) {
  const width = 240;
  const height = 48;
  const barWidth = width / hours.length;
  const most = Math.max(1, ...hours.map((h) => h.succeeded + h.failed));
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    class: "chart",
    "aria-hidden": "true",
  });
  hours.forEach((h, i) => {
    const total = h.succeeded + h.failed;
    const tall = (total / most) * (height - 2);
    const failedTall = total ? (h.failed / total) * tall : 0;
    const x = i * barWidth + 1;
    const group = svg("g", {});
    const title = svg("title", {});
    title.textContent = `${hourFormat.format(new Date(h.hour))}: ${h.succeeded} succeeded, ${h.failed} failed`;
    group.append(title);
    group.append(svg("rect", { x, y: 0, width: barWidth - 2, height, class: "hour" }));
    if (total) {
      group.append(
        svg("rect", { x, y: height - tall, width: barWidth - 2, height: tall - failedTall, class: "ok" }),
        svg("rect", { x, y: height - failedTall, width: barWidth - 2, height: failedTall, class: "failed" }),
      );
    }
    chart.append(group);
  });
  const busy = hours.filter((h) => h.succeeded + h.failed > 0);
  const worst = busy.reduce(
    /** @param {HourCounts | null} w @param {HourCounts} h */
    (w, h) => (w === null || h.failed / (h.succeeded + h.failed) > w.failed / (w.succeeded + w.failed) ? h : w),
    null,
  );
  const rate = (/** @type {HourCounts} */ h) => Math.round((h.succeeded / (h.succeeded + h.failed)) * 100);
  $("health-chart-caption").textContent = busy.length
    ? `Attempts by hour, last 24 hours: ${busy.length} hour${busy.length === 1 ? "" : "s"} with attempts` +
      (worst?.failed
        ? `; lowest success ${rate(worst)}% at ${hourFormat.format(new Date(worst.hour))}.`
        : ", all succeeded.")
    : "Attempts by hour, last 24 hours: none yet.";
  $("health-chart-bars").replaceChildren(chart);
}

/** @param {string | null} url */
function originOf(url) {
  try {
    return url && new URL(url).origin;
  } catch {
    return null;
  }
}

/**
 * The endpoint's last failed attempts, each one click from the log: the log's are the
 * org's, so those sent to another host (an event's own URL) or nowhere are left out.
 * @param {string} endpoint an origin, as the health's
 */
async function loadRecentFailures(endpoint) {
  const list = $("recent-failures");
  try {
    /** @type {import("./api.js").Page<import("./api.js").Attempt>} */
    const page = await api("GET", "/v1/webhook-logs?outcome=failed&limit=20");
    const mine = page.data.filter((a) => originOf(a.url) === endpoint);
    if (state.settings?.health?.endpoint !== endpoint) return; // a newer URL's is due
    if (!mine.length) {
      list.replaceChildren(el("li", { class: "muted", text: "None among the org's latest failed attempts." }));
      return;
    }
    list.replaceChildren(
      ...mine.slice(0, 5).map((a) => {
        const link = viewLink(a.job_id, { view: "logs", delivery_id: a.delivery_id });
        return el("li", {}, timeEl(a.attempted_at), link, `#${a.attempt}`, attemptStatus(a));
      }),
    );
  } catch (error) {
    if (isQuiet(error) || state.settings?.health?.endpoint !== endpoint) return;
    list.replaceChildren(el("li", { class: "error", text: asApiError(error).message }));
  }
}

// ---- URL and secret ----------------------------------------------------------------

/** Only the secret's card: revealing or rotating never touches a URL being typed. */
function renderSecret() {
  const s = settings();
  $("secret").textContent = state.secretShown ? s.signing_secret : `whsec_${"•".repeat(16)}`;
  $("reveal").textContent = state.secretShown ? "Hide" : "Reveal";
  $("reveal").setAttribute("aria-pressed", String(state.secretShown));
  $("rotated-at").textContent = s.secret_rotated_at
    ? `Last rotated ${exactTime(s.secret_rotated_at)}.`
    : "Never rotated.";
}

$("url-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = $input("webhook-url").value.trim();
  say("url-status", "Saving…");
  try {
    state.settings = await api("PUT", "/v1/webhook", { webhook_url: value === "" ? null : value });
    renderUrl();
    say(
      "url-status",
      value
        ? "Saved. New deliveries go to this URL."
        : "Cleared. Events without their own URL will fail with no_webhook_url.",
      "ok",
    );
  } catch (thrown) {
    const error = asApiError(thrown);
    if (!isQuiet(error)) say("url-status", `Not saved: ${error.message}`, "error");
  }
});

$("reveal").addEventListener("click", () => {
  state.secretShown = !state.secretShown;
  renderSecret();
});

$("copy").addEventListener("click", async () => {
  if (await copyText(settings().signing_secret)) {
    say("secret-status", "Copied to the clipboard.", "ok");
    return;
  }
  state.secretShown = true;
  renderSecret();
  getSelection()?.selectAllChildren($("secret"));
  say("secret-status", "Copying is blocked here: the secret is selected, press Ctrl+C / ⌘C.", "error");
});

$("rotate").addEventListener("click", () => askToConfirm("rotate-dialog"));
$dialog("rotate-dialog").addEventListener("close", async () => {
  if ($dialog("rotate-dialog").returnValue !== "confirm") return;
  say("secret-status", "Rotating…");
  try {
    state.settings = await api("POST", "/v1/webhook/rotate-secret");
    state.secretShown = true;
    renderSecret();
    say(
      "secret-status",
      "Rotated. Update ZUPERTRY_WEBHOOK_SECRET now; the old secret stays valid in webhook-signature for 24 hours.",
      "ok",
    );
  } catch (thrown) {
    const error = asApiError(thrown);
    if (!isQuiet(error)) say("secret-status", error.message, "error");
  }
});

// ---- test events -------------------------------------------------------------------

$("send-test").addEventListener("click", async () => {
  const sendButton = $button("send-test");
  sendButton.disabled = true;
  const result = $("test-result");
  const eventType = $select("test-event-type").value;
  say("test-result", `Sending a test ${eventType}…`);
  const scope = thisSession();
  try {
    const queued = await scope.api("POST", "/v1/webhook/test", { event_type: eventType });
    const attempt = await firstAttempt(scope.api, queued.delivery_id);
    const link = viewLink("See its delivery", { view: "deliveries", delivery_id: queued.delivery_id });
    if (!attempt) {
      result.replaceChildren(`Queued ${queued.job_id}; no attempt yet. `, link);
    } else if (attempt.outcome === "succeeded") {
      result.dataset.kind = "ok";
      result.replaceChildren(`Delivered: HTTP ${attempt.status_code} in ${attempt.response_time_ms} ms. `, link);
    } else {
      result.dataset.kind = "error";
      const why = attempt.error_detail ? ` (${attempt.error_detail})` : "";
      result.replaceChildren(
        `Failed: ${attempt.status_code ?? ""} ${attempt.error} after ${attempt.response_time_ms} ms${why}. `,
        link,
      );
    }
  } catch (thrown) {
    const error = asApiError(thrown);
    if (!isQuiet(error)) say("test-result", error.message, "error");
  } finally {
    sendButton.disabled = false;
  }
});

/**
 * Waits for a delivery's first attempt to be logged (a second or so).
 * @param {typeof api} call the session's calls: the wait ends with it
 * @param {string} deliveryId
 * @param {number} [timeoutMs]
 * @returns {Promise<import("./api.js").Attempt | null>}
 */
async function firstAttempt(call, deliveryId, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    /** @type {import("./api.js").Page<import("./api.js").Attempt>} */
    const page = await call("GET", `/v1/webhook-logs?delivery_id=${encodeURIComponent(deliveryId)}&limit=1`);
    if (page.data.length) return page.data[0] ?? null;
    await new Promise((r) => setTimeout(r, 400));
  }
  return null;
}

/** Forgets what this view showed (sign-out): nothing of one org may show to the next. */
export function clearSettings() {
  state.settings = null;
  state.secretShown = false;
  $("secret").textContent = `whsec_${"•".repeat(16)}`;
  $input("webhook-url").value = "";
  for (const id of ["keys-body", "listener-body", "recent-failures", "health-chart-bars", "health-recent"]) {
    $(id).replaceChildren();
  }
  for (const id of ["listeners-count", "health-lane", "test-result", "keys-status", "url-status", "secret-status"]) {
    say(id, "");
  }
  $("health").hidden = true;
  $("health-chart").hidden = true;
}
