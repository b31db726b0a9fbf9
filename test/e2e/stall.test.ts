import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Dispatcher, startDispatcher } from "../../scripts/wrangler-dev";
import { Receiver } from "../support/receiver";
import { record } from "./support/summary";

/**
 * A delivery whose queue message is lost is picked up again by itself (the stall sweep,
 * src/delivery/sweep.ts). `wrangler dev` keeps queued messages in memory, so stopping it
 * while a retry waits loses that message for real; the restarted dispatcher finds the
 * delivery pending in D1, and the every-minute cron (triggered here by hand: local dev
 * runs no crons by itself) takes it over. Stall threshold shortened to 3 s by --var, and
 * the retry waits 20 s: far longer than stopping `wrangler dev` takes (at most 5 s, then
 * SIGKILL), so attempt 2 is never made before its message is lost.
 */

const receiver = new Receiver();
let base: string;
let state: string;
let dispatcher: Dispatcher;
const VARS = {
  PRODUCER_TOKEN: `e2e-stall-${Math.random().toString(36).slice(2)}`,
  OPERATOR_TOKEN: `e2e-stall-operator-${Math.random().toString(36).slice(2)}`,
  RETRY_DELAYS_SECONDS: "20,2",
  ATTEMPT_TIMEOUT_MS: "2000",
  STALLED_AFTER_SECONDS: "3",
  ALLOW_INSECURE_WEBHOOK_URLS: "true",
};

beforeAll(async () => {
  base = await receiver.start();
  state = mkdtempSync(join(tmpdir(), "zupertry-e2e-stall-"));
});

afterAll(async () => {
  await dispatcher?.stop();
  await receiver.stop();
  rmSync(state, { recursive: true, force: true });
});

const api = (method: string, path: string, token: string, body?: unknown) =>
  fetch(`${dispatcher.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

type Delivery = {
  status: string;
  attempt_count: number;
  next_attempt_at: string | null;
  attempts: Array<{ attempt: number; outcome: string; status_code: number | null }>;
};

it("a delivery whose retry message was lost in a restart is picked up by the sweep and delivered", async () => {
  dispatcher = await startDispatcher(VARS, { state, testScheduled: true });
  receiver.setScenario("stall", { replies: [{ status: 500 }, { status: 200 }] });
  const orgId = `org_stall_${Math.random().toString(36).slice(2, 8)}`;
  const { key } = (await (await api("POST", `/v1/orgs/${orgId}/api-keys`, VARS.OPERATOR_TOKEN, {})).json()) as {
    key: string;
  };
  const sent = await api("POST", "/v1/events", VARS.PRODUCER_TOKEN, {
    type: "job.completed",
    data: { job_id: "job_stall_1", org_id: orgId, status: "completed" },
    webhook_url: `${base}/hook/stall`,
  });
  const { delivery_id } = (await sent.json()) as { delivery_id: string };
  const get = async () =>
    (await api("GET", `/v1/deliveries/${delivery_id}`, key)).status === 200
      ? ((await (await api("GET", `/v1/deliveries/${delivery_id}`, key)).json()) as Delivery)
      : undefined;
  await until(async () => ((await get())?.attempt_count === 1 ? true : undefined));

  // The retry waits in the queue (20 s): stopping the dispatcher loses it.
  await dispatcher.stop();
  dispatcher = await startDispatcher(VARS, { state, testScheduled: true, migrate: false });
  // Past the retry's due time, by the stall threshold (3 s) and a second more: a message
  // that survived the restart would have made attempt 2 by now; a lost one did not.
  const { next_attempt_at } = (await get())!;
  expect(next_attempt_at).not.toBeNull();
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(next_attempt_at!) + 4000 - Date.now())));
  const stuck = await get();
  expect(stuck).toMatchObject({ status: "pending", attempt_count: 1 });
  expect(receiver.requests("stall")).toHaveLength(1);

  const cron = await fetch(`${dispatcher.url}/__scheduled?cron=${encodeURIComponent("* * * * *")}`);
  expect(cron.status).toBe(200);
  const done = await until(async () => {
    const d = await get();
    return d && d.status !== "pending" ? d : undefined;
  });
  expect(done).toMatchObject({ status: "delivered", attempt_count: 2 });
  expect(done.attempts.map((a) => [a.attempt, a.status_code])).toEqual([
    [1, 500],
    [2, 200],
  ]);
  const requests = receiver.requests("stall");
  expect(requests.map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2"]);
  expect(requests[1]!.body).toBe(requests[0]!.body);
  record("faults", "retry message lost in a restart (queue purged)", "picked up by the sweep, delivered at attempt 2");
}, 120_000);
