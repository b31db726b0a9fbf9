// @ts-check
// Settings → API keys: the org's keys (name, created, last used, revoked) and Revoke.
// New keys are an operator's to issue (the operator token): an org key cannot mint one.

import { api, asApiError, isQuiet, thisSession } from "./api.js";
import { $, $dialog, askToConfirm, button, el, say, timeEl } from "./dom.js";

/** @typedef {import("./api.js").ApiKey} ApiKey */

/** The key that Revoke… asked about, until the dialog closes. @type {ApiKey | null} */
let revoking = null;
/** Signs out (set by console.js): revoking the key in use ends the session. @type {(message: string) => void} */
let endSession = () => {};
/** @param {(message: string) => void} handler */
export function onOwnKeyRevoked(handler) {
  endSession = handler;
}

/** Pages of keys read at most: revoked keys stay listed, so an old org has many. */
const MAX_KEY_PAGES = 10;

/** Counts loads: the answer of one that a later load overtook is dropped. */
let loads = 0;

export async function loadKeys() {
  const body = $("keys-body");
  const scope = thisSession();
  const load = ++loads;
  try {
    /** @type {ApiKey[]} */
    const keys = [];
    /** @type {string | null} */
    let cursor = null;
    for (let pages = 0; pages < MAX_KEY_PAGES && (pages === 0 || cursor); pages++) {
      /** @type {import("./api.js").Page<ApiKey>} */
      const page = await scope.api(
        "GET",
        `/v1/api-keys?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      );
      keys.push(...page.data);
      cursor = page.next_cursor;
    }
    if (load !== loads) return;
    body.replaceChildren(...keys.map(keyRow));
    // A cut list says so; a revoke's confirmation stays, an old error goes.
    if (cursor) say("keys-status", `The ${keys.length} newest keys.`);
    else if ($("keys-status").dataset.kind === "error") say("keys-status", "");
  } catch (error) {
    if (load === loads && !isQuiet(error)) say("keys-status", asApiError(error).message, "error");
  }
}

/** @param {ApiKey} key */
function keyRow(key) {
  const revoke = key.revoked_at
    ? null
    : button("Revoke…", { class: "danger small", "aria-label": `Revoke ${key.name ?? key.id}` });
  revoke?.addEventListener("click", () => {
    revoking = key;
    $("revoke-name").textContent = key.name ?? key.id;
    $("revoke-self").hidden = !key.in_use;
    askToConfirm("revoke-dialog");
  });
  return el(
    "tr",
    { "data-id": key.id },
    el(
      "td",
      { "data-label": "Name" },
      key.name ?? el("span", { class: "muted", text: "(no name)" }),
      key.in_use ? el("span", { class: "badge ok", text: "this session" }) : null,
    ),
    el("td", { "data-label": "Key ID", class: "mono", text: key.id }),
    el("td", { "data-label": "Created" }, timeEl(key.created_at)),
    el("td", { "data-label": "Last used" }, key.last_used_at ? timeEl(key.last_used_at) : "Never"),
    el(
      "td",
      { "data-label": "Status" },
      key.revoked_at ? el("span", {}, "Revoked ", timeEl(key.revoked_at)) : "Active",
    ),
    el("td", { "data-label": "Actions" }, revoke),
  );
}

$dialog("revoke-dialog").addEventListener("close", async () => {
  const key = revoking;
  revoking = null;
  if (!key || $dialog("revoke-dialog").returnValue !== "confirm") return;
  say("keys-status", `Revoking ${key.name ?? key.id}…`);
  try {
    await api("DELETE", `/v1/api-keys/${encodeURIComponent(key.id)}`);
    if (key.in_use) {
      endSession("You revoked the key this tab was signed in with. Sign in with another key.");
      return;
    }
    say("keys-status", `Revoked ${key.name ?? key.id}: requests with it fail from now on.`, "ok");
    $("keys-status").focus(); // its Revoke… button, where the dialog left the focus, is gone
    loadKeys();
  } catch (error) {
    if (!isQuiet(error)) say("keys-status", asApiError(error).message, "error");
  }
});
