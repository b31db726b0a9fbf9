// @ts-check
// The Zupertry webhooks console: a thin client of the public org API (/v1/...), with
// no private endpoint and no build step (ES modules, typechecked by `npm run typecheck`).
// The org API key lives in this tab's sessionStorage and is only ever sent as the
// Authorization header. This module signs in and out and shows the view the URL names.

import { api, asApiError, forgetKey, rememberKey, session, whenUnauthorized } from "./api.js";
import { clearDeliveries, loadDeliveries } from "./deliveries.js";
import { $, $input, say } from "./dom.js";
import { onOwnKeyRevoked } from "./keys.js";
import { clearLogs, loadLogs } from "./logs.js";
import { navigate, onNavigate, params } from "./nav.js";
import { clearSettings, loadSettings, useSettings } from "./settings.js";

const VIEWS = {
  deliveries: loadDeliveries,
  logs: loadLogs,
  settings: loadSettings,
};
/** @typedef {keyof typeof VIEWS} View */

function showSignedIn() {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  $("session-key").textContent = `Signed in with ${session.key?.slice(0, 7)}…`;
}

/** @param {string} [message] */
function signOut(message = "") {
  forgetKey();
  clearDeliveries();
  clearLogs();
  clearSettings();
  $("app").hidden = true;
  $("session").hidden = true;
  $("sign-in").hidden = false;
  $input("api-key").value = "";
  say("sign-in-error", message, message ? "error" : "");
  $input("api-key").focus();
}
whenUnauthorized(signOut);
onOwnKeyRevoked(signOut);

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $input("api-key").value.trim();
  if (!/^zk_[A-Za-z0-9_-]{20,}$/.test(key)) {
    say("sign-in-error", "An org API key starts with zk_ and is about 46 characters long.", "error");
    return;
  }
  say("sign-in-error", "Checking the key…");
  try {
    useSettings(await api("GET", "/v1/webhook", undefined, key));
    rememberKey(key);
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

/** The view the URL names (Deliveries by default). @returns {View} */
function currentView() {
  const view = params().get("view");
  return view === "logs" || view === "settings" ? view : "deliveries";
}

function route() {
  if (!session.key) return;
  const view = currentView();
  for (const name of Object.keys(VIEWS)) $(`view-${name}`).hidden = name !== view;
  for (const tab of document.querySelectorAll(".tabs a")) {
    if (/** @type {HTMLElement} */ (tab).dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  VIEWS[view]();
}
onNavigate(route);

for (const tab of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".tabs a"))) {
  tab.addEventListener("click", (event) => {
    event.preventDefault();
    // Each view keeps its own filters in the URL only while it is shown.
    navigate({ view: tab.dataset.view });
  });
}
window.addEventListener("popstate", route);

if (session.key) {
  showSignedIn();
  route();
} else {
  signOut();
}
