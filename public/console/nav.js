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
 * @param {{ replace?: boolean }} [options]
 */
export function navigate(next, { replace = false } = {}) {
  const query = new URLSearchParams(/** @type {Array<[string, string]>} */ (Object.entries(next).filter(([, v]) => v)));
  const url = `${location.pathname}${query.size ? `?${query}` : ""}`;
  history[replace ? "replaceState" : "pushState"](null, "", url);
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
 * Previous / Next over keyset pages. The API's cursors only go forward, so the cursors
 * of the pages before this one are kept here (and a page opened from a link, with no
 * history, goes back to the first page).
 */
export class Pager {
  /**
   * @param {{ previous: string, next: string, top: string }} ids the buttons, and the element to scroll to
   */
  constructor(ids) {
    this.ids = ids;
    /** @type {string[]} */
    this.before = [];
    /** @type {string | null} */
    this.nextCursor = null;
    $button(ids.next).addEventListener("click", () => {
      if (!this.nextCursor) return;
      this.before.push(params().get("cursor") ?? "");
      this.go(this.nextCursor);
    });
    $button(ids.previous).addEventListener("click", () => this.go(this.before.pop() ?? ""));
  }

  /** @param {string} cursor */
  go(cursor) {
    navigate({ ...Object.fromEntries(params()), cursor });
    // A new page starts at its top, not where the last one was scrolled to.
    document.getElementById(this.ids.top)?.scrollIntoView({ block: "start" });
  }

  /** Forgets the pages before: the filters changed. */
  reset() {
    this.before = [];
  }

  /** @param {string | null} nextCursor */
  show(nextCursor) {
    this.nextCursor = nextCursor;
    $button(this.ids.next).disabled = !nextCursor;
    $button(this.ids.previous).disabled = !params().get("cursor");
  }
}
