import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  ANSWER_SLACK,
  type DeliveryFrame,
  KEY_ID_HEADER,
  MAX_CLIENT_FRAME_BYTES,
  MAX_LISTENERS,
  MAX_OWED_BYTES,
  readAttachment,
} from "../../src/org/listeners";
import { LISTENER_KEY_CHECK_MS, type OrgSettings, orgSettings } from "../../src/org/org-settings";
import { revokeApiKey } from "../../src/store/api-keys";
import {
  attemptsOf,
  call,
  hmacHex,
  jobEvent,
  messageFor,
  OPERATOR_TOKEN,
  orgKey,
  orgsOnShard,
  PRODUCER_TOKEN,
  receiver,
  runConsumer,
  uniqueId,
} from "./helpers";

/**
 * `zupertry listen` sessions (src/api/listen.ts, src/org/listeners.ts): WebSockets held
 * by the org's Durable Object, which gets every attempt of its org relayed, apart from
 * the log.
 */

interface Session {
  ws: WebSocket;
  frames: Array<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
  /** The next frame that matches (waits for it). */
  next(type: string): Promise<Record<string, unknown>>;
}

const open: WebSocket[] = [];
afterEach(() => {
  for (const ws of open.splice(0)) {
    try {
      ws.close(1000);
    } catch {
      // closed already
    }
  }
  vi.restoreAllMocks();
});

async function connect(token: string): Promise<Session> {
  const res = await call("GET", "/v1/listen", { token, headers: { Upgrade: "websocket" } });
  expect(res.status).toBe(101);
  const ws = res.webSocket!;
  ws.accept();
  open.push(ws);
  const frames: Array<Record<string, unknown>> = [];
  ws.addEventListener("message", (event) => {
    if (typeof event.data === "string" && event.data !== "pong") frames.push(JSON.parse(event.data));
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener("close", (event) => resolve({ code: event.code, reason: event.reason })),
  );
  const next = async (type: string) => {
    await vi.waitUntil(() => frames.some((f) => f.type === type), { timeout: 5_000, interval: 10 });
    const i = frames.findIndex((f) => f.type === type);
    return frames.splice(i, 1)[0]!;
  };
  await next("hello");
  return { ws, frames, closed, next };
}

/** A listener's answer about the n-th of some made-up deliveries. */
function answer(n: number) {
  return {
    delivery_id: `dlv_${n.toString(16).padStart(32, "0")}`,
    attempt: 1,
    job_id: `job_${n}`,
    event_type: "job.completed",
    status_code: 200,
    response_time_ms: 3,
    error: null,
  };
}

/** A delivery frame, as the relay sends it, of the n-th of those deliveries, carrying `body`. */
function delivery(n: number, body: string): DeliveryFrame {
  return { ...answer(n), type: "delivery", headers: {}, body };
}

/** What the org's listeners answered, newest first (GET /v1/listen/deliveries). */
async function listedAnswers(key: string): Promise<Array<{ job_id: string }>> {
  const res = await call("GET", "/v1/listen/deliveries", { token: key });
  return ((await res.json()) as { data: Array<{ job_id: string }> }).data;
}

/**
 * Sends `frames` frames of 25 answers (job_1, job_2, …), each one kept before the next
 * is sent, so that "newest" is the order they were sent in.
 */
async function sendAnswerFrames(listener: Session, key: string, frames: number): Promise<void> {
  for (let frame = 0; frame < frames; frame++) {
    const results = Array.from({ length: 25 }, (_, i) => answer(frame * 25 + i + 1));
    listener.ws.send(JSON.stringify({ type: "results", results }));
    const last = `job_${frame * 25 + 25}`;
    await vi.waitUntil(async () => (await listedAnswers(key))[0]?.job_id === last, { timeout: 5_000, interval: 20 });
  }
}

/** Attempts still running after 300 ms are handed off (ATTEMPT_TIMEOUT_MS is 1000 in these tests). */
const laneEnv = { ...env, SLOW_ATTEMPT_MS: "300" };

async function newOrg() {
  const orgId = uniqueId("org");
  const key = await orgKey(orgId);
  const { signing_secret } = (await (await call("GET", "/v1/webhook", { token: key })).json()) as {
    signing_secret: string;
  };
  return { orgId, key, secret: signing_secret };
}

describe("GET /v1/listen", () => {
  it("needs an org key and a WebSocket upgrade", async () => {
    const { key } = await newOrg();
    expect((await call("GET", "/v1/listen", { headers: { Upgrade: "websocket" } })).status).toBe(401);
    expect((await call("GET", "/v1/listen", { token: PRODUCER_TOKEN, headers: { Upgrade: "websocket" } })).status).toBe(
      401,
    );
    const plain = await call("GET", "/v1/listen", { token: key });
    expect(plain.status).toBe(426);
    expect(await plain.json()).toMatchObject({ error: { code: "invalid_request" } });
  });

  it("relays each attempt with the headers and bytes a real endpoint gets, and logs it once", async () => {
    const { orgId, key, secret } = await newOrg();
    const listener = await connect(key);
    const hook = receiver(uniqueId("real"));
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
    const run = await runConsumer([{ id: uniqueId("msg"), body: message }]);
    await run.background;

    const frame = await listener.next("delivery");
    const [real] = await hook.requests();
    expect(frame).toMatchObject({
      delivery_id: message.delivery_id,
      job_id: message.job_id,
      event_type: "job.completed",
      attempt: 1,
      body: real!.text,
    });
    const headers = frame.headers as Record<string, string>;
    expect(headers["X-Zupertry-Signature"]).toBe(real!.headers["x-zupertry-signature"]);
    expect(headers["X-Zupertry-Signature"]).toBe(await hmacHex(secret, real!.text));
    expect(Object.keys(headers).map((h) => h.toLowerCase())).toEqual(
      expect.arrayContaining(["x-zupertry-delivery", "x-zupertry-attempt", "webhook-signature", "user-agent"]),
    );
    // The real endpoint got its attempt; the log holds it once; the relay is no attempt.
    expect(run.acked).toHaveLength(1);
    expect(await attemptsOf(message.delivery_id)).toHaveLength(1);
  });

  it("relays a delivery the fast lane moves aside once, when the slow lane makes its attempt", async () => {
    const { orgId, key } = await newOrg();
    const listener = await connect(key);
    const hanging = receiver(uniqueId("hanging"));
    await hanging.script({ replies: [{ delayMs: 3000 }] });
    const quick = receiver(uniqueId("quick"), { origin: "second" });
    await quick.script({ replies: [{ delayMs: 120 }] });
    const message = async (org: string, url: string) => ({
      id: uniqueId("msg"),
      body: await messageFor(jobEvent(org, uniqueId("job")), url),
    });
    // As in lanes.test.ts: three attempts hang past the 300 ms hand-off while another
    // org's deliveries keep the run going; the fourth never starts and is moved aside.
    const stuck = await Promise.all(Array.from({ length: 3 }, () => message(orgId, hanging.url)));
    const moved = await message(orgId, hanging.url);
    const other = uniqueId("org");
    const healthy = await Promise.all(Array.from({ length: 15 }, () => message(other, quick.url)));
    const fast = await runConsumer([...stuck, moved, ...healthy], "deliveries", laneEnv);
    await fast.background;
    const followUp = fast.toSlowLane.find((r) => r.body.delivery_id === moved.body.delivery_id)!;
    expect(await hanging.requests()).toHaveLength(3);
    // The three attempts made were relayed; the moved delivery was not.
    expect(
      listener.frames
        .splice(0)
        .map((f) => f.delivery_id)
        .sort(),
    ).toEqual(stuck.map((m) => m.body.delivery_id).sort());

    await (await runConsumer([{ id: uniqueId("msg"), body: followUp.body }], "deliveries-slow", laneEnv)).background;
    const frame = await listener.next("delivery");
    const sent = (await hanging.requests()).at(-1)!;
    expect(frame).toMatchObject({ delivery_id: moved.body.delivery_id, attempt: 1, body: sent.text });
    // The attempt's own headers: its signatures and its second.
    const headers = frame.headers as Record<string, string>;
    for (const name of ["X-Zupertry-Signature", "webhook-signature", "webhook-timestamp"]) {
      expect(headers[name]).toBe(sent.headers[name.toLowerCase()]);
    }
    expect(await attemptsOf(moved.body.delivery_id)).toMatchObject([{ attempt: 1, error: "timeout" }]);
    await new Promise((r) => setTimeout(r, 100));
    expect(listener.frames).toEqual([]);
  });

  it("relays a released delivery once, when the run that makes its attempt starts it", async () => {
    const { orgId, key } = await newOrg();
    const listener = await connect(key);
    const [hangingA, hangingB] = [receiver(uniqueId("hanging")), receiver(uniqueId("hanging"), { origin: "second" })];
    for (const h of [hangingA, hangingB]) await h.script({ replies: [{ delayMs: 3000 }] });
    const ok = receiver(uniqueId("ok"));
    // Two other orgs' six hanging attempts hold every connection past the hand-off (on
    // this org's shard, so that the run takes the batch in its order).
    const [otherA, otherB] = await orgsOnShard((await orgSettings(env, orgId).getLogShard())!, 2);
    const stuck = await Promise.all(
      [hangingA, hangingA, hangingA, hangingB, hangingB, hangingB].map(async (h) => ({
        id: uniqueId("msg"),
        body: await messageFor(jobEvent((h === hangingA ? otherA : otherB)!, uniqueId("job")), h.url),
      })),
    );
    const waiting = { id: uniqueId("msg"), body: await messageFor(jobEvent(orgId, uniqueId("job")), ok.url) };
    const first = await runConsumer([...stuck, waiting], "deliveries", laneEnv);
    expect(first.putBack.map((m) => m.body.delivery_id)).toEqual([waiting.body.delivery_id]);
    await first.background;
    expect(listener.frames).toEqual([]);

    const putBack = { id: uniqueId("msg"), body: first.putBack[0]!.body };
    await (await runConsumer([putBack], "deliveries", laneEnv)).background;
    expect(await listener.next("delivery")).toMatchObject({ delivery_id: waiting.body.delivery_id, attempt: 1 });
    expect(await ok.requests()).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 100));
    expect(listener.frames).toEqual([]);
  });

  it("never waits for the relay: an object that does not answer it holds up no delivery", async () => {
    const { orgId, key } = await newOrg();
    await connect(key);
    const get = env.ORG_SETTINGS.get.bind(env.ORG_SETTINGS);
    let relays = 0;
    vi.spyOn(env.ORG_SETTINGS, "get").mockImplementation((id) => {
      const stub = get(id);
      return new Proxy(stub, {
        get: (target, name) =>
          name === "relay"
            ? () => {
                relays++;
                return new Promise(() => {}); // never settles
              }
            : Reflect.get(target, name),
      });
    });
    const hook = receiver(uniqueId("real"));
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
    const run = await runConsumer([{ id: uniqueId("msg"), body: message }]);
    expect(relays).toBe(1);
    expect(run.acked).toHaveLength(1);
    expect(await hook.requests()).toHaveLength(1);
    expect(await attemptsOf(message.delivery_id)).toHaveLength(1);
  });

  it("relays to every listener of the org, and to none of another org", async () => {
    const a = await newOrg();
    const b = await newOrg();
    const [first, second, stranger] = await Promise.all([connect(a.key), connect(a.key), connect(b.key)]);
    const message = await messageFor(jobEvent(a.orgId, uniqueId("job")), null); // no URL anywhere
    await (await runConsumer([{ id: uniqueId("msg"), body: message }])).background;
    for (const listener of [first, second]) {
      const frame = await listener.next("delivery");
      expect(frame).toMatchObject({ delivery_id: message.delivery_id });
      // Nothing was sent, yet the laptop gets what a real endpoint would: signed headers the
      // docs' snippets and a Standard Webhooks library verify.
      const headers = frame.headers as Record<string, string>;
      expect(headers["X-Zupertry-Signature"]).toBe(await hmacHex(a.secret, frame.body as string));
      expect(new Webhook(a.secret).verify(frame.body as string, headers)).toMatchObject({ type: "job.completed" });
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(stranger.frames).toEqual([]);
    // The real attempt says what it was: no URL.
    expect((await attemptsOf(message.delivery_id)).map((r) => r.error)).toEqual(["no_webhook_url"]);
  });

  it("keeps what listeners answer apart from the log, and refuses frames that are not results", async () => {
    const { key } = await newOrg();
    const listener = await connect(key);
    const result = {
      type: "result",
      delivery_id: `dlv_${"a".repeat(32)}`,
      attempt: 1,
      job_id: "job_local",
      event_type: "job.completed",
      status_code: 200,
      response_time_ms: 12,
      error: null,
    };
    listener.ws.send(JSON.stringify(result));
    listener.ws.send("{not json");
    expect(await listener.next("error")).toMatchObject({ message: expect.stringContaining("not JSON") });
    listener.ws.send(JSON.stringify({ ...result, status_code: "200" }));
    expect(await listener.next("error")).toMatchObject({ message: expect.stringContaining("status_code") });

    // Several at once, as the CLI sends them in a burst.
    const { type: _, ...fields } = result;
    listener.ws.send(
      JSON.stringify({
        type: "results",
        results: [
          { ...fields, job_id: "job_b", status_code: 500 },
          { ...fields, job_id: "job_c", status_code: null, error: "ECONNREFUSED" },
        ],
      }),
    );
    await vi.waitUntil(async () => {
      const res = await call("GET", "/v1/listen/deliveries", { token: key });
      return ((await res.json()) as { data: unknown[] }).data.length === 3;
    });
    const res = await call("GET", "/v1/listen/deliveries", { token: key });
    const { data } = (await res.json()) as { data: Array<Record<string, unknown>> };
    expect(data.map((r) => [r.job_id, r.status_code, r.error])).toEqual([
      ["job_c", null, "ECONNREFUSED"],
      ["job_b", 500, null],
      ["job_local", 200, null],
    ]);
    expect(data[2]).toEqual({
      delivery_id: result.delivery_id,
      attempt: 1,
      job_id: "job_local",
      event_type: "job.completed",
      listener_key_id: expect.stringMatching(/^key_/),
      status_code: 200,
      response_time_ms: 12,
      error: null,
      received_at: expect.any(String),
    });

    listener.ws.send("x".repeat(MAX_CLIENT_FRAME_BYTES + 1));
    expect(await listener.closed).toMatchObject({ code: 1009 });
    const binary = await connect(key);
    binary.ws.send(new Uint8Array([1, 2, 3]));
    expect(await binary.closed).toMatchObject({ code: 1003 });
  });

  it(`holds at most ${MAX_LISTENERS} listeners per org`, async () => {
    const { key } = await newOrg();
    for (let i = 0; i < MAX_LISTENERS; i++) await connect(key);
    const refused = await call("GET", "/v1/listen", { token: key, headers: { Upgrade: "websocket" } });
    expect(refused.status).toBe(429);
    // No Retry-After: waiting alone frees no room, and the CLI stops rather than retry.
    expect(refused.headers.get("retry-after")).toBeNull();
    expect(await refused.json()).toMatchObject({ error: { code: "rate_limited" } });
    expect(((await (await call("GET", "/v1/webhook", { token: key })).json()) as { listeners: number }).listeners).toBe(
      MAX_LISTENERS,
    );
  });

  it("lists the newest 200 answers, however many came", async () => {
    const { key } = await newOrg();
    const listener = await connect(key);
    // 9 frames of 25, the most a frame holds: 225 answers.
    await sendAnswerFrames(listener, key, 9);
    const data = await listedAnswers(key);
    expect(data).toHaveLength(200);
    expect([data[0]!.job_id, data.at(-1)!.job_id]).toEqual(["job_225", "job_26"]);
  });

  it("keeps no more answers from a session than deliveries were relayed to it, and a slack", async () => {
    const { orgId, key } = await newOrg();
    const listener = await connect(key);
    const newest = async () => (await listedAnswers(key))[0]?.job_id;
    // Answers to nothing that was relayed: the slack is kept, the rest is refused.
    await sendAnswerFrames(listener, key, ANSWER_SLACK / 25);
    listener.ws.send(
      JSON.stringify({ type: "results", results: Array.from({ length: 25 }, (_, i) => answer(i + 301)) }),
    );
    expect(await listener.next("error")).toMatchObject({ message: expect.stringMatching(/^25 result\(s\) not kept/) });
    expect(await newest()).toBe(`job_${ANSWER_SLACK}`);

    // Another session of the org has its own allowance.
    const colleague = await connect(key);
    colleague.ws.send(JSON.stringify({ type: "result", ...answer(5000) }));
    await vi.waitUntil(async () => (await newest()) === "job_5000", { timeout: 5_000, interval: 20 });

    // A relayed delivery may be answered; the allowance is kept with the session, so it
    // outlives the object's hibernation.
    const hook = receiver(uniqueId("real"));
    const message = await messageFor(jobEvent(orgId, uniqueId("job")), hook.url);
    await (await runConsumer([{ id: uniqueId("msg"), body: message }])).background;
    const frame = await listener.next("delivery");
    await colleague.next("delivery");
    const allowances = await runInDurableObject(orgSettings(env, orgId), (_instance: OrgSettings, state) =>
      state.getWebSockets().map((ws) => readAttachment(ws).answersAllowed),
    );
    expect(allowances.sort((a, b) => a - b)).toEqual([1, ANSWER_SLACK]);
    listener.ws.send(JSON.stringify({ type: "result", ...answer(9999), job_id: frame.job_id }));
    await vi.waitUntil(async () => (await newest()) === frame.job_id, { timeout: 5_000, interval: 20 });
    expect([...listener.frames, ...colleague.frames].filter((f) => f.type === "error")).toEqual([]);
  });

  it("skips a session that leaves 4 MiB of deliveries unanswered; tells it how many once it caught up", async () => {
    const { orgId, key } = await newOrg();
    const [behind, keeping] = await Promise.all([connect(key), connect(key)]);
    const org = orgSettings(env, orgId);
    // Deliveries of 60 KB events (the API takes up to 64 KiB): 70 of them are over 4 MiB.
    const frame = (n: number) => delivery(n, JSON.stringify({ padding: "x".repeat(60_000), n }));
    const answerAll = async (listener: Session, from: number, to: number) => {
      for (let n = from; n <= to; n += 25) {
        const results = Array.from({ length: Math.min(25, to - n + 1) }, (_, i) => answer(n + i));
        listener.ws.send(JSON.stringify({ type: "results", results }));
      }
      await vi.waitUntil(async () => (await listedAnswers(key)).some((a) => a.job_id === `job_${to}`), {
        timeout: 5_000,
        interval: 20,
      });
    };
    const deliveries = (listener: Session) => listener.frames.filter((f) => f.type === "delivery").length;

    expect(await org.relay(Array.from({ length: 70 }, (_, i) => frame(i + 1)))).toBe(140);
    await answerAll(keeping, 1, 70);
    // The one that answered nothing gets no more; the other one gets them all.
    expect(await org.relay(Array.from({ length: 10 }, (_, i) => frame(71 + i)))).toBe(10);
    await vi.waitUntil(() => deliveries(keeping) === 80, { timeout: 5_000, interval: 10 });
    expect(deliveries(behind)).toBe(70);
    const owed = await runInDurableObject(org, (_instance: OrgSettings, state) =>
      state.getWebSockets().map((ws) => readAttachment(ws)),
    );
    expect(owed.map((a) => [a.owedFrames, a.skipped]).sort()).toEqual([
      [10, 0],
      [70, 10],
    ]);
    expect(Math.max(...owed.map((a) => a.owedBytes))).toBeGreaterThanOrEqual(MAX_OWED_BYTES);

    // Answering a third of it is not catching up: it still owes over half the limit, and
    // stays skipped (under the limit again, but not by half).
    await answerAll(behind, 1, 25);
    expect(behind.frames.filter((f) => f.type === "skipped")).toEqual([]);
    expect(await org.relay([frame(81)])).toBe(1);
    // At half, it is told what it missed (the log has it), and gets deliveries again.
    await answerAll(behind, 26, 40);
    const told = await behind.next("skipped");
    expect(told).toEqual({ type: "skipped", count: 11, since: expect.any(String), until: expect.any(String) });
    expect(Date.parse(told.until as string)).toBeGreaterThanOrEqual(Date.parse(told.since as string));
    expect(await org.relay([frame(82)])).toBe(2);
    expect(behind.frames.filter((f) => f.type === "error")).toEqual([]);
  });

  it('counts what a session owes in bytes as sent: 35 events of 60,000 "é" are over 4 MiB', async () => {
    const { orgId, key } = await newOrg();
    const listener = await connect(key);
    const org = orgSettings(env, orgId);
    const frame = (n: number) => delivery(n, JSON.stringify({ note: "é".repeat(60_000) })); // 2 bytes each in UTF-8
    expect(await org.relay(Array.from({ length: 35 }, (_, i) => frame(i + 1)))).toBe(35);
    expect(await org.relay([frame(36)])).toBe(0);
    expect(listener.frames.filter((f) => f.type === "error")).toEqual([]);
  });

  it("makes room for new listeners by closing sessions silent for 90 s (a laptop asleep)", async () => {
    const { orgId, key } = await newOrg();
    const asleep = [];
    for (let i = 0; i < MAX_LISTENERS; i++) asleep.push(await connect(key));
    // Their last sign of life, 100 s ago (no ping since they connected).
    await runInDurableObject(orgSettings(env, orgId), (_instance: OrgSettings, state) => {
      for (const ws of state.getWebSockets()) ws.serializeAttachment({ connectedAt: Date.now() - 100_000 });
    });
    const awake = await connect(key); // accepted: the silent ones were closed
    for (const session of asleep) expect(await session.closed).toMatchObject({ code: 1001 });
    expect(awake.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("keeps a session that pings, however long ago it connected, when a new one connects", async () => {
    const { orgId, key } = await newOrg();
    const old = await connect(key);
    await runInDurableObject(orgSettings(env, orgId), (_instance: OrgSettings, state) => {
      for (const ws of state.getWebSockets()) ws.serializeAttachment({ connectedAt: Date.now() - 100_000 });
    });
    const pong = new Promise<string>((resolve) =>
      old.ws.addEventListener("message", (event) => event.data === "pong" && resolve(event.data)),
    );
    old.ws.send("ping"); // answered by the runtime, which keeps the time
    expect(await pong).toBe("pong");
    const fresh = await connect(key);
    await new Promise((r) => setTimeout(r, 200));
    expect([old.ws.readyState, fresh.ws.readyState]).toEqual([WebSocket.OPEN, WebSocket.OPEN]);
  });

  it("refuses a session of a key revoked while its upgrade was on the way", async () => {
    const { orgId } = await newOrg();
    const stub = orgSettings(env, orgId);
    await stub.closeListeners("key_revoked_meanwhile");
    const upgrade = new Request("https://org-settings/listen", {
      headers: { Upgrade: "websocket", [KEY_ID_HEADER]: "key_revoked_meanwhile" },
    });
    const res = await stub.fetch(upgrade);
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("ends the sessions of a key when it is revoked (4001), and only those", async () => {
    const { orgId, key } = await newOrg();
    const created = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: { name: "b" } });
    const other = (await created.json()) as { id: string; key: string };
    const [mine, theirs] = await Promise.all([connect(key), connect(other.key)]);
    expect((await call("DELETE", `/v1/api-keys/${other.id}`, { token: key })).status).toBe(204);
    expect(await theirs.closed).toEqual({ code: 4001, reason: "API key revoked" });
    mine.ws.send("ping");
    await new Promise((r) => setTimeout(r, 100));
    expect(mine.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("closes a revoked key's sessions at its next key check, when the revoke could not reach the object", async () => {
    const { orgId, key } = await newOrg();
    const created = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: { name: "b" } });
    const other = (await created.json()) as { id: string; key: string };
    const [mine, theirs] = await Promise.all([connect(key), connect(other.key)]);
    // The revoke reaches D1, but not the org's object (unreachable, or evicted since).
    expect(await revokeApiKey(env.DB, orgId, other.id)).toBe(true);
    expect(theirs.ws.readyState).toBe(WebSocket.OPEN);

    const stub = orgSettings(env, orgId);
    expect(await runInDurableObject(stub, (_i: OrgSettings, state) => state.storage.getAlarm())).toBeGreaterThan(
      Date.now(),
    );
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await theirs.closed).toEqual({ code: 4001, reason: "API key revoked" });
    expect(mine.ws.readyState).toBe(WebSocket.OPEN);
    // Checked again while a session is open.
    expect(await runInDurableObject(stub, (_i: OrgSettings, state) => state.storage.getAlarm())).toBeGreaterThan(
      Date.now() + LISTENER_KEY_CHECK_MS - 5_000,
    );
  });

  it("closes a dead session at the key check, and stops checking once none is left", async () => {
    const { orgId, key } = await newOrg();
    const asleep = await connect(key);
    const stub = orgSettings(env, orgId);
    await runInDurableObject(stub, (_instance: OrgSettings, state) => {
      for (const ws of state.getWebSockets()) ws.serializeAttachment({ connectedAt: Date.now() - 100_000 });
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await asleep.closed).toMatchObject({ code: 1001 });
    // Nothing left to check: the object may sleep.
    expect(await runInDurableObject(stub, (_i: OrgSettings, state) => state.storage.getAlarm())).toBeNull();
  });

  it("lets a test event go out with no URL at all while a listener is connected", async () => {
    const { key } = await newOrg();
    const without = await call("POST", "/v1/webhook/test", { token: key, body: { event_type: "job.failed" } });
    expect(without.status).toBe(400);
    expect(await without.json()).toMatchObject({ error: { code: "no_webhook_url" } });

    const listener = await connect(key);
    const res = await call("POST", "/v1/webhook/test", { token: key, body: { event_type: "job.failed" } });
    expect(res.status).toBe(202);
    const { delivery_id } = (await res.json()) as { delivery_id: string };
    // The test event goes through the real queue and consumer.
    const frame = await vi.waitUntil(
      () => listener.frames.find((f) => f.type === "delivery" && f.delivery_id === delivery_id),
      { timeout: 10_000, interval: 50 },
    );
    expect(JSON.parse(frame.body as string)).toMatchObject({ type: "job.failed", data: { status: "failed" } });
  });
});
