import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Dispatcher, freePort, root, startDispatcher, stopProcess } from "../../scripts/wrangler-dev";
import { sampleJobCompleted } from "../../src/api/sample-event";
import { receiver } from "../support/receiver-client";
import { until as waitUntil } from "./support/client";
import { type ReceiverProcess, startExpressSeed } from "./support/seed-receivers";
import { record } from "./support/summary";

/**
 * `zupertry listen`, `trigger` and `logs` (cli/) as a customer runs them on a laptop,
 * against a `wrangler dev` of its own (the tests stop and restart it), forwarding to the
 * docs' Express receiver, which checks every signature.
 */

const CLI = join(root, "cli", "zupertry.mjs");
const VARS = { RETRY_DELAYS_SECONDS: "1,2", ATTEMPT_TIMEOUT_MS: "2000", ALLOW_INSECURE_WEBHOOK_URLS: "true" };

let dispatcher: Dispatcher;
let state: string;
let port: number;
let org: { orgId: string; key: string; keyId: string; secret: string };
let local: ReceiverProcess;
const real = receiver(`cli-real-${Date.now()}`);
const running: CliProcess[] = [];

interface CliProcess {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
  /** Resolves with the first line (from now on or already printed) that matches. */
  line(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Runs the CLI as its user would: `node cli/zupertry.mjs …`, the key in ZUPERTRY_API_KEY. */
function cli(args: string[], key = org.key): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args, "--api-url", dispatcher.url], {
    env: { ...process.env, ZUPERTRY_API_KEY: key },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const lines: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => lines.push(line));
  }
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const line = async (pattern: RegExp, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.find((l) => pattern.test(l));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no line like ${pattern} in:\n${lines.join("\n")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const process_ = { child, lines, exited, line };
  running.push(process_);
  return process_;
}

async function api(method: string, path: string, token: string, body?: unknown): Promise<Response> {
  return fetch(`${dispatcher.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function issueKey(orgId: string, name: string): Promise<{ id: string; key: string }> {
  return (await (await api("POST", `/v1/orgs/${orgId}/api-keys`, dispatcher.operatorToken, { name })).json()) as {
    id: string;
    key: string;
  };
}

async function sendEvent(jobId: string): Promise<string> {
  const res = await api("POST", "/v1/events", dispatcher.producerToken, sampleJobCompleted(org.orgId, jobId));
  expect(res.status).toBe(202);
  return ((await res.json()) as { delivery_id: string }).delivery_id;
}

/** support/client's `until`, for a yes/no condition. */
const until = (probe: () => boolean | Promise<boolean>) =>
  waitUntil(async () => ((await probe()) ? true : undefined), 20_000);

beforeAll(async () => {
  state = mkdtempSync(join(tmpdir(), "zupertry-cli-"));
  port = await freePort();
  dispatcher = await startDispatcher(VARS, { state, port });
  const orgId = `org_cli_${Date.now()}`;
  const { id, key } = await issueKey(orgId, "laptop");
  const { signing_secret } = (await (await api("GET", "/v1/webhook", key)).json()) as { signing_secret: string };
  org = { orgId, key, keyId: id, secret: signing_secret };
  // The org's real endpoint, as deployed: it keeps getting its attempts.
  await api("PUT", "/v1/webhook", key, { webhook_url: real.url });
  local = await startExpressSeed(signing_secret);
}, 120_000);

afterAll(async () => {
  for (const p of running) await stopProcess(p.child);
  await local?.stop();
  await dispatcher?.stop();
  rmSync(state, { recursive: true, force: true });
});

describe("zupertry listen", () => {
  let first: CliProcess;
  let second: CliProcess;

  it("forwards a delivery to the docs' Express receiver, which verifies it; the endpoint still gets it", async () => {
    first = cli(["listen", "--forward-to", local.url]);
    await first.line(/^Ready: forwarding/);
    const deliveryId = await sendEvent("job_cli_1");

    const printed = await first.line(new RegExp(`job\\.completed +job_cli_1 +${deliveryId} +#1 +→ 200 in \\d+ ms`));
    expect(printed).toMatch(/^\d{2}:\d{2}:\d{2} /);
    await until(() => local.answers.some((a) => a.delivery === deliveryId));
    expect(local.answers.find((a) => a.delivery === deliveryId)).toEqual({
      status: 200, // the seed's own signature check passed
      delivery: deliveryId,
      attempt: "1",
    });
    await until(async () => (await real.requests()).length === 1);
    // The log holds the real attempt alone; the listener's answer is kept apart.
    const logs = (await (await api("GET", `/v1/webhook-logs?delivery_id=${deliveryId}`, org.key)).json()) as {
      data: unknown[];
    };
    expect(logs.data).toHaveLength(1);
    await until(async () => {
      const res = await api("GET", "/v1/listen/deliveries", org.key);
      const { data } = (await res.json()) as { data: Array<{ delivery_id: string; status_code: number }> };
      return data.some((r) => r.delivery_id === deliveryId && r.status_code === 200);
    });
    record("listen", "zupertry listen → the docs' Express receiver", "verified, 200; real endpoint got its attempt");
  });

  it("two listeners of the org both get each delivery, each with its own key", async () => {
    const { key } = await issueKey(org.orgId, "second laptop");
    second = cli(["listen", "--forward-to", local.url], key);
    await second.line(/^Ready: forwarding/);
    const deliveryId = await sendEvent("job_cli_2");
    for (const listener of [first, second]) await listener.line(new RegExp(`${deliveryId} +#1 +→ 200`));
    await until(() => local.answers.filter((a) => a.delivery === deliveryId).length === 2);
    // Each listener's answer is kept, under its own key.
    await until(async () => {
      const results = (await (await api("GET", "/v1/listen/deliveries", org.key)).json()) as {
        data: Array<{ delivery_id: string; listener_key_id: string }>;
      };
      const mine = results.data.filter((r) => r.delivery_id === deliveryId);
      return new Set(mine.map((r) => r.listener_key_id)).size === 2;
    });
  });

  it("trigger sends a test event the listeners get; logs lists the attempts", async () => {
    const trigger = cli(["trigger", "job.failed"]);
    expect(await trigger.exited).toBe(0);
    const said = await trigger.line(/^Triggered job\.failed: delivery (dlv_[0-9a-f]{32}), job (job_test_\w+)\./);
    const deliveryId = said.match(/dlv_[0-9a-f]{32}/)![0];
    await first.line(new RegExp(`job\\.failed +job_test_\\w+ +${deliveryId} +#1 +→ 200`));

    const logs = cli(["logs", "--delivery-id", deliveryId]);
    expect(await logs.exited).toBe(0);
    await logs.line(new RegExp(`job\\.failed +job_test_\\w+ +${deliveryId} +#1 +✓ 200 in \\d+ ms`));

    const follow = cli(["logs", "--follow", "--event-type", "job.completed"]);
    await follow.line(/^Following new attempts/);
    const next = await sendEvent("job_cli_follow");
    await follow.line(new RegExp(`job_cli_follow +${next} +#1 +✓ 200`));
    expect(follow.lines.some((l) => l.includes("job.failed "))).toBe(false);
    await stopProcess(follow.child);
  });

  it("shows a local receiver that is down and goes on", async () => {
    await local.stop();
    const deliveryId = await sendEvent("job_cli_down");
    await first.line(new RegExp(`${deliveryId} +#1 +→ error: ECONNREFUSED`));
    local = await startExpressSeed(org.secret, Number(new URL(local.url).port));
    const after = await sendEvent("job_cli_back");
    await first.line(new RegExp(`${after} +#1 +→ 200`));
  });

  it("reconnects after the dispatcher restarts, and says what it missed", async () => {
    await dispatcher.stop();
    await first.line(/^Connection lost/);
    dispatcher = await startDispatcher(
      { ...VARS, PRODUCER_TOKEN: dispatcher.producerToken, OPERATOR_TOKEN: dispatcher.operatorToken },
      { state, port, migrate: false },
    );
    // Sent at once: the listener is most likely still waiting out its back-off.
    const during = await sendEvent("job_cli_during_reconnect");
    const back = await first.line(/^Reconnected\. While disconnected \(\d\d:\d\d:\d\d–\d\d:\d\d:\d\d\) /, 60_000);
    // Never lost silently: either counted as missed, or forwarded after the reconnect.
    if (back.includes("0 attempts were made")) await first.line(new RegExp(`${during} +#1 +→ 200`));
    else expect(back).toMatch(/1 attempt was made and not forwarded: zupertry logs --since \d{4}-/);
    await second.line(/^Reconnected\./, 60_000);
    const deliveryId = await sendEvent("job_cli_after_restart");
    await first.line(new RegExp(`${deliveryId} +#1 +→ 200`));
    record("listen", "dispatcher killed and restarted", "both listeners reconnected, said what they missed");
  }, 300_000); // its waits: a stop, a start (up to 60 s), two of 60 s and three of 20 s

  it("ends the session when its key is revoked, and refuses a wrong key", async () => {
    expect((await api("DELETE", `/v1/orgs/${org.orgId}/api-keys/${org.keyId}`, dispatcher.operatorToken)).status).toBe(
      204,
    );
    expect(await first.exited).toBe(1);
    await first.line(/This API key was revoked/);
    // The other laptop's key still works.
    const deliveryId = await sendEvent("job_cli_after_revoke");
    await second.line(new RegExp(`${deliveryId} +#1 +→ 200`));

    const wrong = cli(["listen", "--forward-to", local.url], `zk_${"x".repeat(43)}`);
    expect(await wrong.exited).toBe(1);
    await wrong.line(/not accepted: it is invalid or has been revoked/);
    record("listen", "revoked key / wrong key", "session ended, exit 1 / refused, exit 1");
  });
});
