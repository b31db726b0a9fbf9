import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { receiver } from "../support/receiver-client";
import { api, dispatcherUrl, newOrg, producerToken, seedEvent, until } from "./support/client";
import { record } from "./support/summary";

/**
 * The console in a real browser (Debian's Chromium, driven by playwright-core) against
 * the real `wrangler dev`, with real deliveries made during the test, used the way a
 * customer debugging an endpoint would.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = process.env.UPDATE_SCREENSHOTS
  ? new URL("../../docs/screenshots/", import.meta.url).pathname
  : new URL("./.tmp/screenshots/", import.meta.url).pathname;

let browser: Browser;
let context: BrowserContext;
let page: Page;
let org: Awaited<ReturnType<typeof newOrg>>;
const hook = receiver(`console-${Date.now()}`);

async function settings(): Promise<{ webhook_url: string | null; signing_secret: string }> {
  return (await (await api("GET", "/v1/webhook", org.key)).json()) as {
    webhook_url: string | null;
    signing_secret: string;
  };
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`No Chromium at ${CHROMIUM}: install Debian's chromium (.ci/run does) or set CHROMIUM_PATH`);
  org = await newOrg();
  // History for the logs: 3 deliveries to an endpoint in maintenance (3 attempts each),
  // and 21 sent before the org had a URL (no_webhook_url): 30 attempts, two pages of 20.
  const failing = receiver(`console-failing-${Date.now()}`);
  await failing.script({ replies: [{ status: 503, body: "maintenance" }] });
  const events = Array.from({ length: 24 }, (_, i) => ({
    ...seedEvent(org.orgId, `job_history_${i}`),
    ...(i < 3 ? { webhook_url: failing.url } : {}),
  }));
  expect((await api("POST", "/v1/events/batch", producerToken(), { events })).status).toBe(202);
  await until(async () => {
    const res = await api("GET", "/v1/deliveries?limit=100", org.key);
    const { data } = (await res.json()) as { data: Array<{ status: string }> };
    return data.length === 24 && data.every((d) => d.status === "failed") ? true : undefined;
  }, 30_000);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: dispatcherUrl() });
  page = await context.newPage();
}, 120_000);

afterAll(async () => {
  await browser?.close();
});

const rows = () => page.locator("tr.attempt");
/** Refreshes the log and reads its newest row, as a user waiting for an attempt would. */
async function refreshedFirstRow() {
  await page.getByRole("button", { name: "Refresh" }).click();
  return rows().first().textContent();
}

describe("the console", () => {
  it("signs in with an org API key kept only in the tab's session storage", async () => {
    await page.goto(`${dispatcherUrl()}/console`, { waitUntil: "domcontentloaded" });
    await page.getByLabel("Org API key").fill(`zk_${"x".repeat(43)}`);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.locator("#sign-in-error").textContent()).toContain("not accepted");

    await page.getByLabel("Org API key").fill(org.key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => rows().count()).toBe(20);
    expect(await page.evaluate(() => sessionStorage.getItem("zupertry.orgKey"))).toBe(org.key);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(await context.cookies()).toEqual([]);
  });

  it("Settings: shows the server's reason for a refused URL and saves a good one", async () => {
    // A slow answer to the settings read: the URL field must not take typing that the
    // answer would then overwrite (and Save would then send the stale value).
    let release!: () => void;
    const answered = new Promise<void>((resolve) => (release = resolve));
    await page.route("**/v1/webhook", async (route) => {
      if (route.request().method() === "GET") await answered;
      await route.continue();
    });
    await page.getByRole("link", { name: /Settings/ }).click();
    await expect.poll(() => page.getByLabel("Default webhook URL").isDisabled()).toBe(true);
    expect(await page.getByRole("button", { name: "Save URL" }).isDisabled()).toBe(true);
    release();
    await expect.poll(() => page.getByLabel("Default webhook URL").isEnabled()).toBe(true);
    await page.unroute("**/v1/webhook");

    await page.getByLabel("Default webhook URL").fill("https://10.0.0.1/hook");
    await page.getByRole("button", { name: "Save URL" }).click();
    await expect.poll(() => page.locator("#url-status").textContent()).toContain("private");
    expect((await settings()).webhook_url).toBeNull();

    await page.getByLabel("Default webhook URL").fill(hook.url);
    await page.getByRole("button", { name: "Save URL" }).click();
    await expect.poll(() => page.locator("#url-status").textContent()).toContain("Saved");
    expect((await settings()).webhook_url).toBe(hook.url);
  });

  it("reveals and copies the signing secret", async () => {
    const { signing_secret } = await settings();
    expect(await page.locator("#secret").textContent()).not.toContain(signing_secret);
    await page.getByRole("button", { name: "Reveal" }).click();
    expect(await page.locator("#secret").textContent()).toBe(signing_secret);
    await page.getByRole("button", { name: "Copy" }).click();
    await expect.poll(() => page.locator("#secret-status").textContent()).toContain("Copied");
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(signing_secret);
  });

  it("sends a test event and shows how it went", async () => {
    await page.getByRole("button", { name: "Send test event" }).click();
    await expect
      .poll(() => page.locator("#test-result").textContent(), { timeout: 15_000 })
      .toMatch(/Delivered: HTTP 200 in \d+ ms/);
    expect((await hook.requests()).length).toBe(1);
  });

  it("shows the default endpoint's health: its lane and how it answered", async () => {
    await page.reload({ waitUntil: "domcontentloaded" });
    type Health = { attempts_24h: number; success_rate_24h: number; timeouts_24h: number; endpoint: string };
    const real = ((await (await api("GET", "/v1/webhook", org.key)).json()) as { health: Health }).health;
    const percent = Math.round(real.success_rate_24h * 1000) / 10;
    const rate = `${percent}% of ${real.attempts_24h} (${real.timeouts_24h} timed out)`;
    await expect.poll(() => page.locator("#health-rate").textContent()).toBe(rate);
    expect(await page.locator("#health-lane").textContent()).toContain(real.endpoint);

    // Both lanes, from an answer held to a known state (the lanes themselves are proven
    // in test/e2e/isolation.test.ts).
    const hold = (health: Record<string, unknown>) =>
      page.route("**/v1/webhook", async (route) => {
        const answer = await route.fetch();
        const body = (await answer.json()) as { health: Record<string, unknown> };
        await route.fulfill({ response: answer, json: { ...body, health: { ...body.health, ...health } } });
      });
    await hold({ lane: "fast", lane_reason: null, lane_since: null, recent: ["ok", "ok"] });
    await page.reload({ waitUntil: "domcontentloaded" });
    await expect.poll(() => page.locator("#health-lane").textContent()).toContain("is answering well");
    expect(await page.locator("#health-recent .dot.ok").count()).toBe(2);
    await page.unroute("**/v1/webhook");

    await hold({
      lane: "slow",
      lane_reason: "timeout",
      lane_since: new Date().toISOString(),
      recent: ["ok", "timeout"],
      consecutive_failures: 1,
      last_error: "timeout",
    });
    await page.reload({ waitUntil: "domcontentloaded" });
    await expect.poll(() => page.locator("#health-lane").textContent()).toContain("is in the slow lane since");
    expect(await page.locator("#health-lane").textContent()).toContain("did not answer within the timeout");
    expect(await page.locator("#health-failures").textContent()).toBe("1 (last: timeout)");
    expect(await page.locator("#health-recent").textContent()).toContain("1 OK, 1 timeout");
    await page.unroute("**/v1/webhook");
    await page.reload({ waitUntil: "domcontentloaded" });
    await expect.poll(() => page.getByLabel("Default webhook URL").isEnabled()).toBe(true);
  });

  it("rotates the secret only after a confirmation that says the old one stays valid 24 h", async () => {
    const before = (await settings()).signing_secret;
    await page.getByRole("button", { name: "Rotate secret…" }).click();
    const dialog = page.getByRole("dialog");
    expect(await dialog.textContent()).toContain("24 hours");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    expect((await settings()).signing_secret).toBe(before);

    await page.getByRole("button", { name: "Rotate secret…" }).click();
    await dialog.getByRole("button", { name: "Rotate now" }).click();
    await expect.poll(() => page.locator("#secret-status").textContent()).toContain("Rotated");
    const after = (await settings()).signing_secret;
    expect(after).not.toBe(before);
    expect(await page.locator("#secret").textContent()).toBe(after);
  });

  it("Logs: the test event's row is first, and Enter expands it with the payload and the response", async () => {
    await page.getByRole("link", { name: /Logs/ }).click();
    await expect.poll(() => rows().first().textContent()).toContain("job_test_");
    const first = rows().first();
    expect(await first.textContent()).toMatch(/job\.completed.*#1.*200.*\d+ ms/s);
    const toggle = first.getByRole("button");
    await toggle.focus();
    await page.keyboard.press("Enter");
    expect(await toggle.getAttribute("aria-expanded")).toBe("true");
    const detail = page.locator("tr.detail");
    await expect
      .poll(() => detail.getByLabel("Request payload").textContent())
      .toMatch(/\{\n {2}"type": "job\.completed",\n {2}"data": \{\n {4}"job_id": "job_test_/);
    expect(await detail.getByLabel("Request headers").textContent()).toContain("X-Zupertry-Signature:");
    expect(await detail.getByLabel("Response body").textContent()).toBe('{"received":true}');
    await page.keyboard.press("Enter");
    expect(await toggle.getAttribute("aria-expanded")).toBe("false");
  });

  it("sends back the newest bookmark it got, so a refresh never shows an older log", async () => {
    const sent = page.waitForRequest((req) => new URL(req.url()).pathname === "/v1/webhook-logs");
    await page.getByRole("button", { name: "Refresh" }).click();
    expect((await sent).headers()["x-zupertry-bookmark"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/);
  });

  it("redelivers a delivery from its row", async () => {
    const before = (await hook.requests()).length;
    await rows().first().click();
    await page.locator("tr.detail").getByRole("button", { name: "Redeliver" }).click();
    await expect.poll(() => page.locator("tr.detail .status").textContent()).toContain("Redelivery queued");
    await until(async () => ((await hook.requests()).length > before ? true : undefined));
    await expect.poll(refreshedFirstRow, { timeout: 15_000 }).toMatch(/job_test_.*#2/s);
  });

  it("pages by cursor, filters by outcome and job id, and keeps the filters across a reload", async () => {
    const ids = () => rows().evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-id")));
    const firstPage = await ids();
    // A Refresh whose answer comes late must not replace the page asked for after it.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await page.route(/\/v1\/webhook-logs\?limit=20$/, async (route) => {
      await held;
      await route.continue();
    });
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.getByRole("button", { name: "Next page" }).click();
    await expect.poll(() => rows().count()).toBe(12); // 30 history + 2 test attempts - 20
    const late = page.waitForResponse(/\/v1\/webhook-logs\?limit=20$/);
    release();
    await late;
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 100)));
    await page.unroute(/\/v1\/webhook-logs\?limit=20$/);
    expect(await rows().count()).toBe(12);
    const secondPage = await ids();
    expect(secondPage.some((id) => firstPage.includes(id))).toBe(false);
    await page.getByRole("button", { name: "First page" }).click();
    await expect.poll(() => rows().count()).toBe(20);

    await page.getByLabel("Outcome").selectOption("failed");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect.poll(() => page.url()).toContain("outcome=failed");
    await page.reload({ waitUntil: "domcontentloaded" });
    expect(await page.getByLabel("Outcome").inputValue()).toBe("failed");
    await expect.poll(() => rows().count()).toBe(20);
    for (const text of await rows().allTextContents()) expect(text).toMatch(/✗ (503|no_webhook_url)/);

    await page.getByLabel("Outcome").selectOption("");
    await page.getByLabel("Job ID").fill("job_history_7");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect.poll(() => rows().count()).toBe(1);
    expect(await rows().first().textContent()).toContain("job_history_7");
    await page.reload({ waitUntil: "domcontentloaded" });
    expect(await page.getByLabel("Job ID").inputValue()).toBe("job_history_7");
    await page.getByLabel("Job ID").fill("job_never_sent");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await expect.poll(() => page.locator("#logs-empty").textContent()).toContain("No attempts match");
    await page.getByLabel("Job ID").fill("");
    await page.getByRole("button", { name: "Apply filters" }).click();
  });

  it("looks right at 1280 px and 390 px (screenshots)", async () => {
    mkdirSync(SHOTS, { recursive: true });
    await page.goto(`${dispatcherUrl()}/console/?view=logs`, { waitUntil: "domcontentloaded" });
    await rows().first().waitFor();
    await rows().first().click();
    await page.locator("tr.detail pre").first().waitFor();
    await page.screenshot({ path: `${SHOTS}console-logs-1280.png` });
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.screenshot({ path: `${SHOTS}console-logs-390.png` });
    await page.goto(`${dispatcherUrl()}/console/?view=settings`, { waitUntil: "domcontentloaded" });
    await page.locator("#webhook-url:enabled").waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await page.screenshot({ path: `${SHOTS}console-settings-390.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: `${SHOTS}console-settings-1280.png` });
  });

  it("shows a receiver's HTML answer as text and runs none of it", async () => {
    const evil = receiver(`console-evil-${Date.now()}`);
    const payload = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>`;
    await evil.script({ replies: [{ status: 200, body: payload, headers: { "content-type": "text/html" } }] });
    const res = await api("POST", "/v1/events", producerToken(), {
      ...seedEvent(org.orgId, "job_xss"),
      webhook_url: evil.url,
    });
    expect(res.status).toBe(202);
    await page.goto(`${dispatcherUrl()}/console/?view=logs`, { waitUntil: "domcontentloaded" });
    await expect.poll(refreshedFirstRow, { timeout: 15_000 }).toContain("job_xss");
    await rows().first().click();
    const body = page.locator("tr.detail").getByLabel("Response body");
    await expect.poll(() => body.textContent()).toBe(payload);
    expect(await page.locator("tr.detail img, tr.detail b, tr.detail script").count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  });

  it("is keyboard reachable and labelled (axe-core finds no serious issue)", async () => {
    const axe = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
    for (const view of ["logs", "settings"]) {
      await page.goto(`${dispatcherUrl()}/console/?view=${view}`, { waitUntil: "domcontentloaded" });
      await page
        .locator(view === "logs" ? "tr.attempt" : "#webhook-url:enabled")
        .first()
        .waitFor();
      await page.evaluate(axe); // through DevTools, so the console's CSP does not apply
      const result = (await page.evaluate(() =>
        (window as unknown as { axe: { run(): Promise<unknown> } }).axe.run(),
      )) as {
        violations: Array<{ id: string; impact: string; nodes: unknown[] }>;
      };
      const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
      expect(
        serious.map((v) => `${v.id} (${v.nodes.length})`),
        view,
      ).toEqual([]);
    }
    // Tab from the top reaches the filters and then the first log row.
    await page.goto(`${dispatcherUrl()}/console/?view=logs`, { waitUntil: "domcontentloaded" });
    await rows().first().waitFor();
    const reached = new Set<string>();
    for (let i = 0; i < 15; i++) {
      await page.keyboard.press("Tab");
      reached.add(await page.evaluate(() => document.activeElement?.id || document.activeElement?.className || ""));
    }
    expect([...reached]).toEqual(expect.arrayContaining(["filter-job", "filter-outcome", "row-toggle"]));
  });

  it("loads fast and from its own origin only: reports what the browser transferred", async () => {
    const fresh = await browser.newContext();
    const tab = await fresh.newPage();
    const origins = new Set<string>();
    const reading: Promise<Buffer>[] = [];
    tab.on("request", (req) => {
      origins.add(new URL(req.url()).origin);
    });
    tab.on("response", (res) => {
      if (res.status() === 200) reading.push(res.body());
    });
    await tab.goto(`${dispatcherUrl()}/console/`, { waitUntil: "networkidle" });
    await tab.getByLabel("Org API key").waitFor();
    const bodies = await Promise.all(reading);
    await fresh.close();
    // No CDN, font or analytics host ever sees the page (or the key typed into it).
    expect([...origins]).toEqual([new URL(dispatcherUrl()).origin]);
    const raw = bodies.reduce((n, b) => n + b.length, 0);
    const gzipped = bodies.reduce((n, b) => n + gzipSync(b, { level: 6 }).length, 0);
    expect(raw).toBeLessThan(60_000); // the budget: a console that loads at once on a slow link
    record(
      "console",
      `page weight (HTML + CSS + JS), ${bodies.length} requests`,
      `${(raw / 1024).toFixed(1)} KiB, ${(gzipped / 1024).toFixed(1)} KiB gzipped`,
    );
  });

  it("shows clear empty and network-error states", async () => {
    const empty = await newOrg();
    const tab = await context.newPage();
    await tab.goto(`${dispatcherUrl()}/console/`, { waitUntil: "domcontentloaded" });
    await tab.evaluate(() => sessionStorage.clear());
    await tab.reload({ waitUntil: "domcontentloaded" });
    await tab.getByLabel("Org API key").fill(empty.key);
    await tab.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => tab.locator("#logs-empty").textContent()).toContain("No webhook attempts yet");

    await tab.route("**/v1/webhook-logs**", (route) => route.abort("internetdisconnected"));
    await tab.getByRole("button", { name: "Refresh" }).click();
    await expect.poll(() => tab.locator("#logs-empty").textContent()).toContain("Couldn't reach the dispatcher");
    await tab.unroute("**/v1/webhook-logs**");
    await tab.locator("#logs-empty").getByRole("button", { name: "Try again" }).click();
    await expect.poll(() => tab.locator("#logs-empty").textContent()).toContain("No webhook attempts yet");
    await tab.close();
  });

  it("/docs: the reference from our own pinned assets, sandboxed away from the console's key", async () => {
    const tab = await context.newPage();
    const origins = new Set<string>();
    tab.on("request", (req) => origins.add(new URL(req.url()).origin));
    const res = await tab.goto(`${dispatcherUrl()}/docs/`, { waitUntil: "domcontentloaded" });
    expect(res!.status()).toBe(200);
    const csp = res!.headers()["content-security-policy"]!;
    expect(csp).toContain("sandbox allow-scripts");
    expect(csp).toContain("script-src 'self'");
    await tab.getByText("Queue one job event for delivery").first().waitFor({ timeout: 15_000 });
    expect([...origins]).toEqual([dispatcherUrl()]); // nothing from a CDN: it works offline
    // The console keeps its key in sessionStorage on this host; the reference cannot reach it.
    expect(
      await tab.evaluate(() => {
        try {
          return sessionStorage.getItem("zupertry-key") === null ? "readable" : "leaked";
        } catch {
          return "blocked";
        }
      }),
    ).toBe("blocked");
    expect(await tab.locator(".try-out__btn").count()).toBe(0); // read-only: no "Try it out"
    await tab.close();
  });

  it("signs out and forgets the key", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect.poll(() => page.getByLabel("Org API key").isVisible()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem("zupertry.orgKey"))).toBeNull();
    expect(await page.locator("tr.attempt").count()).toBe(0);
    await page.reload({ waitUntil: "domcontentloaded" });
    expect(await page.getByLabel("Org API key").isVisible()).toBe(true);
    record(
      "console",
      "browser session: sign in → settings → test → rotate → logs → redeliver → page → filter → sign out",
      "passed",
    );
  });
});
