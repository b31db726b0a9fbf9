/**
 * `npm run bench`: ingest and delivery speed, latency, memory, storage and cost per
 * delivery, measured on this machine against the runtime's own limit in the same run.
 *
 * It starts everything itself and stops it all at the end:
 *   - the dispatcher in `wrangler dev` with the production settings (only
 *     ALLOW_INSECURE_WEBHOOK_URLS=true, for the local receiver), entered through
 *     bench/counting/worker.ts, which counts what the product asks of each binding;
 *   - the control Worker (bench/control): the runtime's own ceiling for ingest (parse
 *     and answer 202) and for delivery (queue + outbound fetch, nothing else);
 *   - a Node receiver on 127.0.0.1 that answers 200 at once (bench/receiver.mjs);
 *   - autocannon as the load generator.
 * It prints one table and writes it as JSON to bench/results/latest.json.
 */

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import WebSocket from "ws";
import { type Dispatcher, root, startDispatcher as startWranglerDev, stopProcess } from "../scripts/wrangler-dev";
import { sampleJobData } from "../src/api/sample-event";
import { PRICES, PRICES_DATE } from "./prices";

/**
 * Events in the delivery burst. With its inspector on, `wrangler dev` relays every
 * inspector message (about four per outbound fetch) from its proxy workerd to its Node
 * process as an HTTP request of its own, and Node falls behind: each request waiting for
 * it holds a connection, an open file at each end, until Node has answered it and the
 * connection has idled out. A burst of 4,000 through the control held up to ~16,000 open
 * files in wrangler's Node and as many in its proxy workerd (measured 2026-11-30), against
 * this machine's limit of 20,000 a process, and runs whose control went faster crossed it:
 * their requests were reset, or answered "Your worker restarted mid-request". 3,000 keeps
 * it near 12,000; the report prints the peak (`watchOpenFiles`), and a bench that fails
 * says how close it came. Each Worker's next burst waits 8 s, for those connections to close.
 */
const DELIVERY_EVENTS = 3000;
/**
 * Delivery bursts, each the dispatcher's and then the control's: the target is the
 * median pair, as this machine's speed drifts between (and during) minutes.
 */
const DELIVERY_PAIRS = 3;
const BATCH = 100;
const ORGS = 5;
const INGEST_SECONDS = 10;
const INGEST_ROUNDS = 2;
const CONNECTIONS = 50;
const STEADY_EVENTS = 200;
const STEADY_RATE = 20; // events/s: well under the local delivery rate even on a bad run (85/s)
/** Noisy neighbour: per org, 5 orgs, one of them (in the second run) hanging. */
const NEIGHBOUR_EVENTS_PER_ORG = 400;
/** D1 round trips by shard count: a modest burst over enough orgs that every shard gets some. */
const SHARD_COUNTS = [1, 2, 4] as const;
const SHARD_EVENTS = 1000;
const SHARD_ORGS = 20;
const SHARDS_CONFIG = ".bench-shards.wrangler.toml";
/** Producer flood: one org's events at once, then 4 other orgs' events each (see floodPhase). */
const FLOOD_EVENTS = 3000;
const FLOOD_OTHERS_PER_ORG = 100;
const FLOOD_OTHER_ORGS = 4;
const ONE_LANE_CONFIG = ".bench-one-lane.wrangler.toml";
/** Deliveries/s with `zupertry listen` sessions connected: per burst, and bursts of each kind. */
const LISTENER_EVENTS = 2000;
const LISTENER_ROUNDS = 3;

const PHASES = ["ingest", "delivery", "steady", "neighbour", "flood", "shards", "listener"] as const;
type Phase = (typeof PHASES)[number];

/**
 * `npm run bench` runs every phase with wrangler.toml as it is. For exploring:
 *   --phases delivery,neighbour   only these phases (the report leaves the others out)
 *   --batch-size 50               the fast lane's max_batch_size, for the product and the control
 *   --no-inspector                every `wrangler dev` without its DevTools inspector (see INSPECTOR)
 */
const args = parseArgs({
  options: {
    phases: { type: "string" },
    "batch-size": { type: "string" },
    "no-inspector": { type: "boolean" },
  },
}).values;
/**
 * `wrangler dev` starts a DevTools inspector proxy that turns on the runtime's network
 * events and writes each one to a debug log in wrangler's Node: four per outbound fetch.
 * Production has no such thing, and on this machine it costs more CPU than the Worker
 * itself (docs/PERFORMANCE.md). The targets were set and are measured with it, as
 * `wrangler dev` starts; `--no-inspector` measures without it. Wrangler has no flag for
 * that: it leaves the proxy out in a VS Code debug terminal, which it detects by
 * VSCODE_INSPECTOR_OPTIONS, so the bench sets that variable. Each start is checked.
 */
const INSPECTOR = args["no-inspector"] !== true;
if (INSPECTOR) delete process.env.VSCODE_INSPECTOR_OPTIONS;
else process.env.VSCODE_INSPECTOR_OPTIONS = "{}";

/** `wrangler dev`, checked to run with or without its inspector as INSPECTOR says. */
async function startDispatcher(...params: Parameters<typeof startWranglerDev>): Promise<Dispatcher> {
  const started = await startWranglerDev(...params);
  const listening = await fetch(`http://127.0.0.1:${started.inspectorPort}/json/version`).then(
    () => true,
    () => false,
  );
  if (listening !== INSPECTOR) {
    await started.stop();
    throw new Error(
      `wrangler dev started with its inspector ${listening ? "on" : "off"}, not ${INSPECTOR ? "on" : "off"}: ` +
        "this wrangler may no longer read VSCODE_INSPECTOR_OPTIONS",
    );
  }
  return started;
}

const phases = new Set<Phase>((args.phases?.split(",") as Phase[] | undefined) ?? PHASES);
const PRODUCT_CONFIG = configWithBatchSize("wrangler.toml", ".bench-product.wrangler.toml");
const CONTROL_CONFIG = configWithBatchSize("bench/control/wrangler.toml", "bench/control/.bench.wrangler.toml");
const { maxBatchTimeoutMs: BATCH_TIMEOUT_MS, maxBatchSize: BATCH_SIZE } = consumerSettings(PRODUCT_CONFIG);

/** What bench/counting/worker.ts counts (GET /__bench/counters). */
interface Counters {
  fetchInvocations: number;
  queueInvocations: number;
  queueMessagesWritten: number;
  slowLaneMessagesWritten: number;
  overflowLaneMessagesWritten: number;
  bulkLaneMessagesWritten: number;
  queueMessagesRead: number;
  queueMessagesAcked: number;
  queueMessagesRetried: number;
  d1RoundTrips: number;
  d1Statements: number;
  d1RowsRead: number;
  d1RowsWritten: number;
  d1RoundTripsByDatabase: Record<string, number>;
  durableObjectCalls: number;
  durableObjectCallsByMethod: Record<string, number>;
  durableObjectRowsWritten: number;
  batches: number;
  batchesByQueue: Record<string, number>;
  maxD1WriteRoundTripsPerBatch: number;
  maxD1ReadRoundTripsPerBatch: number;
  maxD1WriteRoundTripsPerShardPerBatch: number;
  maxD1ReadRoundTripsPerShardPerBatch: number;
  maxShardsTouchedPerBatch: number;
  /** The most state reads one batch made beyond one per shard it touched (take-over reads apart). */
  maxD1ReadsBeyondShardsTouchedPerBatch: number;
  sumD1ReadRoundTripsPerBatch: number;
  sumD1WriteRoundTripsPerBatch: number;
  sumD1TakeOverReadRoundTrips: number;
  sumShardsTouchedPerBatch: number;
  maxOrgCallsPerMethodPerBatch: number;
  batchSizes: Record<string, number>;
  d1SizeBytes: number;
}

async function main() {
  checkControlMatchesProduct();
  const receiver = await startReceiver();
  const control = await startDispatcher({}, { config: CONTROL_CONFIG, migrate: false });
  const openFiles = watchOpenFiles();
  let dispatcher: Dispatcher | undefined;
  let memory: ReturnType<typeof watchMemory> | undefined;
  const measured: Measured = {};
  try {
    if (phases.has("ingest")) measured.ingest = await ingestPhase(control);
    if (phases.has("delivery") || phases.has("steady")) {
      dispatcher = await startDispatcher(
        { ALLOW_INSECURE_WEBHOOK_URLS: "true" },
        { script: "bench/counting/worker.ts", config: PRODUCT_CONFIG },
      );
      memory = watchMemory(dispatcher.pid);
      if (phases.has("delivery")) {
        const pairs: DeliveryPair[] = [];
        for (let pair = 1; pair <= DELIVERY_PAIRS; pair++) {
          log(`delivery ${pair}/${DELIVERY_PAIRS}: ${DELIVERY_EVENTS} events through /v1/events/batch`);
          const delivery = await deliver(dispatcher, receiver);
          log(`delivery ceiling ${pair}/${DELIVERY_PAIRS}: the same events through the control's queue and fetch`);
          pairs.push({ delivery, ceiling: await deliverControl(control, receiver) });
          await sleep(8000); // the bursts' lingering sockets close (see DELIVERY_EVENTS)
        }
        measured.delivery = { pairs, fetchOnlyPerSecond: await outboundFetchCeiling(control, receiver) };
      }
      if (phases.has("steady")) {
        log(`steady latency: ${STEADY_EVENTS} events at ${STEADY_RATE}/s`);
        measured.steady = await steadyLatency(dispatcher, receiver);
      }
      measured.peakKiB = memory.peakKiB();
      memory.stop();
      await dispatcher.stop();
    }
    if (phases.has("neighbour")) measured.neighbour = await neighbourPhase(receiver);
    if (phases.has("flood")) measured.flood = await floodPhase(receiver);
    if (phases.has("shards")) measured.shards = await shardsPhase(receiver);
    if (phases.has("listener")) measured.listener = await listenerPhase(receiver);
    measured.openFiles = openFiles.peak();
    const result = report(measured);
    mkdirSync(join(root, "bench/results"), { recursive: true });
    const complete = PHASES.every((p) => phases.has(p)) && args["batch-size"] === undefined && INSPECTOR;
    writeFileSync(
      join(root, complete ? "bench/results/latest.json" : "bench/results/partial.tmp.json"),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    print(result, complete);
  } catch (error) {
    for (const [name, d] of [
      ["control", control],
      ["dispatcher", dispatcher],
    ] as const) {
      if (d) console.error(`--- ${name} output (end) ---\n${d.output().slice(-4000)}`);
    }
    const { files, process: name } = openFiles.peak();
    console.error(`open files, the peak in one process: ${files} (${name}); the limit: ${openFilesLimit()}`);
    throw error;
  } finally {
    memory?.stop();
    openFiles.stop();
    await Promise.all([dispatcher?.stop(), control.stop(), stopProcess(receiver.child)]);
    for (const file of [
      ".bench-ingest.wrangler.toml",
      ".bench-product.wrangler.toml",
      SHARDS_CONFIG,
      ONE_LANE_CONFIG,
      "bench/control/.bench.wrangler.toml",
    ]) {
      rmSync(join(root, file), { force: true });
    }
  }
}

interface Measured {
  ingest?: { control: IngestMean; controlQueued: IngestMean; product: IngestMean };
  delivery?: { pairs: DeliveryPair[]; fetchOnlyPerSecond: number };
  steady?: { p50Ms: number; p99Ms: number };
  neighbour?: { healthy: NeighbourRun; noisy: NeighbourRun };
  flood?: FloodPhase;
  shards?: ShardRun[];
  listener?: ListenerPhase;
  peakKiB?: number;
  openFiles?: ReturnType<ReturnType<typeof watchOpenFiles>["peak"]>;
}

async function ingestPhase(control: Dispatcher): Promise<NonNullable<Measured["ingest"]>> {
  // Ingest is measured on the product without its local consumers: `wrangler dev` runs
  // the consumers on the same thread as the ingest, which production never does.
  const ingestOnly = await startDispatcher({ ALLOW_INSECURE_WEBHOOK_URLS: "true" }, { config: ingestOnlyConfig() });
  try {
    const controlRounds: IngestResult[] = [];
    const queuedRounds: IngestResult[] = [];
    const productRounds: IngestResult[] = [];
    for (let round = 1; round <= INGEST_ROUNDS; round++) {
      log(`ingest round ${round}/${INGEST_ROUNDS}: control route, control route + Queue.send, POST /v1/events`);
      controlRounds.push(await ingest(`${control.url}/v1/events`, {}));
      queuedRounds.push(await ingest(`${control.url}/v1/events/queued`, {}));
      productRounds.push(
        await ingest(`${ingestOnly.url}/v1/events`, { Authorization: `Bearer ${ingestOnly.producerToken}` }),
      );
    }
    return { control: mean(controlRounds), controlQueued: mean(queuedRounds), product: mean(productRounds) };
  } finally {
    await ingestOnly.stop();
  }
}

type TomlTable = Record<string, unknown>;
type ConsumerTable = { queue: string; max_batch_size: number; max_batch_timeout: number };

function readToml(config: string): TomlTable {
  return parseToml(readFileSync(join(root, config), "utf8")) as TomlTable;
}

function consumersOf(config: TomlTable): ConsumerTable[] {
  return ((config.queues as TomlTable | undefined)?.consumers ?? []) as ConsumerTable[];
}

/** The fast lane's consumer: `deliveries` in the product, `bench-control` in the control. */
function fastConsumer(config: TomlTable): ConsumerTable {
  const consumer = consumersOf(config).find((c) => c.queue === "deliveries" || c.queue === "bench-control");
  if (!consumer) throw new Error("no fast-lane consumer in the config");
  return consumer;
}

/** `config` itself, or (with --batch-size) a copy beside it with that fast-lane batch size. */
function configWithBatchSize(config: string, copy: string): string {
  if (args["batch-size"] === undefined) return config;
  const table = readToml(config);
  fastConsumer(table).max_batch_size = Number(args["batch-size"]);
  // The bulk lane is the fast lane for floods: the same settings (test/node/contract.test.ts).
  const bulk = consumersOf(table).find((c) => c.queue === "deliveries-bulk");
  if (bulk) bulk.max_batch_size = Number(args["batch-size"]);
  writeFileSync(join(root, copy), `# Generated by bench/run.ts (--batch-size).\n${stringifyToml(table)}`);
  return copy;
}

/** A config's fast-lane consumer settings. */
function consumerSettings(config: string): { maxBatchSize: number; maxBatchTimeoutMs: number } {
  const consumer = fastConsumer(readToml(config));
  return { maxBatchSize: consumer.max_batch_size, maxBatchTimeoutMs: consumer.max_batch_timeout * 1000 };
}

/** The control must run like the product: the same consumer settings and front door. */
function checkControlMatchesProduct(): void {
  const control = consumerSettings(CONTROL_CONFIG);
  if (control.maxBatchSize !== BATCH_SIZE || control.maxBatchTimeoutMs !== BATCH_TIMEOUT_MS) {
    throw new Error(
      "bench/control/wrangler.toml must use the product's consumer settings (max_batch_size, max_batch_timeout)",
    );
  }
  const frontDoor = (config: string) => {
    const { directory: _, ...assets } = (readToml(config).assets ?? {}) as TomlTable;
    return JSON.stringify(assets);
  };
  if (frontDoor(CONTROL_CONFIG) !== frontDoor(PRODUCT_CONFIG)) {
    throw new Error(
      "bench/control/wrangler.toml must use the product's [assets] settings (the same requests reach the Worker)",
    );
  }
}

/** The product's config without its queue consumers, beside it (relative paths hold). */
function ingestOnlyConfig(): string {
  const table = readToml(PRODUCT_CONFIG);
  delete (table.queues as TomlTable).consumers;
  const file = ".bench-ingest.wrangler.toml";
  writeFileSync(
    join(root, file),
    `# Generated by bench/run.ts: the product's config without its queue consumers.\n${stringifyToml(table)}`,
  );
  return file;
}

// ---- the receiver ------------------------------------------------------------------

async function startReceiver() {
  const child = spawn(process.execPath, [join(root, "bench/receiver.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve) =>
    createInterface({ input: child.stdout! }).once("line", (line) =>
      resolve((JSON.parse(line) as { listening: number }).listening),
    ),
  );
  const base = `http://127.0.0.1:${port}`;
  const stats = async () => (await (await fetch(`${base}/stats`)).json()) as ReceiverStats;
  return {
    url: `${base}/hook`,
    base,
    child,
    stats,
    reset: async () => void (await fetch(`${base}/reset`, { method: "POST" })),
    async waitFor(count: number, timeoutMs = 10 * 60_000): Promise<ReceiverStats> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const now = await stats();
        if (now.distinct >= count) return now;
        if (Date.now() > deadline) throw new Error(`only ${now.distinct} of ${count} arrived`);
        await sleep(50);
      }
    },
  };
}

interface ReceiverStats {
  requests: number;
  distinct: number;
  firstAt: number;
  lastAt: number;
  p50: number | null;
  p99: number | null;
}

// ---- ingest ------------------------------------------------------------------------

interface IngestResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  total: number;
  bodyBytes: number;
}

/**
 * A seed-shaped job.completed, a new job each time. Its output_url is a signed storage
 * URL (hex signature), so it compresses like a real one; `size` pads it to that many
 * bytes of body (the ingest benchmark's 1 KB), otherwise it is the seed's own shape.
 */
let jobCounter = 0;
function seedEvent(orgId: string, webhookUrl: string, size?: number): Record<string, unknown> {
  const jobId = `job_${process.pid}_${++jobCounter}`;
  const signature = Array.from({ length: 64 }, (_, i) => ((i * 7919 + jobCounter) % 16).toString(16)).join("");
  const data: Record<string, unknown> = sampleJobData(orgId, jobId, {
    output_url: `https://storage.googleapis.com/zupertry-outputs/${jobId}.png?X-Goog-Signature=${signature}`,
    sent_at: Date.now(),
  });
  const event = { type: "job.completed", data, webhook_url: webhookUrl };
  if (size !== undefined) {
    const missing = size - Buffer.byteLength(JSON.stringify(event));
    if (missing > 0) {
      const pad = "0123456789abcdef".repeat(Math.ceil(missing / 16)).slice(0, Math.max(0, missing - 5));
      data.output_url += `&pad=${pad}`;
    }
  }
  return event;
}

async function ingest(url: string, headers: Record<string, string>): Promise<IngestResult> {
  await quiet(); // the last round's leftovers (with the inspector on: the D1 writes' network events)
  // One body template; autocannon gives each request its own job id ([<id>]).
  const body = JSON.stringify({
    ...seedEvent("org_bench_ingest", "http://127.0.0.1:9/unused", 1024),
    data: { ...(seedEvent("org_bench_ingest", "", 1024).data as object), job_id: "job_[<id>]" },
  });
  const result = await autocannon({
    url,
    method: "POST",
    connections: CONNECTIONS,
    duration: INGEST_SECONDS,
    idReplacement: true,
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  return {
    requestsPerSecond: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    total: result.requests.total,
    bodyBytes: Buffer.byteLength(body),
  };
}

function mean(rounds: IngestResult[]): IngestResult & { rounds: number[] } {
  const avg = (pick: (r: IngestResult) => number) =>
    Math.round(rounds.reduce((n, r) => n + pick(r), 0) / rounds.length);
  return {
    requestsPerSecond: avg((r) => r.requestsPerSecond),
    p50Ms: avg((r) => r.p50Ms),
    p99Ms: avg((r) => r.p99Ms),
    errors: rounds.reduce((n, r) => n + r.errors, 0),
    non2xx: rounds.reduce((n, r) => n + r.non2xx, 0),
    total: rounds.reduce((n, r) => n + r.total, 0),
    bodyBytes: rounds[0]!.bodyBytes,
    rounds: rounds.map((r) => r.requestsPerSecond),
  };
}

/**
 * Waits until this machine's CPUs are under 10% busy over half a second (at most
 * `maxMs`; then it measures anyway and says so). Linux only: elsewhere it returns at once.
 */
async function quiet(maxMs = 60_000): Promise<void> {
  const sample = () => {
    // /proc/stat's first line: user nice system idle iowait irq softirq steal …
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]!;
    return { busy, all: busy + f[3]! + f[4]! };
  };
  let last: ReturnType<typeof sample>;
  try {
    last = sample();
  } catch {
    return;
  }
  const deadline = Date.now() + maxMs;
  for (;;) {
    await sleep(500);
    const now = sample();
    const busy = (now.busy - last.busy) / Math.max(1, now.all - last.all);
    if (busy < 0.1) return;
    if (Date.now() > deadline) {
      log(`the machine is still ${pct(busy)} busy after ${maxMs / 1000} s; measuring anyway`);
      return;
    }
    last = now;
  }
}

/**
 * Waits until the consumer has taken every queued message (reads stop changing), and
 * answers the counters then.
 */
async function drained(dispatcher: Dispatcher, timeoutMs = 10 * 60_000): Promise<Counters> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  for (;;) {
    const counters = await getCounters(dispatcher);
    if (counters.queueMessagesRead < last) {
      throw new Error(`the counters went back (the worker restarted?)\n${dispatcher.output().slice(-3000)}`);
    }
    if (counters.queueMessagesAcked >= counters.queueMessagesWritten && counters.queueMessagesRead === last) {
      return counters;
    }
    if (Date.now() > deadline)
      throw new Error(`the queue did not drain: ${JSON.stringify(counters)}\n${dispatcher.output().slice(-3000)}`);
    last = counters.queueMessagesRead;
    await sleep(2000);
  }
}

// ---- delivery end to end -----------------------------------------------------------

interface DeliveryResult {
  events: number;
  seconds: number;
  deliveriesPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  counters: Counters;
  d1BytesPerDelivery: number;
}

/** One dispatcher burst and the control's burst right after it. */
interface DeliveryPair {
  delivery: DeliveryResult;
  ceiling: { seconds: number; deliveriesPerSecond: number };
}

type Receiver = Awaited<ReturnType<typeof startReceiver>>;

/**
 * Posts `count` events through /v1/events/batch, 8 requests in flight, and waits until
 * `expected` (default: all) have arrived at the receiver's measured path. It starts once
 * the machine is quiet, so that no burst pays for the last one's leftovers (with
 * wrangler's inspector on, its Node works through a burst's inspector messages for seconds
 * after it ended, and slowed whichever Worker's burst came next).
 */
async function burst(
  base: string,
  token: string | null,
  receiver: Receiver,
  count: number,
  orgOf: (i: number) => string,
  {
    urlOf = () => receiver.url,
    expected = count,
    ready,
  }: { urlOf?: (i: number) => string; expected?: number; ready?: () => Promise<void> } = {},
) {
  await quiet();
  await ready?.();
  await receiver.reset();
  const started = Date.now();
  const requests = Array.from({ length: count / BATCH }, (_, b) => async () => {
    const events = Array.from({ length: BATCH }, (_, i) => seedEvent(orgOf(b * BATCH + i), urlOf(b * BATCH + i)));
    const res = await fetch(`${base}/v1/events/batch`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ events }),
    });
    if (res.status !== 202) throw new Error(`batch ingest: ${res.status} ${await res.text()}`);
  });
  await inParallel(requests, 8);
  const stats = await receiver.waitFor(expected);
  return { seconds: (stats.lastAt - started) / 1000, stats };
}

async function deliver(dispatcher: Dispatcher, receiver: Receiver): Promise<DeliveryResult> {
  await fetch(`${dispatcher.url}/__bench/reset`, { method: "POST" });
  const sizeBefore = await d1Size(dispatcher);
  const { seconds, stats } = await burst(
    dispatcher.url,
    dispatcher.producerToken,
    receiver,
    DELIVERY_EVENTS,
    (i) => `org_bench_${i % ORGS}`,
  );
  const counters = await drained(dispatcher);
  return {
    events: DELIVERY_EVENTS,
    seconds,
    deliveriesPerSecond: Math.round(DELIVERY_EVENTS / seconds),
    latencyP50Ms: stats.p50!,
    latencyP99Ms: stats.p99!,
    counters,
    d1BytesPerDelivery: Math.round((counters.d1SizeBytes - sizeBefore) / DELIVERY_EVENTS),
  };
}

/** The same burst through the control Worker: queue and fetch only. */
async function deliverControl(
  control: Dispatcher,
  receiver: Receiver,
): Promise<{ seconds: number; deliveriesPerSecond: number }> {
  const { seconds } = await burst(control.url, null, receiver, DELIVERY_EVENTS, () => "org_control");
  return { seconds, deliveriesPerSecond: Math.round(DELIVERY_EVENTS / seconds) };
}

/** POSTs per second one invocation of the runtime makes with 6 connections, nothing else. */
async function outboundFetchCeiling(control: Dispatcher, receiver: Receiver): Promise<number> {
  const n = 1000;
  const res = await fetch(`${control.url}/fetch-ceiling?n=${n}&url=${encodeURIComponent(receiver.url)}`);
  const { ms } = (await res.json()) as { ms: number };
  return Math.round((n * 1000) / ms);
}

/** What a single job sees when the dispatcher is not behind: events sent one by one at a steady rate. */
async function steadyLatency(dispatcher: Dispatcher, receiver: Receiver): Promise<{ p50Ms: number; p99Ms: number }> {
  await quiet(); // the fetch-only measurement's leftovers, as before every timed burst
  await receiver.reset();
  for (let i = 0; i < STEADY_EVENTS; i++) {
    const next = Date.now() + 1000 / STEADY_RATE;
    void fetch(`${dispatcher.url}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", Authorization: `Bearer ${dispatcher.producerToken}` },
      body: JSON.stringify(seedEvent("org_bench_steady", receiver.url)),
    });
    await sleep(Math.max(0, next - Date.now()));
  }
  const stats = await receiver.waitFor(STEADY_EVENTS);
  return { p50Ms: stats.p50!, p99Ms: stats.p99! };
}

/** The summed size of every D1 database (each log shard), refreshed by one uncounted query each. */
async function d1Size(dispatcher: Dispatcher): Promise<number> {
  const res = await fetch(`${dispatcher.url}/__bench/d1-size`, { method: "POST" });
  return ((await res.json()) as { d1SizeBytes: number }).d1SizeBytes;
}

/**
 * The counting worker's counters. A read only, so a connection reset (wrangler's proxy,
 * busy relaying a burst's inspector messages, dropped one in 6 flood-phase runs on
 * 2026-11-30) is tried again, twice; `drained` checks that they never go back, which a
 * restarted worker's would.
 */
async function getCounters(dispatcher: Dispatcher): Promise<Counters> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await (await fetch(`${dispatcher.url}/__bench/counters`)).json()) as Counters;
    } catch (error) {
      if (attempt === 3) throw error;
      log(`reading the counters failed (${error instanceof Error ? error.message : error}); trying again`);
      await sleep(1000);
    }
  }
}

// ---- noisy neighbour ---------------------------------------------------------------

interface NeighbourRun {
  /** Events of the four healthy orgs, and how fast and how soon they arrived. */
  healthyEvents: number;
  seconds: number;
  deliveriesPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** What the run asked of the bindings (all five orgs). */
  counters: Counters;
}

/**
 * One of five orgs has an endpoint that never answers, at the production settings
 * (10 s timeout): how much do the other four lose? The same load twice on a fresh
 * dispatcher, new orgs each time: first with the fifth org's endpoint healthy (its
 * arrivals not measured), then hanging. Measured: the four healthy orgs' events. A
 * warm-up burst comes first, so that neither run pays for the dispatcher's first batches
 * (compiling, first D1 and Durable Object use), and the all-healthy run is drained
 * before the hanging one starts, so that its last work is not counted in the other.
 */
async function neighbourPhase(receiver: Receiver): Promise<NonNullable<Measured["neighbour"]>> {
  const dispatcher = await startDispatcher(
    { ALLOW_INSECURE_WEBHOOK_URLS: "true" },
    { script: "bench/counting/worker.ts", config: PRODUCT_CONFIG },
  );
  try {
    log(`noisy neighbour: a warm-up of ${BATCH} events, then ${NEIGHBOUR_EVENTS_PER_ORG * ORGS}, 5 orgs, none hanging`);
    await burst(dispatcher.url, dispatcher.producerToken, receiver, BATCH, (i) => `org_nb_warm_${i % ORGS}`);
    await drained(dispatcher);
    const healthy = await neighbourRun(dispatcher, receiver, "healthy");
    await drained(dispatcher);
    log(`noisy neighbour: the same, the fifth org's endpoint hanging (10 s timeout)`);
    const noisy = await neighbourRun(dispatcher, receiver, "hanging");
    return { healthy, noisy };
  } finally {
    await dispatcher.stop();
  }
}

async function neighbourRun(
  dispatcher: Dispatcher,
  receiver: Receiver,
  fifth: "healthy" | "hanging",
): Promise<NeighbourRun> {
  const total = NEIGHBOUR_EVENTS_PER_ORG * ORGS;
  const healthyEvents = total - NEIGHBOUR_EVENTS_PER_ORG;
  const { seconds, stats } = await burst(
    dispatcher.url,
    dispatcher.producerToken,
    receiver,
    total,
    (i) => `org_nb_${fifth}_${i % ORGS}`,
    {
      urlOf: (i) =>
        i % ORGS !== ORGS - 1 ? receiver.url : fifth === "healthy" ? `${receiver.base}/other` : `${receiver.base}/hang`,
      expected: healthyEvents,
      // Counted from a quiet machine on: nothing of the run before.
      ready: async () => void (await fetch(`${dispatcher.url}/__bench/reset`, { method: "POST" })),
    },
  );
  return {
    healthyEvents,
    seconds,
    deliveriesPerSecond: Math.round(healthyEvents / seconds),
    latencyP50Ms: stats.p50!,
    latencyP99Ms: stats.p99!,
    counters: await getCounters(dispatcher),
  };
}

// ---- producer flood ----------------------------------------------------------------

interface FloodRun {
  /** The other orgs' events, and how soon they arrived after each was sent. */
  events: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Of the flood's events, how many ingest queued on the bulk lane. */
  bulkLaneMessages: number;
  /** Queue operations per event of the run (the flood's included): a lane costs what the other does. */
  queueOperationsPerEvent: number;
}

interface FloodPhase {
  /** The product: the others' events alone, then right after the flood. */
  alone: FloodRun;
  flood: FloodRun;
  /** The same two with FAST_LANE_ORG_LIMIT lifted: one fast lane for everyone, as before the bulk lane. */
  oneLaneAlone: FloodRun;
  oneLaneFlood: FloodRun;
}

/**
 * A producer flood (a backfill: FLOOD_EVENTS for one org at once, to an endpoint that
 * answers at once), then 4 other orgs' 100 events each: how long do theirs wait? Measured
 * as shipped (the flood's first 1,000 events in 10 s take the fast lane, the rest the bulk
 * lane) and on a dispatcher whose FAST_LANE_ORG_LIMIT lets every event into the fast lane,
 * each against the others' events alone on the same dispatcher. The flood is sent within
 * one of the limit's 10 s windows (local windows are aligned to the epoch), so the split
 * is the same in every run.
 */
async function floodPhase(receiver: Receiver): Promise<FloodPhase> {
  const runs: FloodRun[] = [];
  for (const config of [PRODUCT_CONFIG, oneLaneConfig()]) {
    const dispatcher = await startDispatcher(
      { ALLOW_INSECURE_WEBHOOK_URLS: "true" },
      { script: "bench/counting/worker.ts", config },
    );
    try {
      const lanes = config === PRODUCT_CONFIG ? "as shipped" : "one fast lane";
      const others = FLOOD_OTHERS_PER_ORG * FLOOD_OTHER_ORGS;
      log(`producer flood (${lanes}): ${others} events of ${FLOOD_OTHER_ORGS} orgs alone`);
      runs.push(await floodRun(dispatcher, receiver, `${runs.length}`, 0));
      log(`producer flood (${lanes}): the same right after one org's ${FLOOD_EVENTS}`);
      runs.push(await floodRun(dispatcher, receiver, `${runs.length}`, FLOOD_EVENTS));
    } catch (error) {
      console.error(`--- producer flood dispatcher (${config}) output (end) ---\n${dispatcher.output().slice(-4000)}`);
      throw error;
    } finally {
      await dispatcher.stop();
    }
  }
  const [alone, flood, oneLaneAlone, oneLaneFlood] = runs as [FloodRun, FloodRun, FloodRun, FloodRun];
  return { alone, flood, oneLaneAlone, oneLaneFlood };
}

async function floodRun(dispatcher: Dispatcher, receiver: Receiver, tag: string, flood: number): Promise<FloodRun> {
  await fetch(`${dispatcher.url}/__bench/reset`, { method: "POST" });
  const others = FLOOD_OTHERS_PER_ORG * FLOOD_OTHER_ORGS;
  const { stats } = await burst(
    dispatcher.url,
    dispatcher.producerToken,
    receiver,
    flood + others,
    (i) => (i < flood ? `org_flood_${tag}_backfill` : `org_flood_${tag}_${i % FLOOD_OTHER_ORGS}`),
    {
      // The flood's endpoint answers at once too; only the others' arrivals are measured.
      urlOf: (i) => (i < flood ? `${receiver.base}/other` : receiver.url),
      expected: others,
      ready: async () => {
        const left = 10_000 - (Date.now() % 10_000);
        if (left < 6_000) await sleep(left + 100);
      },
    },
  );
  const counters = await drained(dispatcher);
  return {
    events: others,
    latencyP50Ms: stats.p50!,
    latencyP99Ms: stats.p99!,
    bulkLaneMessages: counters.bulkLaneMessagesWritten,
    queueOperationsPerEvent: perEventOf(counters, flood + others).queueOperations,
  };
}

/** The product's config with FAST_LANE_ORG_LIMIT lifted: every event takes the fast lane. */
function oneLaneConfig(): string {
  const table = readToml(PRODUCT_CONFIG);
  const limit = (table.ratelimits as Array<{ name: string; simple: { limit: number } }>).find(
    (r) => r.name === "FAST_LANE_ORG_LIMIT",
  );
  if (!limit) throw new Error("no FAST_LANE_ORG_LIMIT in the config");
  limit.simple.limit = 1_000_000_000;
  writeFileSync(
    join(root, ONE_LANE_CONFIG),
    `# Generated by bench/run.ts: FAST_LANE_ORG_LIMIT lifted (one fast lane).\n${stringifyToml(table)}`,
  );
  return ONE_LANE_CONFIG;
}

// ---- D1 round trips by shard count ---------------------------------------------------

interface ShardRun {
  shards: number;
  logShards: string;
  events: number;
  seconds: number;
  /** Queue runs (every lane; all fast lane here). */
  batches: number;
  readsPerBatch: number;
  maxReadsPerBatch: number;
  writesPerBatch: number;
  maxWritesPerBatch: number;
  maxReadsPerShardPerBatch: number;
  maxWritesPerShardPerBatch: number;
  shardsTouchedPerBatch: number;
  maxShardsTouchedPerBatch: number;
  maxReadsBeyondShardsTouchedPerBatch: number;
  takeOverReads: number;
  d1RowsWrittenPerDelivery: number;
  d1RoundTripsPerDelivery: number;
  d1BytesPerDelivery: number;
  /** Round trips per database, the API's included: every shard should have some. */
  roundTripsByDatabase: Record<string, number>;
}

/**
 * The same burst on 1, 2 and 4 log shards (each on a fresh dispatcher): what a queue
 * batch asks of D1 as its orgs spread over more shards. A batch should read each shard
 * it touches once and write each in at most 3 round trips (the per-shard group commit).
 */
async function shardsPhase(receiver: Receiver): Promise<ShardRun[]> {
  const runs: ShardRun[] = [];
  for (const count of SHARD_COUNTS) {
    const names = ["DB", ...Array.from({ length: count - 1 }, (_, i) => `DB_${i + 1}`)];
    const config = count <= 2 ? PRODUCT_CONFIG : shardsConfig(names);
    log(`shards: ${SHARD_EVENTS} events, ${SHARD_ORGS} orgs, LOG_SHARDS=${names.join(",")}`);
    const dispatcher = await startDispatcher(
      { ALLOW_INSECURE_WEBHOOK_URLS: "true", LOG_SHARDS: names.join(",") },
      { script: "bench/counting/worker.ts", config },
    );
    try {
      await fetch(`${dispatcher.url}/__bench/reset`, { method: "POST" });
      const sizeBefore = await d1Size(dispatcher);
      const { seconds } = await burst(
        dispatcher.url,
        dispatcher.producerToken,
        receiver,
        SHARD_EVENTS,
        (i) => `org_shards${count}_${i % SHARD_ORGS}`,
      );
      const c = await drained(dispatcher);
      const sizeAfter = await d1Size(dispatcher);
      const perBatch = (n: number) => n / Math.max(1, c.batches);
      runs.push({
        shards: count,
        logShards: names.join(","),
        events: SHARD_EVENTS,
        seconds,
        batches: c.batches,
        readsPerBatch: perBatch(c.sumD1ReadRoundTripsPerBatch),
        maxReadsPerBatch: c.maxD1ReadRoundTripsPerBatch,
        writesPerBatch: perBatch(c.sumD1WriteRoundTripsPerBatch),
        maxWritesPerBatch: c.maxD1WriteRoundTripsPerBatch,
        maxReadsPerShardPerBatch: c.maxD1ReadRoundTripsPerShardPerBatch,
        maxWritesPerShardPerBatch: c.maxD1WriteRoundTripsPerShardPerBatch,
        shardsTouchedPerBatch: perBatch(c.sumShardsTouchedPerBatch),
        maxShardsTouchedPerBatch: c.maxShardsTouchedPerBatch,
        maxReadsBeyondShardsTouchedPerBatch: c.maxD1ReadsBeyondShardsTouchedPerBatch,
        takeOverReads: c.sumD1TakeOverReadRoundTrips,
        d1RowsWrittenPerDelivery: c.d1RowsWritten / SHARD_EVENTS,
        d1RoundTripsPerDelivery: c.d1RoundTrips / SHARD_EVENTS,
        d1BytesPerDelivery: Math.round((sizeAfter - sizeBefore) / SHARD_EVENTS),
        roundTripsByDatabase: c.d1RoundTripsByDatabase,
      });
    } catch (error) {
      console.error(`--- dispatcher (${names.length} shards) output (end) ---\n${dispatcher.output().slice(-4000)}`);
      throw error;
    } finally {
      await dispatcher.stop();
    }
  }
  return runs;
}

/**
 * The product's config with D1 bindings up to `names` (DB_2, DB_3, …; the same
 * migrations), beside wrangler.toml so that its relative paths hold.
 */
function shardsConfig(names: readonly string[]): string {
  const table = readToml(PRODUCT_CONFIG);
  const databases = (table.d1_databases ?? []) as TomlTable[];
  for (const [i, binding] of names.entries()) {
    if (databases.some((d) => d.binding === binding)) continue;
    databases.push({
      binding,
      database_name: `zupertry-webhooks-bench-${i}`,
      database_id: `00000000-0000-4000-8000-${String(900 + i).padStart(12, "0")}`,
      migrations_dir: "migrations",
    });
  }
  table.d1_databases = databases;
  writeFileSync(
    join(root, SHARDS_CONFIG),
    `# Generated by bench/run.ts: the product's config with more log shards.\n${stringifyToml(table)}`,
  );
  return SHARDS_CONFIG;
}

// ---- zupertry listen ------------------------------------------------------------------

interface ListenerPhase {
  events: number;
  rounds: number;
  /** Deliveries/s of each burst, in the order run: without, with, without, with, … */
  withoutPerSecond: number[];
  withPerSecond: number[];
  /** Delivery frames the listeners got in the bursts with them (one per attempt). */
  relayed: number;
}

/**
 * The consumer's deliveries/s with a `zupertry listen` session on every org (each
 * delivery relayed, each answered with a result as the CLI does), against the same
 * bursts without, alternating so that the machine's drift falls on both.
 */
async function listenerPhase(receiver: Receiver): Promise<ListenerPhase> {
  const dispatcher = await startDispatcher({ ALLOW_INSECURE_WEBHOOK_URLS: "true" }, { config: PRODUCT_CONFIG });
  const orgs = Array.from({ length: ORGS }, (_, i) => `org_listen_${i}`);
  const result: ListenerPhase = {
    events: LISTENER_EVENTS,
    rounds: LISTENER_ROUNDS,
    withoutPerSecond: [],
    withPerSecond: [],
    relayed: 0,
  };
  try {
    const keys = await Promise.all(
      orgs.map(async (org) => {
        const res = await fetch(`${dispatcher.url}/v1/orgs/${org}/api-keys`, {
          method: "POST",
          headers: { Authorization: `Bearer ${dispatcher.operatorToken}` },
        });
        return ((await res.json()) as { key: string }).key;
      }),
    );
    const run = async () =>
      Math.round(
        LISTENER_EVENTS /
          (await burst(dispatcher.url, dispatcher.producerToken, receiver, LISTENER_EVENTS, (i) => orgs[i % ORGS]!))
            .seconds,
      );
    for (let r = 0; r < LISTENER_ROUNDS; r++) {
      log(`listener: ${LISTENER_EVENTS} events, no listener`);
      result.withoutPerSecond.push(await run());
      await sleep(8000); // the burst's sockets close (see DELIVERY_EVENTS)
      log(`listener: ${LISTENER_EVENTS} events, a listener on each of ${ORGS} orgs`);
      const listeners = await Promise.all(keys.map((key) => openListener(dispatcher.url, key)));
      result.withPerSecond.push(await run());
      await sleep(1000); // the last relays arrive
      for (const l of listeners) {
        result.relayed += l.frames();
        l.close();
      }
      await sleep(8000);
    }
  } finally {
    await dispatcher.stop();
  }
  return result;
}

/**
 * A listener as the CLI is one: it answers each delivery with a result, in `results`
 * frames of up to 25 or after 200 ms (cli/listen.mjs), and forwards nowhere.
 */
async function openListener(base: string, key: string): Promise<{ frames(): number; close(): void }> {
  const ws = new WebSocket(`${base.replace(/^http/, "ws")}/v1/listen`, { headers: { Authorization: `Bearer ${key}` } });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  let frames = 0;
  let results: unknown[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (results.length > 0) ws.send(JSON.stringify({ type: "results", results }));
    results = [];
  };
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString()) as { type: string; delivery_id: string; attempt: number; job_id: string };
    if (frame.type !== "delivery") return;
    frames++;
    results.push({
      delivery_id: frame.delivery_id,
      attempt: frame.attempt,
      job_id: frame.job_id,
      event_type: "job.completed",
      status_code: 200,
      response_time_ms: 1,
      error: null,
    });
    if (results.length >= 25) flush();
    else timer ??= setTimeout(flush, 200);
  });
  return {
    frames: () => frames,
    close: () => {
      flush();
      ws.close();
    },
  };
}

// ---- memory ------------------------------------------------------------------------

/** Polls the resident memory of the dispatcher's workerd process(es); keeps the peak. */
function watchMemory(wranglerPid: number) {
  let peak = 0;
  const sample = () => {
    for (const pid of descendants(wranglerPid)) {
      try {
        const status = readFileSync(`/proc/${pid}/status`, "utf8");
        if (!/^Name:\s+workerd/m.test(status)) continue;
        const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
        peak = Math.max(peak, hwm);
      } catch {
        // gone
      }
    }
  };
  const timer = existsSync("/proc") ? setInterval(sample, 500) : undefined;
  return {
    peakKiB: () => {
      sample();
      return peak;
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Polls the open files of every `wrangler dev` this bench started (its Node and its two
 * workerd); keeps the peak of any one process and which it was. Why: see DELIVERY_EVENTS.
 * Linux only (/proc): elsewhere the peak stays 0.
 */
function watchOpenFiles() {
  let peak = { files: 0, process: "" };
  const sample = () => {
    const children = processChildren(); // one read of /proc for every tree below
    for (const wrangler of descendants(process.pid, children)) {
      const command = commandLine(wrangler);
      if (!command.includes("wrangler-dist")) continue;
      const whose = command.includes("bench/control/") ? "the control's" : "a dispatcher's";
      for (const pid of [wrangler, ...descendants(wrangler, children)]) {
        try {
          const files = readdirSync(`/proc/${pid}/fd`).length;
          if (files > peak.files) peak = { files, process: `${whose} ${processRole(pid, pid === wrangler)}` };
        } catch {
          // gone
        }
      }
    }
  };
  const timer = existsSync("/proc") ? setInterval(sample, 500) : undefined;
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

/**
 * Which process of a `wrangler dev` this is. Its proxy workerd listens on the dev URL's
 * port (and relays the inspector); the runtime workerd, which runs the Workers, on port 0.
 */
function processRole(pid: number, isWrangler: boolean): string {
  if (isWrangler) return "wrangler Node";
  const args = commandLine(pid);
  if (!args.includes("workerd")) return args.split(" ")[0]!.split("/").at(-1)!;
  return /entry=[\d.]+:0(\s|$)/.test(args) ? "runtime workerd" : "proxy workerd";
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** This process's open-file limit (its children inherit it); null where /proc is missing. */
function openFilesLimit(): number | null {
  try {
    const soft = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1];
    return soft === undefined ? null : Number(soft);
  } catch {
    return null;
  }
}

/** Every process's children, by parent pid, from one read of /proc. */
function processChildren(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  return children;
}

function descendants(pid: number, children = processChildren()): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

// ---- the report --------------------------------------------------------------------

type IngestMean = ReturnType<typeof mean>;

/**
 * The hanging run's counters, with what its moves cost after the counters are read: the
 * run is measured when the healthy orgs' events have arrived, and by then each message
 * moved to the slow or overflow lane (a hand-off's lease included) has been written
 * there, but is read and deleted there only later, after its 10 s attempt, 6 at a time.
 * Those two operations are added for every moved message, as if the lanes had read none
 * yet (an overcount by the few they had started). Not added: the hanging org's own
 * attempts and retries (their log rows, health reports, the schedule's reads), which its
 * deliveries cost in any dispatcher, lanes or not.
 */
function withMovesDone(c: Counters): Counters {
  const moved = c.slowLaneMessagesWritten + c.overflowLaneMessagesWritten;
  return { ...c, queueMessagesRead: c.queueMessagesRead + moved, queueMessagesAcked: c.queueMessagesAcked + moved };
}

/** Per delivered event, from one phase's counters. */
function perEventOf(c: Counters, events: number) {
  const per = (n: number) => n / events;
  return {
    workerInvocations: per(c.fetchInvocations + c.queueInvocations),
    queueOperations: per(c.queueMessagesWritten + c.queueMessagesRead + c.queueMessagesAcked),
    d1RoundTrips: per(c.d1RoundTrips),
    d1Statements: per(c.d1Statements),
    d1RowsWritten: per(c.d1RowsWritten),
    d1RowsRead: per(c.d1RowsRead),
    durableObjectCalls: per(c.durableObjectCalls),
    durableObjectRowsWritten: per(c.durableObjectRowsWritten),
  };
}

function dollarsPerMillionOf(perEvent: ReturnType<typeof perEventOf>) {
  const parts = {
    workerRequests: perEvent.workerInvocations * PRICES.workersPerMillionRequests,
    queueOperations: perEvent.queueOperations * PRICES.queuesPerMillionOperations,
    d1RowsWritten: perEvent.d1RowsWritten * PRICES.d1PerMillionRowsWritten,
    d1RowsRead: perEvent.d1RowsRead * PRICES.d1PerMillionRowsRead,
    durableObjectRequests: perEvent.durableObjectCalls * PRICES.durableObjectsPerMillionRequests,
    durableObjectRowsWritten: perEvent.durableObjectRowsWritten * PRICES.durableObjectsPerMillionRowsWritten,
  };
  return { ...parts, total: Object.values(parts).reduce((a, b) => a + b, 0) };
}

const pct = (ratio: number) => `${Math.round(100 * ratio)}%`;

function report(m: Measured) {
  // Speed from the pair with the median ratio: deliveries/s and drain time are the same
  // ratio (one burst size), so one pair stands for both targets. What a delivery costs
  // (counters, D1 bytes) from the first pair, the one with new orgs, as every run starts.
  const ratioOf = (p: DeliveryPair) => p.delivery.deliveriesPerSecond / p.ceiling.deliveriesPerSecond;
  const pairs = m.delivery && [...m.delivery.pairs].sort((a, b) => ratioOf(a) - ratioOf(b));
  const median = pairs?.[Math.floor(pairs.length / 2)];
  const first = m.delivery?.pairs[0];
  const d = median &&
    first && {
      delivery: {
        ...median.delivery,
        counters: first.delivery.counters,
        d1BytesPerDelivery: first.delivery.d1BytesPerDelivery,
      },
      ceiling: { ...median.ceiling, fetchOnlyPerSecond: m.delivery!.fetchOnlyPerSecond },
    };
  const pairRatios = m.delivery?.pairs.map((p) => pct(ratioOf(p))).join(", ");
  const perEvent = d && perEventOf(d.delivery.counters, d.delivery.events);
  const dollarsPerMillion = perEvent && dollarsPerMillionOf(perEvent);
  const retentionDays = 30;
  // A finished delivery is kept a day past the retention (src/store/retention.ts).
  const daysKept = retentionDays + 1;
  const deliveriesIn10GB = d && Math.floor(10e9 / d.delivery.d1BytesPerDelivery);
  const nb = m.neighbour;
  const neighbourCost = nb && dollarsPerMillionOf(perEventOf(withMovesDone(nb.noisy.counters), nb.noisy.healthyEvents));
  const targets: Array<{ target: string; ok: boolean; value: string }> = [];
  if (m.ingest) {
    const ratio = m.ingest.product.requestsPerSecond / m.ingest.control.requestsPerSecond;
    targets.push({ target: "ingest ≥ 70% of the control route", ok: ratio >= 0.7, value: pct(ratio) });
  }
  if (d) {
    const ratio = d.delivery.deliveriesPerSecond / d.ceiling.deliveriesPerSecond;
    targets.push({
      target: "deliveries/s ≥ 80% of the queue + fetch control",
      ok: ratio >= 0.8,
      value:
        `${pct(ratio)} (${d.delivery.deliveriesPerSecond}/s of ${d.ceiling.deliveriesPerSecond}/s), ` +
        `median of pairs ${pairRatios}`,
    });
    const drain = d.delivery.seconds / d.ceiling.seconds;
    targets.push({
      target: "a burst drains within 1.25× the control's drain time",
      ok: drain <= 1.25,
      value: `${drain.toFixed(2)}× (${d.delivery.seconds.toFixed(1)} s vs ${d.ceiling.seconds.toFixed(1)} s)`,
    });
  }
  if (m.steady) {
    targets.push({
      target: `steady p50 ingest→arrival ≤ batch timeout + 300 ms (${BATCH_TIMEOUT_MS + 300} ms)`,
      ok: m.steady.p50Ms <= BATCH_TIMEOUT_MS + 300,
      value: `${m.steady.p50Ms} ms`,
    });
  }
  if (nb) {
    const throughput = nb.noisy.deliveriesPerSecond / nb.healthy.deliveriesPerSecond;
    const latency = nb.noisy.latencyP50Ms / nb.healthy.latencyP50Ms;
    targets.push({
      target: "noisy neighbour: healthy orgs' deliveries/s ≥ 80% of all-healthy",
      ok: throughput >= 0.8,
      value: `${pct(throughput)} (${nb.noisy.deliveriesPerSecond}/s vs ${nb.healthy.deliveriesPerSecond}/s)`,
    });
    targets.push({
      target: "noisy neighbour: healthy orgs' p50 ≤ 2× all-healthy",
      ok: latency <= 2,
      value: `${latency.toFixed(2)}× (${nb.noisy.latencyP50Ms} ms vs ${nb.healthy.latencyP50Ms} ms)`,
    });
  }
  if (d) {
    const c = d.delivery.counters;
    targets.push({
      target: "≤ 3 D1 write round trips per shard per queue batch (group commit)",
      ok: c.maxD1WriteRoundTripsPerShardPerBatch <= 3,
      value: `max ${c.maxD1WriteRoundTripsPerShardPerBatch} (a whole batch: max ${c.maxD1WriteRoundTripsPerBatch})`,
    });
    targets.push({
      target: "≤ 1 settings read and ≤ 1 health report per org per batch",
      ok: c.maxOrgCallsPerMethodPerBatch <= 1,
      value: `max ${c.maxOrgCallsPerMethodPerBatch}`,
    });
    targets.push({
      target: "≤ $4 per million delivered events",
      ok: dollarsPerMillion!.total <= 4,
      value: `$${dollarsPerMillion!.total.toFixed(2)}`,
    });
  }
  if (m.shards) {
    const each = (value: (r: ShardRun) => string) => m.shards!.map((r) => `${r.shards}: ${value(r)}`).join(", ");
    targets.push({
      target: "shards: D1 reads per batch ≤ shards touched (+ take-over reads)",
      ok: m.shards.every((r) => r.maxReadsBeyondShardsTouchedPerBatch <= 0),
      value: each((r) => `+${r.maxReadsBeyondShardsTouchedPerBatch} max, ${r.takeOverReads} take-over`),
    });
    targets.push({
      target: "shards: ≤ 3 D1 write round trips per shard per batch",
      ok: m.shards.every((r) => r.maxWritesPerShardPerBatch <= 3),
      value: each((r) => `max ${r.maxWritesPerShardPerBatch}`),
    });
  }
  if (m.listener) {
    const l = m.listener;
    // Each round's pair ran back to back: the median of the pairs' ratios leaves the drift out.
    const ratios = l.withPerSecond.map((w, i) => w / l.withoutPerSecond[i]!).sort((a, b) => a - b);
    const ratio = ratios[Math.floor(ratios.length / 2)]!;
    targets.push({
      target: "zupertry listen: deliveries/s with a listener on every org ≥ 90% of without (unchanged)",
      ok: ratio >= 0.9,
      value:
        `${Math.round(ratio * 100)}%, median of rounds ` +
        `(${l.withPerSecond.join(", ")} vs ${l.withoutPerSecond.join(", ")} /s)`,
    });
    targets.push({
      target: "zupertry listen: every delivery relayed to its org's listener",
      ok: l.relayed === l.events * l.rounds,
      value: `${l.relayed} of ${l.events * l.rounds}`,
    });
  }
  if (neighbourCost) {
    targets.push({
      target: "≤ $4 per million healthy deliveries beside a hanging org (its moves counted)",
      ok: neighbourCost.total <= 4,
      value: `$${neighbourCost.total.toFixed(2)}`,
    });
  }
  return {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? "unknown",
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
    settings: {
      fastLaneBatchSize: BATCH_SIZE,
      batchTimeoutMs: BATCH_TIMEOUT_MS,
      phases: [...phases],
      inspector: INSPECTOR,
    },
    ingest: m.ingest && {
      control: m.ingest.control,
      controlWithQueueSend: m.ingest.controlQueued,
      dispatcher: m.ingest.product,
      ratio: m.ingest.product.requestsPerSecond / m.ingest.control.requestsPerSecond,
      ratioToControlWithQueueSend: m.ingest.product.requestsPerSecond / m.ingest.controlQueued.requestsPerSecond,
      connections: CONNECTIONS,
      seconds: INGEST_SECONDS,
      rounds: INGEST_ROUNDS,
    },
    delivery: d && {
      ...d.delivery,
      orgs: ORGS,
      batchRequestSize: BATCH,
      queueBatchSize: BATCH_SIZE,
      ceiling: d.ceiling,
      ratioToCeiling: d.delivery.deliveriesPerSecond / d.ceiling.deliveriesPerSecond,
      drainRatio: d.delivery.seconds / d.ceiling.seconds,
      /** Every pair, in the order run. The speeds above are the median pair's; counters and D1 bytes the first's. */
      pairs: m.delivery!.pairs.map((p) => ({
        dispatcherSeconds: p.delivery.seconds,
        controlSeconds: p.ceiling.seconds,
        ratio: ratioOf(p),
      })),
    },
    steady: m.steady && { events: STEADY_EVENTS, rate: STEADY_RATE, ...m.steady },
    neighbour: nb && {
      eventsPerOrg: NEIGHBOUR_EVENTS_PER_ORG,
      orgs: ORGS,
      healthy: nb.healthy,
      noisy: nb.noisy,
      throughputRatio: nb.noisy.deliveriesPerSecond / nb.healthy.deliveriesPerSecond,
      p50Ratio: nb.noisy.latencyP50Ms / nb.healthy.latencyP50Ms,
      dollarsPerMillionHealthy: neighbourCost,
    },
    flood: m.flood && {
      floodEvents: FLOOD_EVENTS,
      othersPerOrg: FLOOD_OTHERS_PER_ORG,
      otherOrgs: FLOOD_OTHER_ORGS,
      ...m.flood,
      /** The others' p50 right after the flood, over theirs alone: as shipped, and in one fast lane. */
      p50Ratio: m.flood.flood.latencyP50Ms / m.flood.alone.latencyP50Ms,
      oneLaneP50Ratio: m.flood.oneLaneFlood.latencyP50Ms / m.flood.oneLaneAlone.latencyP50Ms,
      /** The others' p50 right after the flood as shipped, over the same in one fast lane. */
      p50RatioToOneLane: m.flood.flood.latencyP50Ms / m.flood.oneLaneFlood.latencyP50Ms,
    },
    shards: m.shards && { events: SHARD_EVENTS, orgs: SHARD_ORGS, batchRequestSize: BATCH, runs: m.shards },
    listener: m.listener,
    perEvent,
    dollarsPerMillion,
    prices: { ...PRICES, date: PRICES_DATE },
    memory: m.peakKiB === undefined ? undefined : { workerdPeakRssMiB: Math.round(m.peakKiB / 1024) },
    /** The most files one process held open (see DELIVERY_EVENTS), and the limit each may. */
    openFiles: m.openFiles && { peak: m.openFiles.files, process: m.openFiles.process, limit: openFilesLimit() },
    storage: d && {
      d1BytesPerDelivery: d.delivery.d1BytesPerDelivery,
      deliveriesIn10GB,
      deliveriesPerDayAt30DayRetention: Math.floor(deliveriesIn10GB! / daysKept),
    },
    targets,
  };
}

/** One ingest measurement as a table cell. */
const ingestLine = (m: IngestMean, withErrors = true) =>
  [
    `${m.requestsPerSecond} req/s (${m.rounds.join(", ")})`,
    `p50 ${m.p50Ms} ms`,
    `p99 ${m.p99Ms} ms`,
    ...(withErrors ? [`errors ${m.errors + m.non2xx}`] : []),
  ].join(", ");

function print(r: ReturnType<typeof report>, complete: boolean) {
  const rows: Array<[string, string]> = [
    ["machine", `${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}`],
    ["fast lane batch size, batch timeout", `${r.settings.fastLaneBatchSize}, ${r.settings.batchTimeoutMs} ms`],
    ["wrangler's DevTools inspector", r.settings.inspector ? "on (as `wrangler dev` starts)" : "off (--no-inspector)"],
  ];
  if (r.ingest) {
    const load = `${r.ingest.control.bodyBytes} B, c=${CONNECTIONS}, ${INGEST_ROUNDS}×${INGEST_SECONDS} s`;
    rows.push(
      [`ingest, control route (${load})`, ingestLine(r.ingest.control)],
      ["ingest, control route + Queue.send (same load)", ingestLine(r.ingest.controlWithQueueSend, false)],
      ["ingest, POST /v1/events (same load)", ingestLine(r.ingest.dispatcher)],
      [
        "ingest ratio to control",
        `${pct(r.ingest.ratio)} (to control + Queue.send: ${pct(r.ingest.ratioToControlWithQueueSend)})`,
      ],
    );
  }
  if (r.delivery) {
    const c = r.delivery.counters;
    const d = r.delivery;
    const list = (counts: Record<string, number>) =>
      Object.entries(counts)
        .map(([k, v]) => `${k}: ${v}`)
        .join(", ");
    rows.push(
      [
        `delivery, ${d.events} events via /v1/events/batch (the median of ${d.pairs.length} pairs)`,
        `${d.seconds.toFixed(2)} s to the last arrival, ${d.deliveriesPerSecond} deliveries/s`,
      ],
      [
        "delivery ceiling (control: queue + fetch only, 6 connections)",
        `${d.ceiling.seconds.toFixed(2)} s, ${d.ceiling.deliveriesPerSecond} deliveries/s; ` +
          `dispatcher at ${pct(d.ratioToCeiling)}`,
      ],
      [
        "each pair, dispatcher vs control, in the order run",
        d.pairs
          .map((p) => `${p.dispatcherSeconds.toFixed(1)} s vs ${p.controlSeconds.toFixed(1)} s (${pct(p.ratio)})`)
          .join(", "),
      ],
      ["outbound fetch alone (one invocation, 6 connections)", `${d.ceiling.fetchOnlyPerSecond} POSTs/s`],
      ["ingest-to-arrival latency, burst", `p50 ${d.latencyP50Ms} ms, p99 ${d.latencyP99Ms} ms`],
      ["queue batches (size: count)", list(c.batchSizes)],
      ["Durable Object calls (method: count)", list(c.durableObjectCallsByMethod)],
    );
  }
  if (r.steady) {
    rows.push([
      `ingest-to-arrival latency, steady ${r.steady.rate}/s`,
      `p50 ${r.steady.p50Ms} ms, p99 ${r.steady.p99Ms} ms`,
    ]);
  }
  if (r.neighbour) {
    const { healthy, noisy } = r.neighbour;
    const line = (n: NeighbourRun) =>
      [
        `${n.seconds.toFixed(2)} s`,
        `${n.deliveriesPerSecond} deliveries/s`,
        `p50 ${n.latencyP50Ms} ms`,
        `p99 ${n.latencyP99Ms} ms`,
      ].join(", ");
    rows.push(
      [`noisy neighbour, 4 healthy orgs × ${r.neighbour.eventsPerOrg}, fifth org healthy`, line(healthy)],
      [
        "noisy neighbour, the same, fifth org's endpoint hanging",
        `${line(noisy)}; moved aside: ${noisy.counters.slowLaneMessagesWritten} to the slow lane, ` +
          `${noisy.counters.overflowLaneMessagesWritten} to the overflow lane`,
      ],
      [
        "noisy neighbour, ratios",
        `throughput ${pct(r.neighbour.throughputRatio)}, p50 ${r.neighbour.p50Ratio.toFixed(2)}×`,
      ],
    );
  }
  if (r.flood) {
    const f = r.flood;
    const line = (run: FloodRun) => `p50 ${run.latencyP50Ms} ms, p99 ${run.latencyP99Ms} ms`;
    const others = `${f.otherOrgs} orgs × ${f.othersPerOrg} events`;
    rows.push(
      [`producer flood: ${others} alone`, `${line(f.alone)} (one fast lane: ${line(f.oneLaneAlone)})`],
      [
        `the same right after one org's ${f.floodEvents.toLocaleString("en-US")} (bulk lane beyond 1,000 in 10 s)`,
        `${line(f.flood)}: p50 ${f.p50Ratio.toFixed(2)}× alone; ${f.flood.bulkLaneMessages} took the bulk lane; ` +
          `${f.flood.queueOperationsPerEvent.toFixed(2)} queue operations per event`,
      ],
      [
        "the same, one fast lane for all (FAST_LANE_ORG_LIMIT lifted)",
        `${line(f.oneLaneFlood)}: p50 ${f.oneLaneP50Ratio.toFixed(2)}× alone; ` +
          `${f.oneLaneFlood.bulkLaneMessages} took the bulk lane; ` +
          `${f.oneLaneFlood.queueOperationsPerEvent.toFixed(2)} queue operations per event`,
      ],
      ["producer flood, the others' p50 with the bulk lane / in one fast lane", `${pct(f.p50RatioToOneLane)}`],
    );
  }
  if (r.perEvent && r.dollarsPerMillion) {
    const p = r.perEvent;
    const $ = r.dollarsPerMillion;
    const usd = (n: number, digits = 2) => `$${n.toFixed(digits)}`;
    rows.push(
      [
        "per delivered event",
        [
          `${fmt(p.workerInvocations)} invocations`,
          `${fmt(p.queueOperations)} queue ops`,
          `${fmt(p.d1RoundTrips)} D1 round trips`,
          `${fmt(p.d1Statements)} statements`,
          `${fmt(p.d1RowsWritten)} rows written`,
          `${fmt(p.d1RowsRead)} rows read`,
          `${fmt(p.durableObjectCalls)} DO calls`,
          `${fmt(p.durableObjectRowsWritten)} DO rows written`,
        ].join(", "),
      ],
      [
        "$ per million delivered events",
        `${usd($.total)} (` +
          [
            `queue ${usd($.queueOperations)}`,
            `D1 writes ${usd($.d1RowsWritten)}`,
            `requests ${usd($.workerRequests, 3)}`,
            `DO ${usd($.durableObjectRequests, 3)}`,
            `DO rows ${usd($.durableObjectRowsWritten, 3)}`,
            `D1 reads ${usd($.d1RowsRead, 4)}`,
            `prices of ${r.prices.date}`,
          ].join(", ") +
          ")",
      ],
    );
  }
  const healthyCost = r.neighbour?.dollarsPerMillionHealthy;
  if (healthyCost) {
    rows.push([
      "$ per million healthy deliveries beside a hanging org",
      `$${healthyCost.total.toFixed(2)} (queue $${healthyCost.queueOperations.toFixed(2)})`,
    ]);
  }
  if (r.memory) rows.push(["workerd peak resident memory", `${r.memory.workerdPeakRssMiB} MiB`]);
  if (r.openFiles) {
    const { peak, process: name, limit } = r.openFiles;
    rows.push(["open files, the peak in one process", `${peak} (${name}) of ${limit ?? "an unknown"} allowed`]);
  }
  if (r.storage) {
    const s = r.storage;
    rows.push([
      "D1 bytes per delivered event",
      `${s.d1BytesPerDelivery} B → 10 GB holds ${(s.deliveriesIn10GB! / 1e6).toFixed(1)} M deliveries, ` +
        `${(s.deliveriesPerDayAt30DayRetention / 1e3).toFixed(0)} k/day at 30-day retention`,
    ]);
  }
  rows.push(...r.targets.map((t): [string, string] => [`${t.ok ? "✓" : "✗"} ${t.target}`, t.value]));
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nzupertry-webhooks bench, ${r.date}\n`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
  if (r.shards) printShards(r.shards);
  const why = INSPECTOR ? "a partial run" : "inspector off: not a run of the targets";
  const written = complete ? "bench/results/latest.json" : `bench/results/partial.tmp.json (${why})`;
  console.log(`\nwritten to ${written}\n`);
}

/** D1 round trips per queue batch by shard count, as a table of its own. */
function printShards(s: NonNullable<ReturnType<typeof report>["shards"]>): void {
  const head = [
    "shards",
    "batches",
    "reads/batch avg, max",
    "writes/batch avg, max",
    "per shard: reads, writes max",
    "shards touched avg",
    "rows written/delivery",
    "D1 B/delivery",
  ];
  const avgMax = (avg: number, max: number) => `${avg.toFixed(2)}, ${max}`;
  const lines = s.runs.map((r) => [
    String(r.shards),
    String(r.batches),
    avgMax(r.readsPerBatch, r.maxReadsPerBatch),
    avgMax(r.writesPerBatch, r.maxWritesPerBatch),
    `${r.maxReadsPerShardPerBatch}, ${r.maxWritesPerShardPerBatch}`,
    r.shardsTouchedPerBatch.toFixed(2),
    fmt(r.d1RowsWrittenPerDelivery),
    String(r.d1BytesPerDelivery),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const line = (cells: string[]) => `  ${cells.map((c, i) => c.padStart(widths[i]!)).join("  ")}`;
  console.log(`\n  D1 round trips per queue batch by shard count (${s.events} events, ${s.orgs} orgs):\n`);
  console.log(line(head));
  for (const l of lines) console.log(line(l));
  const spread = s.runs.map((r) => `${r.shards}: ${JSON.stringify(r.roundTripsByDatabase)}`).join("; ");
  console.log(`\n  round trips by database: ${spread}`);
}

// ---- helpers -----------------------------------------------------------------------

const fmt = (n: number) => (n >= 10 ? n.toFixed(0) : n.toFixed(n >= 1 ? 2 : 3));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (text: string) => console.log(`[bench] ${text}`);

async function inParallel(tasks: Array<() => Promise<void>>, width: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < tasks.length) await tasks[next++]!();
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
