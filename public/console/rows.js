// @ts-check
// The list views (Deliveries, Webhook logs): a page of rows loaded from the URL's
// filters, each row expanding into a detail row below it. Which rows are open is kept
// by id, so a refresh of the list shows them open again.

import { api, asApiError, isQuiet, worthRetrying } from "./api.js";
import { $, $input, el, say } from "./dom.js";
import { params } from "./nav.js";

/**
 * @typedef {{
 *   id: string,
 *   rowClass: string,
 *   time: HTMLElement,
 *   label: string,
 *   cells: HTMLElement[],
 *   detail: () => Promise<Node>,
 * }} RowSpec
 */

/**
 * Appends one expandable row per spec to `body`, opening those whose id is in `open`
 * (the caller empties `open` when the list shows other rows: filters, another page).
 * The first cell holds the disclosure button (the time); clicking anywhere on the row
 * works too.
 * @param {HTMLElement} body
 * @param {RowSpec[]} specs
 * @param {Set<string>} open
 * @param {number} columns
 */
export function renderRows(body, specs, open, columns) {
  body.replaceChildren();
  for (const spec of specs) {
    // The button's name starts with the time it shows (WCAG's "label in name"), then says what it opens.
    const toggleButton = el(
      "button",
      { type: "button", class: "row-toggle", "aria-expanded": "false", "aria-controls": `detail-${spec.id}` },
      spec.time,
      el("span", { class: "visually-hidden", text: `, ${spec.label}: details` }),
    );
    const row = el("tr", { class: spec.rowClass, "data-id": spec.id }, ...spec.cells);
    row.firstElementChild?.replaceChildren(toggleButton);
    row.addEventListener("click", (event) => {
      // Buttons and links inside the row do their own thing.
      if (event.target instanceof Element && event.target.closest("a, button:not(.row-toggle)")) return;
      toggle(row, toggleButton, spec, open, columns);
    });
    body.append(row);
    if (open.has(spec.id)) toggle(row, toggleButton, spec, open, columns);
  }
}

/**
 * @param {HTMLElement} row
 * @param {HTMLElement} toggleButton
 * @param {RowSpec} spec
 * @param {Set<string>} open
 * @param {number} columns
 */
async function toggle(row, toggleButton, spec, open, columns) {
  const isOpen = row.nextElementSibling?.classList.contains("detail") ?? false;
  if (isOpen) row.nextElementSibling?.remove();
  toggleButton.setAttribute("aria-expanded", String(!isOpen));
  row.classList.toggle("open", !isOpen);
  if (isOpen) {
    open.delete(spec.id);
    return;
  }
  open.add(spec.id);
  const cell = el("td", { colspan: String(columns) }, el("p", { class: "muted", text: "Loading the details…" }));
  row.after(el("tr", { class: "detail", id: `detail-${spec.id}` }, cell));
  try {
    cell.replaceChildren(await spec.detail());
  } catch (error) {
    cell.replaceChildren(el("p", { class: "error", role: "alert", text: asApiError(error).message }));
  }
}

/**
 * The empty state of a list: a sentence, and a "Try again" button after an error.
 * @param {HTMLElement} node
 * @param {string} text
 * @param {(() => void) | null} retry
 */
export function showEmpty(node, text, retry = null) {
  node.hidden = false;
  node.dataset.kind = retry ? "error" : "";
  node.replaceChildren(el("p", { text }));
  if (retry) {
    const again = el("button", { type: "button", class: "secondary", text: "Try again" });
    again.addEventListener("click", retry);
    node.append(again);
  }
}

/**
 * @template T
 * @typedef {{
 *   ids: { table: string, body: string, empty: string, status: string },
 *   path: string,
 *   filters: Record<string, string>,
 *   toInput?: (name: string, value: string) => string,
 *   pager: import("./nav.js").Pager,
 *   noun: [string, string],
 *   emptyText: { filtered: string, none: string },
 *   rows: (items: T[]) => RowSpec[],
 *   columns: number,
 * }} ListSpec
 */

/**
 * One list view: loads the page the URL names into its table. Only the latest load may
 * render: an older answer that arrives late (a Refresh, then Next page) must not replace
 * the newer page.
 * @template T
 */
export class ListView {
  /** @param {ListSpec<T>} spec */
  constructor(spec) {
    this.spec = spec;
    this.loads = 0;
    /** Rows the reader opened. */
    this.open = new Set();
    /** The filters and page of the list shown (the URL's query, but the view). */
    this.shown = "";
  }

  async load() {
    const { ids, path, filters, toInput, pager, noun, emptyText, rows, columns } = this.spec;
    const load = ++this.loads;
    const p = params();
    // Open rows stay open when the same list is loaded again (Refresh), not on another list.
    const list = new URLSearchParams(p);
    list.delete("view");
    if (list.toString() !== this.shown) {
      this.open.clear();
      // No Next until this list answers: the last list's cursor is not this one's.
      pager.show(null);
    }
    this.shown = list.toString();
    const query = new URLSearchParams({ limit: "20" });
    for (const [name, id] of Object.entries(filters)) {
      const value = p.get(name) ?? "";
      $input(id).value = toInput ? toInput(name, value) : value;
      if (value) query.set(name, value);
    }
    const cursor = p.get("cursor");
    if (cursor) query.set("cursor", cursor);
    const filtered = Object.keys(filters).some((name) => p.get(name));

    const table = $(ids.table);
    table.setAttribute("aria-busy", "true");
    say(ids.status, "Loading…");
    try {
      /** @type {import("./api.js").Page<T>} */
      const page = await api("GET", `${path}?${query}`);
      if (load !== this.loads) return;
      pager.show(page.next_cursor);
      $(ids.empty).hidden = true;
      const n = page.data.length;
      if (n === 0) {
        $(ids.body).replaceChildren();
        // A filtered page reads a bounded stretch of the log: older ones may still match.
        const text = !filtered
          ? emptyText.none
          : page.next_cursor
            ? `${emptyText.filtered.replace(/\.$/, " in this stretch of the log")}; older ones may: see the next page.`
            : emptyText.filtered;
        showEmpty($(ids.empty), text);
      } else {
        renderRows($(ids.body), rows(page.data), this.open, columns);
      }
      say(ids.status, n ? `${n} ${noun[n === 1 ? 0 : 1]}${cursor ? " (older page)" : ""}, newest first.` : "");
    } catch (thrown) {
      const error = asApiError(thrown);
      if (isQuiet(error) || load !== this.loads) return;
      $(ids.body).replaceChildren();
      showEmpty($(ids.empty), error.message, worthRetrying(error) ? () => this.load() : null);
      $(ids.empty).dataset.kind = "error";
      say(ids.status, "");
    } finally {
      if (load === this.loads) table.removeAttribute("aria-busy");
    }
  }

  /** Forgets what it showed (sign-out). */
  clear() {
    this.open.clear();
    this.shown = "";
    $(this.spec.ids.body).replaceChildren();
  }
}
