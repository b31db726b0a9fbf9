// @ts-check
// Navigation: the view, its filters and its page live in the URL, so a reload or a
// shared link shows the same thing.

import { $button, el } from "./dom.js";

/** Renders whatever the URL names now (set by console.js). @type {() => void} */
let route = () => {};
/** @param {() => void} handler */
export function onNavigate(handler) {
  route = handler;
}

export function params() {
  return new URLSearchParams(location.search);
}

/**
 * @param {Record<string, string | null | undefined>} next the URL's query (empty values are left out)
 * @param {{ replace?: boolean, state?: unknown }} [options] `state`: kept with this history entry
 */
export function navigate(next, { replace = false, state = null } = {}) {
  const query = new URLSearchParams(/** @type {Array<[string, string]>} */ (Object.entries(next).filter(([, v]) => v)));
  const url = `${location.pathname}${query.size ? `?${query}` : ""}`;
  history[replace ? "replaceState" : "pushState"](state, "", url);
  route();
}

/**
 * A link to a view of the console: a real link (it opens in a new tab too), followed
 * here without a page load.
 * @param {string} text
 * @param {Record<string, string>} query
 */
export function viewLink(text, query) {
  const link = el("a", { href: `?${new URLSearchParams(query)}`, text });
  link.addEventListener("click", (event) => {
    event.preventDefault();
    navigate(query);
  });
  return link;
}

/**
 * Previous / Next over keyset pages. The API's cursors only go forward, so each page's
 * history entry keeps the cursors of the pages before it: after Back or Forward,
 * Previous still goes to the page before the one shown (a page opened from a link, with
 * no history, goes back to the first page).
 */
export class Pager {
  /**
   * @param {{ previous: string, next: string, top: string }} ids the buttons, and the element to scroll to
   */
  constructor(ids) {
    this.ids = ids;
    /** @type {string | null} */
    this.nextCursor = null;
    $button(ids.next).addEventListener("click", () => {
      if (!this.nextCursor) return;
      this.go(this.nextCursor, [...pagesBefore(), params().get("cursor") ?? ""]);
    });
    $button(ids.previous).addEventListener("click", () => {
      const before = pagesBefore();
      this.go(before.at(-1) ?? "", before.slice(0, -1));
    });
  }

  /**
   * @param {string} cursor
   * @param {string[]} before the cursors of the pages before that one
   */
  go(cursor, before) {
    // Until the page answers, its Next is unknown: a click now would page the old list.
    this.show(null);
    navigate({ ...Object.fromEntries(params()), cursor }, { state: { before } });
    // A new page starts at its top, not where the last one was scrolled to, and so does
    // the focus (the button clicked may be disabled on the new page).
    const top = document.getElementById(this.ids.top);
    top?.scrollIntoView({ block: "start" });
    top?.focus({ preventScroll: true });
  }

  /** @param {string | null} nextCursor */
  show(nextCursor) {
    this.nextCursor = nextCursor;
    $button(this.ids.next).disabled = !nextCursor;
    $button(this.ids.previous).disabled = !params().get("cursor");
  }
}

/** The cursors of the pages before this one, from its history entry. */
function pagesBefore() {
  const state = /** @type {{ before?: unknown } | null} */ (history.state);
  return Array.isArray(state?.before) ? state.before.filter((c) => typeof c === "string") : [];
}
