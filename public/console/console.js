// @ts-check
// The Zupertry webhooks console: a thin client of the public org API (/v1/...), with
// no private endpoint and no build step. The org API key lives in this tab's
// sessionStorage and is only ever sent as the Authorization header.
//
// Everything that comes from the server is put on the page with textContent, never
// as HTML: a receiver that answers `<script>` shows as text.

/**
 * What the org API answers (its OpenAPI document, /openapi.json, is the contract).
 * @typedef {{ endpoint: string, lane: "fast" | "slow", lane_reason: "timeout" | "slow" | "failing" | null,
 *   lane_since: string | null, success_rate_24h: number | null, attempts_24h: number, timeouts_24h: number,
 *   consecutive_failures: number, last_success_at: string | null, last_failure_at: string | null,
 *   last_error: string | null, latency_ms: number | null, recent: RecentOutcome[] }} EndpointHealth
 * @typedef {"ok" | "slow_ok" | "http_error" | "timeout" | "network_error"} RecentOutcome
 * @typedef {{ webhook_url: string | null, signing_secret: string, secret_rotated_at: string | null,
 *   health: EndpointHealth | null }} Settings
 * @typedef {{ id: string, delivery_id: string, job_id: string, event_type: string, attempt: number,
 *   status_code: number | null, response_time_ms: number, attempted_at: string, outcome: "succeeded" | "failed",
 *   error: string | null, error_detail: string | null }} Attempt
 * @typedef {Attempt & { url: string | null,
 *   request: { headers: Record<string, string> | null, body: string },
 *   response: { headers: Record<string, string> | null, body: string | null, truncated: boolean } }} AttemptDetail
 * @typedef {{ data: Attempt[], next_cursor: string | null }} AttemptPage
 */

const KEY_STORAGE = "zupertry.orgKey";
const PAGE_SIZE = 20;

/**
 * An element of index.html, by id. The page is fixed (and tested), so a missing one is a
 * bug: it throws. `$input`, `$button` and `$dialog` say which kind of element it is.
 * @param {string} id
 * @returns {HTMLElement}
 */
function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html has no #${id}`);
  return node;
}
/** @param {string} id */
const $input = (id) => /** @type {HTMLInputElement} */ ($(id));
/** @param {string} id */
const $button = (id) => /** @type {HTMLButtonElement} */ ($(id));
/** A form control (an input or a button): what can be disabled. @param {string} id */
const $control = (id) => /** @type {HTMLInputElement | HTMLButtonElement} */ ($(id));
/** @param {string} id */
const $dialog = (id) => /** @type {HTMLDialogElement} */ ($(id));

/**
 * @type {{ key: string | null, settings: Settings | null, secretShown: boolean, cursor: string | null,
 *   nextCursor: string | null, details: Map<string, AttemptDetail>, logsLoad: number, bookmark: string | null }}
 */
const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  settings: null,
  secretShown: false,
  cursor: null,
  nextCursor: null,
  details: new Map(),
  logsLoad: 0,
  // The log's newest bookmark this tab saw: sent back, so no read shows an older log.
  bookmark: null,
};

const BOOKMARK_HEADER = "X-Zupertry-Bookmark";

/**
 * Whatever a `catch` got, as an ApiError (anything else is a bug, shown as its message).
 * @param {unknown} error
 * @returns {ApiError}
 */
function asApiError(error) {
  return error instanceof ApiError
    ? error
    : new ApiError(0, "internal", String(error instanceof Error ? error.message : error));
}

class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the org API. 401 signs out; network failures become a readable error.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {string | null} [key]
 * @returns {Promise<any>} the answer's JSON (its shape is the route's, see the typedefs above)
 */
async function api(method, path, body, key = state.key) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: {
        Authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        ...(state.bookmark === null ? {} : { [BOOKMARK_HEADER]: state.bookmark }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network_error", "Couldn't reach the dispatcher. Check your connection, then try again.");
  }
  const bookmark = res.headers.get(BOOKMARK_HEADER);
  // Bookmarks sort by time: keep the newest (answers may arrive out of order).
  if (bookmark !== null && (state.bookmark === null || bookmark > state.bookmark)) state.bookmark = bookmark;
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const error = new ApiError(
      res.status,
      data?.error?.code ?? "http_error",
      data?.error?.message ?? `The server answered HTTP ${res.status}.`,
    );
    if (res.status === 401 && key === state.key)
      signOut("That API key was not accepted: it is invalid or has been revoked.");
    throw error;
  }
  return data;
}

// ---- small DOM helpers -------------------------------------------------------------

/**
 * A new element: `attrs.class` and `attrs.text` set className and textContent, the rest
 * are attributes (true: present, false/null/undefined: left out).
 * @param {string} tag
 * @param {Record<string, string | boolean | null | undefined>} [attrs]
 * @param {Array<Node | string | null | undefined>} children
 * @returns {HTMLElement}
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = String(value);
    else if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/**
 * @param {string} id
 * @param {string} text
 * @param {"" | "ok" | "error"} [kind]
 */
function say(id, text, kind = "") {
  const node = $(id);
  node.textContent = text;
  node.dataset.kind = kind;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
/** @param {string} iso */
const when = (iso) => timeFormat.format(new Date(iso));

/** @param {string} text */
function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// ---- session -----------------------------------------------------------------------

function showSignedIn() {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  $("session-key").textContent = `Signed in with ${state.key?.slice(0, 7)}…`;
}

/** @param {string} [message] */
function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  state.settings = null;
  state.secretShown = false;
  state.bookmark = null;
  state.details.clear();
  $("logs-body").replaceChildren();
  $("secret").textContent = "whsec_••••••••••••••••";
  $input("webhook-url").value = "";
  $("app").hidden = true;
  $("session").hidden = true;
  $("sign-in").hidden = false;
  $input("api-key").value = "";
  say("sign-in-error", message, message ? "error" : "");
  $input("api-key").focus();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $input("api-key").value.trim();
  if (!/^zk_[A-Za-z0-9_-]{20,}$/.test(key)) {
    say("sign-in-error", "An org API key starts with zk_ and is about 46 characters long.", "error");
    return;
  }
  say("sign-in-error", "Checking the key…");
  try {
    const settings = await api("GET", "/v1/webhook", undefined, key);
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    state.settings = settings;
    say("sign-in-error", "");
    showSignedIn();
    route();
  } catch (error) {
    say(
      "sign-in-error",
      asApiError(error).status === 401
        ? "That API key was not accepted: it is invalid or has been revoked."
        : asApiError(error).message,
      "error",
    );
  }
});

$("sign-out").addEventListener("click", () => signOut("Signed out. The key was removed from this tab."));

// ---- navigation: the view and the filters live in the URL --------------------------

function params() {
  return new URLSearchParams(location.search);
}

/**
 * @param {Record<string, string | null | undefined>} next the URL's query (empty values are left out)
 * @param {{ replace?: boolean }} [options]
 */
function navigate(next, { replace = false } = {}) {
  const query = new URLSearchParams(/** @type {Array<[string, string]>} */ (Object.entries(next).filter(([, v]) => v)));
  const url = `${location.pathname}${query.size ? `?${query}` : ""}`;
  history[replace ? "replaceState" : "pushState"](null, "", url);
  route();
}

function route() {
  if (!state.key) return;
  const view = params().get("view") === "settings" ? "settings" : "logs";
  $("view-logs").hidden = view !== "logs";
  $("view-settings").hidden = view !== "settings";
  for (const tab of document.querySelectorAll(".tabs a")) {
    if (/** @type {HTMLElement} */ (tab).dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "logs") loadLogs();
  else loadSettings();
}

for (const tab of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".tabs a"))) {
  tab.addEventListener("click", (event) => {
    event.preventDefault();
    const current = Object.fromEntries(params());
    navigate({ ...current, view: tab.dataset.view, cursor: "" });
  });
}
window.addEventListener("popstate", route);

// ---- logs --------------------------------------------------------------------------

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  navigate({ view: "logs", job_id: $input("filter-job").value.trim(), outcome: $input("filter-outcome").value });
});
$("refresh").addEventListener("click", () => loadLogs());
$("first-page").addEventListener("click", () => navigate({ ...Object.fromEntries(params()), cursor: "" }));
$("next-page").addEventListener("click", () => navigate({ ...Object.fromEntries(params()), cursor: state.nextCursor }));

/**
 * Loads the page the URL names. Only the latest load may render: an older answer that
 * arrives late (a Refresh, then Next page) must not replace the newer page.
 */
async function loadLogs() {
  const load = ++state.logsLoad;
  const p = params();
  $input("filter-job").value = p.get("job_id") ?? "";
  $input("filter-outcome").value = p.get("outcome") ?? "";
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const name of ["job_id", "outcome", "cursor"]) {
    const value = p.get(name);
    if (value) query.set(name, value);
  }

  const table = $("logs-table");
  table.setAttribute("aria-busy", "true");
  say("logs-status", "Loading…");
  try {
    /** @type {AttemptPage} */
    const page = await api("GET", `/v1/webhook-logs?${query}`);
    if (load !== state.logsLoad) return;
    state.nextCursor = page.next_cursor;
    renderLogs(page.data, Boolean(p.get("job_id") || p.get("outcome")));
    $button("next-page").disabled = !page.next_cursor;
    $button("first-page").disabled = !p.get("cursor");
    say(
      "logs-status",
      page.data.length
        ? `${page.data.length} attempt${page.data.length === 1 ? "" : "s"}` +
            `${p.get("cursor") ? " (older page)" : ""}, newest first.`
        : "",
    );
  } catch (thrown) {
    const error = asApiError(thrown);
    if (error.status === 401 || load !== state.logsLoad) return;
    $("logs-body").replaceChildren();
    showEmpty(error.message, true);
    say("logs-status", "");
  } finally {
    if (load === state.logsLoad) table.removeAttribute("aria-busy");
  }
}

/**
 * @param {string} text
 * @param {boolean} [isError]
 */
function showEmpty(text, isError = false) {
  const empty = $("logs-empty");
  empty.hidden = false;
  empty.dataset.kind = isError ? "error" : "";
  empty.replaceChildren(el("p", { text }));
  if (isError) empty.append(el("button", { type: "button", class: "secondary", text: "Try again" }));
  empty.querySelector("button")?.addEventListener("click", () => loadLogs());
}

/** @param {Attempt} attempt */
function statusCell(attempt) {
  const label =
    attempt.status_code === null
      ? String(attempt.error)
      : attempt.error === "redirect"
        ? `${attempt.status_code} redirect`
        : String(attempt.status_code);
  return el("span", {
    class: `badge ${attempt.outcome === "succeeded" ? "ok" : "fail"}`,
    title: attempt.error_detail ?? undefined,
    text: `${attempt.outcome === "succeeded" ? "✓" : "✗"} ${label}`,
  });
}

/**
 * @param {Attempt[]} attempts
 * @param {boolean} filtered
 */
function renderLogs(attempts, filtered) {
  const body = $("logs-body");
  body.replaceChildren();
  $("logs-empty").hidden = true;
  if (!attempts.length) {
    showEmpty(
      filtered
        ? "No attempts match these filters."
        : "No webhook attempts yet. Send a test event from Settings, or wait for your first job.",
    );
    return;
  }
  for (const attempt of attempts) {
    // The row's disclosure button carries the state; clicking anywhere on the row works too.
    const toggleButton = el("button", {
      type: "button",
      class: "row-toggle",
      "aria-expanded": "false",
      "aria-controls": `detail-${attempt.id}`,
      "aria-label": `${when(attempt.attempted_at)}: show request and response`,
      text: when(attempt.attempted_at),
    });
    const row = el(
      "tr",
      { class: "attempt", "data-id": attempt.id },
      el("td", { "data-label": "Time" }, toggleButton),
      el("td", { "data-label": "Event", text: attempt.event_type }),
      el("td", { "data-label": "Job ID", class: "mono", text: attempt.job_id }),
      el("td", { "data-label": "Attempt", text: `#${attempt.attempt}` }),
      el("td", { "data-label": "Status" }, statusCell(attempt)),
      el("td", { "data-label": "Response time", text: `${attempt.response_time_ms} ms` }),
    );
    row.addEventListener("click", () => toggle(row, toggleButton, attempt));
    body.append(row);
  }
}

/**
 * @param {HTMLElement} row
 * @param {HTMLElement} button
 * @param {Attempt} attempt
 */
async function toggle(row, button, attempt) {
  const open = button.getAttribute("aria-expanded") === "true";
  if (row.nextElementSibling?.classList.contains("detail")) row.nextElementSibling.remove();
  button.setAttribute("aria-expanded", String(!open));
  row.classList.toggle("open", !open);
  if (open) return;
  const cell = el("td", { colspan: "6" }, el("p", { class: "muted", text: "Loading the request and response…" }));
  const detailRow = el("tr", { class: "detail", id: `detail-${attempt.id}` }, cell);
  row.after(detailRow);
  try {
    const detail =
      state.details.get(attempt.id) ?? (await api("GET", `/v1/webhook-logs/${encodeURIComponent(attempt.id)}`));
    state.details.set(attempt.id, detail);
    cell.replaceChildren(renderDetail(detail));
  } catch (error) {
    cell.replaceChildren(el("p", { class: "error", role: "alert", text: asApiError(error).message }));
  }
}

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

/** @param {AttemptDetail} d */
function renderDetail(d) {
  const redeliverStatus = el("span", { class: "status", role: "status" });
  const redeliver = /** @type {HTMLButtonElement} */ (
    el("button", { type: "button", class: "secondary", text: "Redeliver" })
  );
  redeliver.addEventListener("click", async () => {
    redeliver.disabled = true;
    redeliverStatus.textContent = "Queueing a new attempt…";
    try {
      await api("POST", `/v1/deliveries/${encodeURIComponent(d.delivery_id)}/redeliver`);
      redeliverStatus.textContent = "Redelivery queued. Refresh in a moment to see the new attempt.";
      setTimeout(() => loadLogs(), 1500);
    } catch (error) {
      redeliverStatus.textContent = asApiError(error).message;
      redeliverStatus.dataset.kind = "error";
    } finally {
      redeliver.disabled = false;
    }
  });
  const body = el("pre", {
    class: "code",
    tabindex: "0",
    "aria-label": "Response body",
    text: d.response.body ?? "(no body)",
  });
  return el(
    "div",
    { class: "detail-grid" },
    el(
      "dl",
      { class: "facts" },
      el("dt", { text: "Delivery" }),
      el("dd", { class: "mono", text: d.delivery_id }),
      el("dt", { text: "URL" }),
      el("dd", { class: "mono", text: d.url ?? "(none)" }),
      el("dt", { text: "Attempted" }),
      el("dd", { text: when(d.attempted_at) }),
      el("dt", { text: "Outcome" }),
      el("dd", { text: d.error ? `${d.outcome} (${d.error})` : d.outcome }),
      d.error_detail ? el("dt", { text: "Why" }) : null,
      d.error_detail ? el("dd", { text: d.error_detail }) : null,
    ),
    el("div", { class: "actions" }, redeliver, redeliverStatus),
    el("h4", { text: "Request headers" }),
    el("pre", {
      class: "code",
      tabindex: "0",
      "aria-label": "Request headers",
      text: headerText(d.request.headers, "(nothing was sent)"),
    }),
    el("h4", { text: "Request payload" }),
    el("pre", { class: "code", tabindex: "0", "aria-label": "Request payload", text: pretty(d.request.body) }),
    el("h4", { text: "Response headers" }),
    el("pre", {
      class: "code",
      tabindex: "0",
      "aria-label": "Response headers",
      text: headerText(d.response.headers, "(no response)"),
    }),
    el("h4", {}, "Response body", d.response.truncated ? el("span", { class: "badge warn", text: "truncated" }) : null),
    body,
  );
}

// ---- settings ----------------------------------------------------------------------

/**
 * The controls that act on the loaded settings stay disabled while they load: a URL
 * typed before the answer arrives would otherwise be overwritten by it, and then saved
 * as whatever the server had (or cleared).
 */
const SETTINGS_CONTROLS = ["webhook-url", "save-url", "reveal", "copy", "rotate"];

async function loadSettings() {
  for (const id of SETTINGS_CONTROLS) $control(id).disabled = true;
  $("view-settings").setAttribute("aria-busy", "true");
  try {
    state.settings = await api("GET", "/v1/webhook");
    renderUrl();
    renderSecret();
    for (const id of SETTINGS_CONTROLS) $control(id).disabled = false;
  } catch (thrown) {
    const error = asApiError(thrown);
    if (error.status !== 401) say("url-status", error.message, "error");
  } finally {
    $("view-settings").removeAttribute("aria-busy");
  }
}

/** The loaded settings (every caller renders after they are loaded). */
function settings() {
  if (!state.settings) throw new Error("settings are not loaded");
  return state.settings;
}

function renderUrl() {
  $input("webhook-url").value = settings().webhook_url ?? "";
  renderHealth();
}

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

/** The default endpoint's health: its lane, and how it answered lately (GET /v1/webhook). */
function renderHealth() {
  const h = settings().health;
  $("health").hidden = !h;
  if (!h) {
    $("health-lane").textContent = "No default URL.";
    $("health-lane").dataset.lane = "";
    return;
  }
  $("health-lane").dataset.lane = h.lane;
  $("health-lane").textContent =
    h.lane === "fast"
      ? `${h.endpoint} is answering well: its webhooks go out at once.`
      : `${h.endpoint} is in the slow lane since ${h.lane_since ? when(h.lane_since) : "now"}: ` +
        `${SLOW_REASONS[h.lane_reason ?? ""] ?? "it answers badly"}. ` +
        "Its webhooks keep the same retry schedule, apart from other customers' traffic, until it answers well again.";
  $("health-rate").textContent =
    h.success_rate_24h === null
      ? "No attempts yet"
      : `${Math.round(h.success_rate_24h * 1000) / 10}% of ${h.attempts_24h} (${h.timeouts_24h} timed out)`;
  $("health-failures").textContent = String(h.consecutive_failures) + (h.last_error ? ` (last: ${h.last_error})` : "");
  $("health-last-success").textContent = h.last_success_at ? when(h.last_success_at) : "Never";
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
}

/** Only the secret's card: revealing or rotating never touches a URL being typed. */
function renderSecret() {
  const s = settings();
  $("secret").textContent = state.secretShown ? s.signing_secret : `whsec_${"•".repeat(16)}`;
  $("reveal").textContent = state.secretShown ? "Hide" : "Reveal";
  $("reveal").setAttribute("aria-pressed", String(state.secretShown));
  $("rotated-at").textContent = s.secret_rotated_at ? `Last rotated ${when(s.secret_rotated_at)}.` : "Never rotated.";
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
    if (error.status !== 401) say("url-status", `Not saved: ${error.message}`, "error");
  }
});

$("reveal").addEventListener("click", () => {
  state.secretShown = !state.secretShown;
  renderSecret();
});

$("copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(settings().signing_secret);
    say("secret-status", "Copied to the clipboard.", "ok");
  } catch {
    state.secretShown = true;
    renderSecret();
    getSelection()?.selectAllChildren($("secret"));
    say("secret-status", "Copying is blocked here: the secret is selected, press Ctrl+C / ⌘C.", "error");
  }
});

$("rotate").addEventListener("click", () => $dialog("rotate-dialog").showModal());
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
    if (error.status !== 401) say("secret-status", error.message, "error");
  }
});

$("send-test").addEventListener("click", async () => {
  const button = $button("send-test");
  button.disabled = true;
  const result = $("test-result");
  say("test-result", "Sending a test event…");
  try {
    const queued = await api("POST", "/v1/webhook/test");
    const attempt = await firstAttempt(queued.delivery_id);
    const link = el("a", {
      href: `?view=logs&job_id=${encodeURIComponent(queued.job_id)}`,
      text: "See it in the logs",
    });
    link.addEventListener("click", (event) => {
      event.preventDefault();
      navigate({ view: "logs", job_id: queued.job_id });
    });
    if (!attempt) {
      result.replaceChildren(`Queued ${queued.job_id}; no attempt yet. `, link);
    } else if (attempt.outcome === "succeeded") {
      result.dataset.kind = "ok";
      result.replaceChildren(`Delivered: HTTP ${attempt.status_code} in ${attempt.response_time_ms} ms. `, link);
    } else {
      result.dataset.kind = "error";
      result.replaceChildren(
        `Failed: ${attempt.status_code ?? ""} ${attempt.error} after ${attempt.response_time_ms} ms. `,
        link,
      );
    }
  } catch (thrown) {
    const error = asApiError(thrown);
    if (error.status !== 401) say("test-result", error.message, "error");
  } finally {
    button.disabled = false;
  }
});

/**
 * Waits for a delivery's first attempt to be logged (a second or so).
 * @param {string} deliveryId
 * @param {number} [timeoutMs]
 * @returns {Promise<Attempt | null>}
 */
async function firstAttempt(deliveryId, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    /** @type {AttemptPage} */
    const page = await api("GET", `/v1/webhook-logs?delivery_id=${encodeURIComponent(deliveryId)}&limit=1`);
    if (page.data.length) return page.data[0];
    await new Promise((r) => setTimeout(r, 400));
  }
  return null;
}

// ---- start -------------------------------------------------------------------------

if (state.key) {
  showSignedIn();
  route();
} else {
  signOut();
}
