/**
 * The product, unchanged, wrapped for `npm run bench`: every binding it is handed is a
 * counting proxy, so the run can say what one delivery costs (D1 round trips,
 * statements and rows, Durable Object calls, queue operations, Worker invocations)
 * without a single counter in src/. Started as `wrangler dev bench/counting/worker.ts`
 * with the product's own wrangler.toml, so every other setting is the product's.
 *
 * Counters live in this isolate's memory; `wrangler dev` runs the fetch handler, the
 * queue consumer and the Durable Objects in one process, one consumer run at a time,
 * so a queue run's D1 and Durable Object calls can be attributed to it.
 *
 * Every log shard named in LOG_SHARDS is counted (DB among them), and so are the D1
 * sessions the API reads through (`withSession`). A queue run's round trips are also
 * counted per shard, to check the per-shard group commit.
 *
 *   GET  /__bench/counters   the counters (and the D1 size: the sum over the databases of
 *                            each one's size, from its last result's meta)
 *   POST /__bench/d1-size    refresh every shard's size (one uncounted query each)
 *   POST /__bench/reset      zero them
 */

import type { DeliveryMessage } from "../../src/delivery/message";
import product, { OrgSettings as ProductOrgSettings } from "../../src/index";
import { allLogShards } from "../../src/store/shards";

/**
 * The product's Durable Object, counting the rows its SQLite writes (billed like D1's).
 * `wrangler dev` runs the objects in this Worker's isolate, so the count lands in the
 * same counters.
 */
export class OrgSettings extends ProductOrgSettings {
  constructor(ctx: DurableObjectState, env: Env) {
    const sql = ctx.storage.sql;
    const exec = sql.exec.bind(sql);
    sql.exec = ((query: string, ...bindings: unknown[]) => {
      const cursor = exec(query, ...bindings);
      counters.durableObjectRowsWritten += cursor.rowsWritten;
      return cursor;
    }) as typeof sql.exec;
    super(ctx, env);
  }
}

interface BatchStats {
  messages: number;
  d1WriteRoundTrips: number;
  d1ReadRoundTrips: number;
  /** Reads for a take-over's stored event (src/store/stalled.ts): rare, one more per shard. */
  d1TakeOverReadRoundTrips: number;
  /** Round trips per shard (binding name); a shard with one is "touched". */
  shards: Map<string, { reads: number; writes: number }>;
  /** RPC calls per org and method. */
  orgCalls: Map<string, number>;
}

function zero() {
  return {
    fetchInvocations: 0,
    queueInvocations: 0,
    queueMessagesWritten: 0,
    /** Of those, to the slow lane (moved and handed-off deliveries)… */
    slowLaneMessagesWritten: 0,
    /** …and to the overflow lane (those beyond their org's share of the slow lane). */
    overflowLaneMessagesWritten: 0,
    /** …and, at ingest, to the bulk lane (an org's events beyond FAST_LANE_ORG_LIMIT). */
    bulkLaneMessagesWritten: 0,
    queueMessagesRead: 0,
    queueMessagesAcked: 0,
    queueMessagesRetried: 0,
    d1RoundTrips: 0,
    d1Statements: 0,
    d1RowsRead: 0,
    d1RowsWritten: 0,
    /** Round trips per database (binding name), the API's included. */
    d1RoundTripsByDatabase: {} as Record<string, number>,
    durableObjectCalls: 0,
    durableObjectCallsByMethod: {} as Record<string, number>,
    durableObjectRowsWritten: 0,
    batches: 0,
    /** Batches per lane. */
    batchesByQueue: {} as Record<string, number>,
    maxD1WriteRoundTripsPerBatch: 0,
    maxD1ReadRoundTripsPerBatch: 0,
    /** Per shard and queue batch: the group commit is per shard (src/delivery/shard-groups.ts). */
    maxD1WriteRoundTripsPerShardPerBatch: 0,
    maxD1ReadRoundTripsPerShardPerBatch: 0,
    /** The most shards one batch touched, and the most reads beyond one per touched shard. */
    maxShardsTouchedPerBatch: 0,
    maxD1ReadsBeyondShardsTouchedPerBatch: 0,
    /** Sums over queue batches (divide by `batches` for averages). */
    sumD1ReadRoundTripsPerBatch: 0,
    sumD1WriteRoundTripsPerBatch: 0,
    sumD1TakeOverReadRoundTrips: 0,
    sumShardsTouchedPerBatch: 0,
    /** The most calls of one method on one org's object in one batch. */
    maxOrgCallsPerMethodPerBatch: 0,
    batchSizes: {} as Record<string, number>,
    /** Where a queue run's time goes (ms, summed over runs). */
    msInQueueRuns: 0,
    msInD1: 0,
    msInSettingsCalls: 0,
    msInOutboundFetch: 0,
    outboundFetches: 0,
  };
}

async function timed<T>(key: "msInD1" | "msInSettingsCalls" | "msInOutboundFetch", work: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await work();
  } finally {
    counters[key] += performance.now() - start;
  }
}

// Outbound webhook POSTs: counted and timed (the product calls the global fetch).
const productFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  counters.outboundFetches++;
  return timed("msInOutboundFetch", () => productFetch(input, init));
};

let counters = zero();
/** Each database's size (`meta.size_after` is per database), by binding name. */
const d1Sizes = new Map<string, number>();
const d1SizeBytes = () => [...d1Sizes.values()].reduce((a, b) => a + b, 0);

const isWrite = (sql: string) => /^\s*(INSERT|UPDATE|DELETE|REPLACE)\b/i.test(sql);
/** The take-over's read of a stored event (readStoredEvents): the only read of request_body in a run. */
const isTakeOverRead = (sql: string) => /^\s*SELECT\b[^;]*\brequest_body\b/i.test(sql);

/** A D1 binding or one of its sessions, counted for the database `name`. */
interface Target {
  name: string;
  run: BatchStats | null;
}

function countResult(target: Target, meta: D1Meta | undefined): void {
  counters.d1RowsRead += meta?.rows_read ?? 0;
  counters.d1RowsWritten += meta?.rows_written ?? 0;
  if (meta?.size_after) d1Sizes.set(target.name, meta.size_after);
}

function roundTrip({ name, run }: Target, sql: string | null, statements: number): void {
  counters.d1RoundTrips++;
  counters.d1Statements += statements;
  counters.d1RoundTripsByDatabase[name] = (counters.d1RoundTripsByDatabase[name] ?? 0) + 1;
  if (!run) return;
  const write = sql === null || isWrite(sql);
  const shard = run.shards.get(name) ?? { reads: 0, writes: 0 };
  run.shards.set(name, shard);
  if (write) {
    run.d1WriteRoundTrips++;
    shard.writes++;
  } else {
    run.d1ReadRoundTrips++;
    shard.reads++;
    if (isTakeOverRead(sql)) run.d1TakeOverReadRoundTrips++;
  }
}

const inner = new WeakMap<object, D1PreparedStatement>();

function statement(stmt: D1PreparedStatement, sql: string, target: Target): D1PreparedStatement {
  const wrapped = {
    bind: (...values: unknown[]) => statement(stmt.bind(...values), sql, target),
    async run() {
      roundTrip(target, sql, 1);
      const result = await timed("msInD1", () => stmt.run());
      countResult(target, result.meta);
      return result;
    },
    async all() {
      return wrapped.run();
    },
    async first(column?: string) {
      const { results } = await wrapped.run();
      const row = results[0] as Record<string, unknown> | undefined;
      return row === undefined ? null : column === undefined ? row : row[column];
    },
    raw: (options?: { columnNames?: boolean }) => stmt.raw(options as never),
  };
  inner.set(wrapped, stmt);
  return wrapped as unknown as D1PreparedStatement;
}

/** What a D1 binding and a session share: statements and batches, counted alike. */
function counting(db: Pick<D1Database, "prepare" | "batch">, target: Target) {
  return {
    prepare: (sql: string) => statement(db.prepare(sql), sql, target),
    async batch(statements: D1PreparedStatement[]) {
      roundTrip(target, null, statements.length);
      const results = await timed("msInD1", () => db.batch(statements.map((s) => inner.get(s) ?? s)));
      for (const r of results) countResult(target, r.meta);
      return results;
    },
  };
}

/** The database bound as `name`; its sessions (the API's log reads) are counted too. */
function database(db: D1Database, name: string, run: BatchStats | null): D1Database {
  const target = { name, run };
  return {
    ...counting(db, target),
    exec: (sql: string) => db.exec(sql),
    dump: () => db.dump(),
    withSession(constraint?: string) {
      const session = db.withSession(constraint as never);
      return { ...counting(session, target), getBookmark: () => session.getBookmark() };
    },
  } as unknown as D1Database;
}

/** Every bound log shard (the product's own list), and DB among them always: it holds the API keys. */
function boundDatabases(env: Env): Array<[string, D1Database]> {
  const shards = allLogShards(env).map(({ name, db }): [string, D1Database] => [name, db]);
  return shards.some(([name]) => name === "DB") ? shards : [["DB", env.DB], ...shards];
}

/** Reads every database's current size (uncounted: not the product's). */
async function refreshSizes(env: Env): Promise<void> {
  await Promise.all(
    boundDatabases(env).map(async ([name, db]) => {
      const { meta } = await db.prepare("SELECT 1").run();
      if (meta.size_after) d1Sizes.set(name, meta.size_after);
    }),
  );
}

function queue(q: Queue, lane: "fast" | "bulk" | "slow" | "overflow" = "fast"): Queue {
  const written = (n: number) => {
    counters.queueMessagesWritten += n;
    if (lane === "slow") counters.slowLaneMessagesWritten += n;
    if (lane === "overflow") counters.overflowLaneMessagesWritten += n;
    if (lane === "bulk") counters.bulkLaneMessagesWritten += n;
  };
  return {
    async send(body: unknown, options?: QueueSendOptions) {
      written(1);
      return q.send(body, options);
    },
    async sendBatch(messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) {
      const list = [...messages];
      written(list.length);
      return q.sendBatch(list, options);
    },
  } as Queue;
}

/** Every public method of the object is an RPC call: one billed request each. */
const RPC_METHODS = new Set(
  Object.getOwnPropertyNames(ProductOrgSettings.prototype).filter((name) => name !== "constructor"),
);

function settingsNamespace(ns: Env["ORG_SETTINGS"], run: BatchStats | null): Env["ORG_SETTINGS"] {
  const names = new Map<string, string>();
  return {
    idFromName(name: string) {
      const id = ns.idFromName(name);
      names.set(id.toString(), name);
      return id;
    },
    get(id: DurableObjectId) {
      const stub = ns.get(id);
      const org = names.get(id.toString()) ?? id.toString();
      // Only the RPC methods the product calls are counted; each is one billed request.
      return new Proxy(stub, {
        get(target, prop) {
          if (typeof prop !== "string" || !RPC_METHODS.has(prop))
            return (target as unknown as Record<string | symbol, unknown>)[prop];
          return (...args: unknown[]) => {
            counters.durableObjectCalls++;
            counters.durableObjectCallsByMethod[prop] = (counters.durableObjectCallsByMethod[prop] ?? 0) + 1;
            const key = `${org} ${prop}`;
            if (run) run.orgCalls.set(key, (run.orgCalls.get(key) ?? 0) + 1);
            return timed("msInSettingsCalls", async () =>
              (target as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[prop]!(...args),
            );
          };
        },
      });
    },
  } as unknown as Env["ORG_SETTINGS"];
}

/**
 * The env the product sees. A queue run gets its own, so that what it does (its
 * background work included) is counted to it even while another lane's run goes on.
 */
function counted(env: Env, run: BatchStats | null): Env {
  return {
    ...env,
    ...Object.fromEntries(boundDatabases(env).map(([name, db]) => [name, database(db, name, run)])),
    DELIVERIES: queue(env.DELIVERIES),
    DELIVERIES_BULK: queue(env.DELIVERIES_BULK, "bulk"),
    DELIVERIES_SLOW: queue(env.DELIVERIES_SLOW, "slow"),
    DELIVERIES_OVERFLOW: queue(env.DELIVERIES_OVERFLOW, "overflow"),
    ORG_SETTINGS: settingsNamespace(env.ORG_SETTINGS, run),
  };
}

/** One env for every fetch: `readConfig` caches its parse per env object. */
const fetchEnvs = new WeakMap<Env, Env>();

/** The batch the consumer sees: the same messages, with ack/retry counted. */
function countedBatch(batch: MessageBatch<DeliveryMessage>): MessageBatch<DeliveryMessage> {
  const messages = batch.messages.map((m) => ({
    get id() {
      return m.id;
    },
    get body() {
      return m.body;
    },
    get attempts() {
      return m.attempts;
    },
    get timestamp() {
      return m.timestamp;
    },
    ack() {
      counters.queueMessagesAcked++;
      m.ack();
    },
    retry(options?: QueueRetryOptions) {
      counters.queueMessagesRetried++;
      m.retry(options);
    },
  }));
  return {
    queue: batch.queue,
    messages,
    ackAll() {
      counters.queueMessagesAcked += messages.length;
      batch.ackAll();
    },
    retryAll(options?: QueueRetryOptions) {
      counters.queueMessagesRetried += messages.length;
      batch.retryAll(options);
    },
  } as unknown as MessageBatch<DeliveryMessage>;
}

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/__bench/counters") {
      return Response.json({
        ...counters,
        d1SizeBytes: d1SizeBytes(),
        d1SizeBytesByDatabase: Object.fromEntries(d1Sizes),
      });
    }
    if (pathname === "/__bench/d1-size" && request.method === "POST") {
      await refreshSizes(env);
      return Response.json({ d1SizeBytes: d1SizeBytes(), d1SizeBytesByDatabase: Object.fromEntries(d1Sizes) });
    }
    if (pathname === "/__bench/reset" && request.method === "POST") {
      counters = zero();
      return Response.json({ ok: true });
    }
    counters.fetchInvocations++;
    let wrapped = fetchEnvs.get(env);
    if (!wrapped) {
      wrapped = counted(env, null);
      fetchEnvs.set(env, wrapped);
    }
    return product.fetch(request, wrapped, ctx);
  },

  async queue(batch, env, ctx) {
    counters.queueInvocations++;
    counters.queueMessagesRead += batch.messages.length;
    counters.batchSizes[batch.messages.length] = (counters.batchSizes[batch.messages.length] ?? 0) + 1;
    counters.batchesByQueue[batch.queue] = (counters.batchesByQueue[batch.queue] ?? 0) + 1;
    const stats: BatchStats = {
      messages: batch.messages.length,
      d1WriteRoundTrips: 0,
      d1ReadRoundTrips: 0,
      d1TakeOverReadRoundTrips: 0,
      shards: new Map(),
      orgCalls: new Map(),
    };
    const started = performance.now();
    try {
      await product.queue(countedBatch(batch), counted(env, stats), ctx);
    } finally {
      counters.msInQueueRuns += performance.now() - started;
      counters.batches++;
      counters.maxD1WriteRoundTripsPerBatch = Math.max(counters.maxD1WriteRoundTripsPerBatch, stats.d1WriteRoundTrips);
      counters.maxD1ReadRoundTripsPerBatch = Math.max(counters.maxD1ReadRoundTripsPerBatch, stats.d1ReadRoundTrips);
      const shards = [...stats.shards.values()];
      counters.maxD1WriteRoundTripsPerShardPerBatch = Math.max(
        counters.maxD1WriteRoundTripsPerShardPerBatch,
        ...shards.map((s) => s.writes),
      );
      counters.maxD1ReadRoundTripsPerShardPerBatch = Math.max(
        counters.maxD1ReadRoundTripsPerShardPerBatch,
        ...shards.map((s) => s.reads),
      );
      counters.maxShardsTouchedPerBatch = Math.max(counters.maxShardsTouchedPerBatch, shards.length);
      counters.maxD1ReadsBeyondShardsTouchedPerBatch = Math.max(
        counters.maxD1ReadsBeyondShardsTouchedPerBatch,
        stats.d1ReadRoundTrips - stats.d1TakeOverReadRoundTrips - shards.length,
      );
      counters.sumD1ReadRoundTripsPerBatch += stats.d1ReadRoundTrips;
      counters.sumD1WriteRoundTripsPerBatch += stats.d1WriteRoundTrips;
      counters.sumD1TakeOverReadRoundTrips += stats.d1TakeOverReadRoundTrips;
      counters.sumShardsTouchedPerBatch += shards.length;
      counters.maxOrgCallsPerMethodPerBatch = Math.max(
        counters.maxOrgCallsPerMethodPerBatch,
        ...stats.orgCalls.values(),
        0,
      );
    }
  },

  scheduled: product.scheduled,
} satisfies ExportedHandler<Env, DeliveryMessage>;
