// @ts-check
// Small DOM helpers shared by the views. Everything that comes from the server is put
// on the page with textContent, never as HTML: a receiver that answers `<script>` shows
// as text.

/**
 * An element of index.html, by id. The page is fixed (and tested), so a missing one is a
 * bug: it throws. `$input`, `$button`, `$select` and `$dialog` say which kind it is.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html has no #${id}`);
  return node;
}
/** @param {string} id */
export const $input = (id) => /** @type {HTMLInputElement} */ ($(id));
/** @param {string} id */
export const $select = (id) => /** @type {HTMLSelectElement} */ ($(id));
/** @param {string} id */
export const $button = (id) => /** @type {HTMLButtonElement} */ ($(id));
/** A form control (an input or a button): what can be disabled. @param {string} id */
export const $control = (id) => /** @type {HTMLInputElement | HTMLButtonElement} */ ($(id));
/** @param {string} id */
export const $dialog = (id) => /** @type {HTMLDialogElement} */ ($(id));

/**
 * Opens a confirmation dialog with no answer yet: Firefox and Safari keep the last
 * "confirm" when Esc closes it.
 * @param {string} id
 */
export function askToConfirm(id) {
  const dialog = $dialog(id);
  dialog.returnValue = "";
  dialog.showModal();
}

/**
 * A new element: `attrs.class` and `attrs.text` set className and textContent, the rest
 * are attributes (true: present, false/null/undefined: left out).
 * @param {string} tag
 * @param {Record<string, string | boolean | null | undefined>} [attrs]
 * @param {Array<Node | string | null | undefined | false>} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = String(value);
    else if (name === "text") node.textContent = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

/** @param {string} tag @param {Record<string, string | boolean | null | undefined>} [attrs] */
export const button = (tag, attrs = {}) =>
  /** @type {HTMLButtonElement} */ (el("button", { type: "button", ...attrs, text: tag }));

/**
 * Puts a status line's text, and its kind (the color), in place.
 * @param {string | HTMLElement} target an element or its id
 * @param {string} text
 * @param {"" | "ok" | "error"} [kind]
 */
export function say(target, text, kind = "") {
  const node = typeof target === "string" ? $(target) : target;
  node.textContent = text;
  node.dataset.kind = kind;
}

/** Says `text` to screen readers (the page's polite live region). @param {string} text */
export function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  // A change a moment later is announced even when the text is the same as before.
  setTimeout(() => (region.textContent = text), 50);
}

// ---- time --------------------------------------------------------------------------

const exactFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
/** The exact time, in the reader's time zone. @param {string} iso */
export const exactTime = (iso) => exactFormat.format(new Date(iso));

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
/**
 * "12 seconds ago", "in 5 minutes", "yesterday": how far `iso` is from now.
 * @param {string} iso
 * @param {number} [now]
 */
export function relativeTime(iso, now = Date.now()) {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 5) return "just now";
  if (abs < 60) return relativeFormat.format(seconds, "second");
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), "minute");
  if (abs < 86_400) return relativeFormat.format(Math.round(seconds / 3600), "hour");
  if (abs < 30 * 86_400) return relativeFormat.format(Math.round(seconds / 86_400), "day");
  return exactTime(iso);
}

/**
 * What a `<time>` reads now: a due time past is late (the stall sweep takes it within
 * minutes), not "7 minutes ago".
 * @param {HTMLTimeElement} node
 */
const timeText = (node) =>
  node.dataset.due !== undefined && Date.parse(node.dateTime) <= Date.now()
    ? "overdue: retrying shortly"
    : relativeTime(node.dateTime);

/**
 * A `<time>` that reads as a relative time, with the exact one on hover and for
 * assistive technology.
 * @param {string} iso
 * @param {boolean} [due] a next retry's
 */
export function timeEl(iso, due = false) {
  const node = /** @type {HTMLTimeElement} */ (el("time", { datetime: iso, title: exactTime(iso), "data-due": due }));
  node.textContent = timeText(node);
  return node;
}

// One timer for the page: a tab left open must not say "in 1 minute" 20 minutes later.
setInterval(() => {
  for (const node of document.querySelectorAll("time")) {
    const text = timeText(node);
    if (node.textContent !== text) node.textContent = text;
  }
}, 30_000);

/** Indented JSON when the text is JSON; the text itself otherwise. @param {string} text */
export function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// ---- copying -----------------------------------------------------------------------

/**
 * Copies `text`; where the clipboard is blocked, selects `fallback` for Ctrl+C instead.
 * @param {string} text
 * @param {HTMLElement | null} [fallback]
 * @returns {Promise<boolean>} whether it was copied
 */
export async function copyText(text, fallback = null) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallback) getSelection()?.selectAllChildren(fallback);
    return false;
  }
}

/**
 * A "Copy" button for what `text()` gives; it says "Copied" for a moment.
 * @param {string} label the accessible name, e.g. "Copy delivery ID"
 * @param {() => string} text
 * @param {{ visible?: string, fallback?: () => HTMLElement | null }} [options]
 */
export function copyButton(label, text, { visible = "Copy", fallback } = {}) {
  const node = button(visible, { class: "secondary small copy", "aria-label": label });
  node.addEventListener("click", async (event) => {
    event.stopPropagation();
    const copied = await copyText(text(), fallback?.());
    node.textContent = copied ? "Copied" : "Press Ctrl+C";
    announce(copied ? `${label}: copied to the clipboard.` : "Copying is blocked here: the text is selected.");
    setTimeout(() => (node.textContent = visible), 1500);
  });
  return node;
}

/** @param {string} text */
const shellQuote = (text) => `'${text.replaceAll("'", `'\\''`)}'`;

/**
 * The attempt's request as a curl command: the same URL, headers and bytes (signatures
 * included, so a receiver that checks them accepts it while its timestamp is fresh).
 * @param {string} url
 * @param {Record<string, string> | null} headers
 * @param {string} body
 */
export function curlCommand(url, headers, body) {
  const lines = [`curl -X POST ${shellQuote(url)}`];
  for (const [name, value] of Object.entries(headers ?? {})) lines.push(`  -H ${shellQuote(`${name}: ${value}`)}`);
  lines.push(`  --data-raw ${shellQuote(body)}`);
  return lines.join(" \\\n");
}

/**
 * An id with a copy button beside it.
 * @param {string} id
 * @param {string} what e.g. "delivery ID"
 */
export function idWithCopy(id, what) {
  return el(
    "span",
    { class: "id-copy" },
    el("code", { class: "mono", text: id }),
    copyButton(`Copy ${what}`, () => id),
  );
}

/**
 * The delivery and job ids of a detail's facts (`<dt>`/`<dd>` pairs), each with a copy button.
 * @param {string} deliveryId
 * @param {string} jobId
 */
export function idFacts(deliveryId, jobId) {
  return [
    el("dt", { text: "Delivery ID" }),
    el("dd", {}, idWithCopy(deliveryId, "delivery ID")),
    el("dt", { text: "Job ID" }),
    el("dd", {}, idWithCopy(jobId, "job ID")),
  ];
}
