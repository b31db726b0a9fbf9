import { createExecutionContext, createMessageBatch, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, vi } from "vitest";
import { sampleJobCompleted } from "../../src/api/sample-event";
import { type DeliveryMessage, type EventType, newDeliveryMessage } from "../../src/delivery/message";
import worker from "../../src/index";
import { orgSettings } from "../../src/org/org-settings";
import type { AttemptRecord, Exchange } from "../../src/store/attempts";
import { inflate } from "../../src/store/codec";
import { allLogShards, type LogDb, logShard } from "../../src/store/shards";

export { receiver } from "../support/receiver-client";

/** Shared by the workerd tests: the API as a client sees it, the receiver, the queue. */

export const PRODUCER_TOKEN = "test-producer-token";
export const OPERATOR_TOKEN = "test-operator-token";
export const producerAuth = { Authorization: `Bearer ${PRODUCER_TOKEN}` };

/**
 * A request to the Worker's real `fetch` handler, as a client would send it, with the
 * test's `env` (so a test can spy on a binding such as `env.DELIVERIES`), or another.
 */
export async function call(
  method: string,
  path: string,
  {
    body,
    token,
    headers = {},
    env: runEnv = env,
  }: { body?: unknown; token?: string; headers?: Record<string, string>; env?: Env } = {},
): Promise<Response> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (token !== undefined) (init.headers as Record<string, string>).Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    // A string or bytes go as they are; anything else as JSON.
    init.body = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] ??= "application/json";
  }
  return worker.fetch(new Request(`https://dispatcher.test${path}`, init), runEnv, createExecutionContext());
}

/** Issues an org API key through the operator route. */
export async function orgKey(orgId: string): Promise<string> {
  const res = await call("POST", `/v1/orgs/${orgId}/api-keys`, { token: OPERATOR_TOKEN, body: { name: "test" } });
  if (res.status !== 201) throw new Error(`api key: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { key: string }).key;
}

/** A seed-shaped `job.completed` event. */
export function jobEvent(orgId: string, jobId: string, extra: Record<string, unknown> = {}) {
  return sampleJobCompleted(orgId, jobId, extra);
}

/** The queue message ingest would produce for an event. */
export function messageFor(
  event: { type: EventType; data: { org_id: string; job_id: string } },
  webhookUrl: string | null,
): Promise<DeliveryMessage> {
  return newDeliveryMessage(event.type, event.data, event.data, webhookUrl);
}

/**
 * Watches what the Worker puts on queues (`send` and `sendBatch` alike), passing every
 * call through to the real queue. By default the two lanes events enter by: the fast
 * lane, and the bulk lane an org's events take beyond FAST_LANE_ORG_LIMIT.
 */
export function watchQueue(queues: Queue[] = [env.DELIVERIES, env.DELIVERIES_BULK]) {
  const spies = queues.map((queue) => ({ send: vi.spyOn(queue, "send"), sendBatch: vi.spyOn(queue, "sendBatch") }));
  const calls = () =>
    spies.flatMap(({ send, sendBatch }) => [
      ...send.mock.calls.map(([body, options]) => [{ body, contentType: options?.contentType }]),
      ...sendBatch.mock.calls.map(([batch]) => [...batch].map((m) => ({ body: m.body, contentType: m.contentType }))),
    ]);
  return {
    /** One entry per call, with the messages it carried. */
    calls,
    messages: () =>
      calls()
        .flat()
        .map((m) => m.body as DeliveryMessage),
    contentTypes: () =>
      calls()
        .flat()
        .map((m) => m.contentType),
    reset: () => {
      for (const { send, sendBatch } of spies) {
        send.mockClear();
        sendBatch.mockClear();
      }
    },
    restore: () => {
      for (const { send, sendBatch } of spies) {
        send.mockRestore();
        sendBatch.mockRestore();
      }
    },
  };
}

export interface ConsumerRun {
  acked: string[];
  /** Message id → the delaySeconds it was retried with. */
  retried: Map<string, number | undefined>;
  /** Resolves when the run's background work (`waitUntil`: handed-off attempts) is done. */
  background: Promise<void>;
  /** What the run sent to the slow lane (kept here, not queued: a test runs them itself). */
  toSlowLane: Array<{ body: DeliveryMessage; delaySeconds?: number }>;
  /** And to the overflow lane (an org's moves beyond its share of the slow lane). */
  toOverflowLane: Array<{ body: DeliveryMessage; delaySeconds?: number }>;
  /** What the run put back on the fast or bulk lane (deliveries it released). */
  putBack: Array<{ body: DeliveryMessage; delaySeconds?: number }>;
}

/**
 * Runs the real queue handler on messages, as the queue would deliver them:
 * `{ id, attempts }` lets a test deliver the same message again. It resolves when the
 * handler returns (as the queue sees the run end); `background` when the run's
 * `waitUntil` work is done too.
 */
export async function runConsumer(
  messages: Array<{ id: string; body: DeliveryMessage; attempts?: number }>,
  queue = "deliveries",
  runEnv: Env = env,
): Promise<ConsumerRun> {
  const batch = createMessageBatch<DeliveryMessage>(
    queue,
    messages.map((m) => ({ id: m.id, body: m.body, attempts: m.attempts ?? 1, timestamp: new Date() })),
  );
  const acked: string[] = [];
  const retried = new Map<string, number | undefined>();
  for (const message of batch.messages) {
    const [ack, retry] = [message.ack.bind(message), message.retry.bind(message)];
    vi.spyOn(message, "ack").mockImplementation(() => {
      acked.push(message.id);
      ack();
    });
    vi.spyOn(message, "retry").mockImplementation((options) => {
      retried.set(message.id, options?.delaySeconds);
      retry(options);
    });
  }
  const toSlowLane: ConsumerRun["toSlowLane"] = [];
  const toOverflowLane: ConsumerRun["toOverflowLane"] = [];
  const putBack: ConsumerRun["putBack"] = [];
  const sends = (
    [
      [runEnv.DELIVERIES_SLOW, toSlowLane],
      [runEnv.DELIVERIES_OVERFLOW, toOverflowLane],
      [runEnv.DELIVERIES, putBack],
      [runEnv.DELIVERIES_BULK, putBack],
    ] as const
  )
    // A queue a test already watches (watchQueue) keeps its spy, and its sends.
    .filter(([queue]) => !vi.isMockFunction(queue.sendBatch))
    .map(([queue, sent]) =>
      vi.spyOn(queue, "sendBatch").mockImplementation(async (requests) => {
        // What Queues refuses: more than 100 messages, or 256 KB, in one call.
        const list = [...requests];
        const bytes = list.reduce((sum, r) => sum + (r.body as DeliveryMessage).body.byteLength, 0);
        if (list.length > 100 || bytes > 256_000) throw new Error(`sendBatch: ${list.length} messages, ${bytes} B`);
        for (const r of list) sent.push({ body: r.body as DeliveryMessage, delaySeconds: r.delaySeconds });
        return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendBatchResponse;
      }),
    );
  const ctx = createExecutionContext();
  try {
    await worker.queue(batch, runEnv, ctx);
  } finally {
    for (const send of sends) send.mockRestore();
  }
  return { acked, retried, background: waitOnExecutionContext(ctx), toSlowLane, toOverflowLane, putBack };
}

/**
 * Delivers messages as the lanes would right now: a fast-lane run, then a slow-lane run
 * of what it moved there at once (fresh message ids, as the queue assigns). With the
 * default share (50), nothing these tests move takes the overflow lane: a run that sends
 * any there fails, so that no test reads a half-delivered batch as whole.
 */
export async function runLanes(
  messages: Array<{ id: string; body: DeliveryMessage; attempts?: number }>,
  runEnv: Env = env,
) {
  const fast = await runConsumer(messages, "deliveries", runEnv);
  if (fast.toOverflowLane.length > 0) throw new Error("runLanes: the run moved deliveries to the overflow lane");
  const moved = fast.toSlowLane.filter((m) => !m.delaySeconds).map((m) => ({ id: uniqueId("msg"), body: m.body }));
  const slow = moved.length > 0 ? await runConsumer(moved, "deliveries-slow", runEnv) : null;
  return { fast, slow, moved };
}

/**
 * An env whose org objects answer as the real ones, but for the methods replaced here
 * (an object that cannot take a call, or a call that does nothing).
 */
export function withOrgObjects(runEnv: Env, replaced: Record<string, (...args: never[]) => unknown>): Env {
  const namespace = runEnv.ORG_SETTINGS;
  return {
    ...runEnv,
    ORG_SETTINGS: {
      idFromName: (name: string) => namespace.idFromName(name),
      get: (id: DurableObjectId) => {
        const stub = namespace.get(id) as unknown as Record<string, unknown>;
        return new Proxy(stub, { get: (target, name: string) => replaced[name] ?? target[name] });
      },
    } as unknown as Env["ORG_SETTINGS"],
  };
}

/** The RPC methods called on any org's Durable Object from now until the test's mocks are restored. */
export function watchOrgCalls(namespace: Env["ORG_SETTINGS"] = env.ORG_SETTINGS): string[] {
  const calls: string[] = [];
  const get = namespace.get.bind(namespace);
  vi.spyOn(namespace, "get").mockImplementation((id) => {
    const stub = get(id) as unknown as Record<string, (...args: unknown[]) => unknown>;
    return new Proxy(stub, {
      get: (target, name) =>
        typeof name === "string" && typeof target[name] === "function" && !name.startsWith("_")
          ? (...args: unknown[]) => {
              calls.push(name);
              return target[name]!(...args);
            }
          : target[name as string],
    }) as never;
  });
  return calls;
}

/** A log row as the consumer would write it: a delivered attempt 1, changed by `fields`. */
export function attemptRecord(
  fields: Partial<AttemptRecord> & Pick<AttemptRecord, "delivery_id" | "org_id">,
): AttemptRecord {
  return {
    attempt: 1,
    job_id: uniqueId("job"),
    event_type: "job.completed",
    message_id: uniqueId("msg"),
    attempted_at: Date.now(),
    response_time_ms: 5,
    status_code: 200,
    outcome: "succeeded",
    error: null,
    error_detail: null,
    next_attempt_at: null,
    url: "https://example.com/hook",
    url_from_event: true,
    signatures: { zupertry: "00", standard: "v1,AA==" },
    response_headers: {},
    response_body: "{}",
    response_truncated: false,
    request_body: "{}",
    ...fields,
  };
}

export interface AttemptRow {
  delivery_id: string;
  attempt: number;
  org_id: string;
  /** The queue message that made the attempt. */
  message_id: string;
  status_code: number | null;
  outcome: string;
  error: string | null;
  next_attempt_at: number | null;
  response_time_ms: number;
  url: string | null;
  url_from_event: number | null;
  response_truncated: number;
  /** Decoded from the stored BLOBs. */
  request_body: string | null;
  exchange: Exchange | null;
  /** Bytes the row takes in its columns (BLOBs as stored, compressed). */
  stored_bytes: number;
}

/**
 * Starts a test with at least `needMs` left in the current window of a Rate Limiting
 * binding whose period is `periodMs`, and answers that window's number. The local binding
 * counts in fixed windows of its period, aligned to the epoch (miniflare's ratelimit
 * worker): a test that ran across a window's end would find its count started again.
 */
export async function freshWindow(needMs: number, periodMs = 60_000): Promise<number> {
  const left = periodMs - (Date.now() % periodMs);
  if (left < needMs) await new Promise((resolve) => setTimeout(resolve, left + 100));
  return Math.floor(Date.now() / periodMs);
}

/**
 * How many log rows each statement of a `DB.batch` call inserts: src/store/attempts.ts
 * binds a statement's rows as one JSON array (the binding keeps its values in `params`).
 */
export function rowsPerStatement(statements: readonly D1PreparedStatement[]): number[] {
  return statements
    .filter((s) => (s as unknown as { statement: string }).statement.startsWith("INSERT INTO attempts"))
    .map((s) => (JSON.parse((s as unknown as { params: [string] }).params[0]) as unknown[]).length);
}

/**
 * A log database that counts what its statements run: their SQL, and the rows D1 says
 * they read (`meta.rows_read`), to show a read stays bounded however big the log.
 */
export function countingDb(db: D1Database): { db: LogDb; runs: () => string[]; rowsRead: () => number } {
  const runs: string[] = [];
  let rowsRead = 0;
  const counted: LogDb = {
    batch: db.batch.bind(db),
    prepare: (sql) => {
      const statement = db.prepare(sql);
      return Object.assign(Object.create(statement), {
        bind: (...values: unknown[]) => {
          const bound = statement.bind(...values);
          return Object.assign(Object.create(bound), {
            run: async () => {
              const result = await bound.run();
              runs.push(sql);
              rowsRead += result.meta.rows_read;
              return result;
            },
          });
        },
      });
    },
  };
  return { db: counted, runs: () => runs, rowsRead: () => rowsRead };
}

/**
 * `n` new org ids whose logs live on `shard` (placed as every org is, by hash). A run
 * reads each shard's messages apart, so only orgs on one shard keep the batch's order.
 */
export async function orgsOnShard(shard: string, n: number): Promise<string[]> {
  const orgs: string[] = [];
  while (orgs.length < n) {
    const orgId = uniqueId("org");
    if ((await orgSettings(env, orgId).getLogShard()) === shard) orgs.push(orgId);
  }
  return orgs;
}

/** The database of an org's log shard (creating the org, and so placing it, if it is new). */
export async function logDbOf(orgId: string): Promise<D1Database> {
  return logShard(env, await orgSettings(env, orgId).getLogShard());
}

/**
 * The logged attempts of a delivery, in order, with the compressed columns decoded.
 * Every shard is read: a delivery found in two fails the test (an org lives on one).
 */
export async function attemptsOf(deliveryId: string): Promise<AttemptRow[]> {
  const found = await Promise.all(
    allLogShards(env).map(async ({ name, db }) => {
      const { results } = await db
        .prepare("SELECT * FROM attempts WHERE delivery_id = ? ORDER BY attempt")
        .bind(deliveryId)
        .run<
          Omit<AttemptRow, "request_body" | "exchange" | "stored_bytes"> & {
            request_body: number[] | null;
            exchange: number[] | null;
          }
        >();
      return { name, results };
    }),
  );
  const holding = found.filter((f) => f.results.length > 0);
  if (holding.length > 1) throw new Error(`${deliveryId} is logged in ${holding.map((f) => f.name).join(" and ")}`);
  const results = holding[0]?.results ?? [];
  return Promise.all(
    results.map(async (row) => ({
      ...row,
      request_body: row.request_body && inflate(row.request_body),
      exchange: row.exchange && (JSON.parse(inflate(row.exchange)) as Exchange),
      stored_bytes: Object.values(row).reduce<number>(
        (n, v) => n + (Array.isArray(v) ? v.length : String(v ?? "").length),
        0,
      ),
    })),
  );
}

/**
 * What the docs' snippets compute to verify X-Zupertry-Signature: lowercase hex
 * HMAC-SHA256 of the body, keyed with the secret string (the vector in signing.test.ts
 * ties this to node:crypto).
 */
export async function hmacHex(secret: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function uniqueId(prefix: string): string {
  return `${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/**
 * Fakes `Date` alone for every test of the file (the Worker runs in the test's isolate,
 * so it reads the same clock): minutes of retry delay pass at once, while timers and
 * I/O stay real. Returns `advance(seconds)`.
 */
export function fakeDate(): (seconds: number) => void {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });
  return (seconds) => vi.setSystemTime(Date.now() + seconds * 1000);
}
