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
import autocannon from "autocannon";
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { root, startDispatcher, stopProcess, type Dispatcher } from "../test/e2e/support/dispatcher";
import { PRICES, PRICES_DATE } from "./prices";

const DELIVERY_EVENTS = 5000;
const BATCH = 100;
const ORGS = 5;
const INGEST_SECONDS = 10;
const INGEST_ROUNDS = 2;
const CONNECTIONS = 50;
const STEADY_EVENTS = 200;
const STEADY_RATE = 20; // events/s: well under the local delivery rate even on a bad run (85/s)
const { maxBatchTimeoutMs: BATCH_TIMEOUT_MS, maxBatchSize: BATCH_SIZE } = consumerSettings("wrangler.toml");

/** What bench/counting/worker.ts counts (GET /__bench/counters). */
interface Counters {
  fetchInvocations: number;
  queueInvocations: number;
  queueMessagesWritten: number;
  queueMessagesRead: number;
  queueMessagesAcked: number;
  queueMessagesRetried: number;
  d1RoundTrips: number;
  d1Statements: number;
  d1RowsRead: number;
  d1RowsWritten: number;
  durableObjectCalls: number;
  batches: number;
  maxD1WriteRoundTripsPerBatch: number;
  maxD1ReadRoundTripsPerBatch: number;
  maxSettingsCallsPerOrgPerBatch: number;
  batchSizes: Record<string, number>;
  d1SizeBytes: number;
}

async function main() {
  checkControlMatchesProduct();
  const receiver = await startReceiver();
  const control = await startDispatcher({}, { config: "bench/control/wrangler.toml", migrate: false });
  // Ingest is measured on the product without its local consumer: `wrangler dev` runs
  // the consumer on the same thread as the ingest, which production never does.
  const ingestOnly = await startDispatcher({ ALLOW_INSECURE_WEBHOOK_URLS: "true" }, { config: ingestOnlyConfig() });
  let dispatcher: Dispatcher | undefined;
  let memory: ReturnType<typeof watchMemory> | undefined;
  try {
    const controlRounds: IngestResult[] = [];
    const queuedRounds: IngestResult[] = [];
    const productRounds: IngestResult[] = [];
    for (let round = 1; round <= INGEST_ROUNDS; round++) {
      log(`ingest round ${round}/${INGEST_ROUNDS}: control route, control route + Queue.send, POST /v1/events`);
      controlRounds.push(await ingest(`${control.url}/v1/events`, {}));
      queuedRounds.push(await ingest(`${control.url}/v1/events/queued`, {}));
      productRounds.push(await ingest(`${ingestOnly.url}/v1/events`, { Authorization: `Bearer ${ingestOnly.producerToken}` }));
    }
    await ingestOnly.stop();

    dispatcher = await startDispatcher({ ALLOW_INSECURE_WEBHOOK_URLS: "true" }, { script: "bench/counting/worker.ts" });
    memory = watchMemory(dispatcher.pid);
    log(`delivery: ${DELIVERY_EVENTS} events through /v1/events/batch`);
    const delivery = await deliver(dispatcher, receiver);
    log(`delivery ceiling: the same ${DELIVERY_EVENTS} events through the control's queue and fetch`);
    const ceiling = await deliverControl(control, receiver);
    const fetchCeiling = await outboundFetchCeiling(control, receiver);
    log(`steady latency: ${STEADY_EVENTS} events at ${STEADY_RATE}/s`);
    const steady = await steadyLatency(dispatcher, receiver);
    const result = report(mean(controlRounds), mean(queuedRounds), mean(productRounds), delivery, { ...ceiling, fetchOnlyPerSecond: fetchCeiling }, steady, memory.peakKiB());
    mkdirSync(join(root, "bench/results"), { recursive: true });
    writeFileSync(join(root, "bench/results/latest.json"), JSON.stringify(result, null, 2) + "\n");
    print(result);
  } finally {
    memory?.stop();
    await Promise.all([dispatcher?.stop(), ingestOnly.stop(), control.stop(), stopProcess(receiver.child)]);
    rmSync(join(root, ".bench-ingest.wrangler.toml"), { force: true });
  }
}

/** wrangler.toml's consumer settings for the `deliveries` queue. */
function consumerSettings(config: string): { maxBatchSize: number; maxBatchTimeoutMs: number } {
  const text = readFileSync(join(root, config), "utf8");
  const block = /\[\[queues\.consumers\]\][^[]*?queue = "(?:deliveries|bench-control)"[^[]*/.exec(text)?.[0] ?? "";
  const size = Number(/max_batch_size = (\d+)/.exec(block)?.[1]);
  const timeout = Number(/max_batch_timeout = ([\d.]+)/.exec(block)?.[1]);
  if (!size || !timeout) throw new Error(`no consumer settings in ${config}`);
  return { maxBatchSize: size, maxBatchTimeoutMs: timeout * 1000 };
}

function checkControlMatchesProduct(): void {
  const control = consumerSettings("bench/control/wrangler.toml");
  if (control.maxBatchSize !== BATCH_SIZE || control.maxBatchTimeoutMs !== BATCH_TIMEOUT_MS) {
    throw new Error("bench/control/wrangler.toml must use the product's consumer settings (max_batch_size, max_batch_timeout)");
  }
}

/** The product's wrangler.toml without its queue consumers, beside it (relative paths hold). */
function ingestOnlyConfig(): string {
  const text = readFileSync(join(root, "wrangler.toml"), "utf8");
  const withoutConsumers = text.replace(/\[\[queues\.consumers\]\][\s\S]*?(?=\n\[)/g, "");
  const file = ".bench-ingest.wrangler.toml";
  writeFileSync(join(root, file), `# Generated by bench/run.ts: wrangler.toml without its queue consumers.\n${withoutConsumers}`);
  return file;
}

// ---- the receiver ------------------------------------------------------------------

async function startReceiver() {
  const child = spawn(process.execPath, [join(root, "bench/receiver.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve) =>
    createInterface({ input: child.stdout! }).once("line", (line) => resolve((JSON.parse(line) as { listening: number }).listening)),
  );
  const base = `http://127.0.0.1:${port}`;
  const stats = async () => (await (await fetch(`${base}/stats`)).json()) as ReceiverStats;
  return {
    url: `${base}/hook`,
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
  const data: Record<string, unknown> = {
    job_id: jobId,
    workspace_id: "ws_xyz",
    org_id: orgId,
    status: "completed",
    output_url: `https://storage.googleapis.com/zupertry-outputs/${jobId}.png?X-Goog-Signature=${signature}`,
    credits_consumed: 1,
    created_at: "2026-03-19T10:00:00.000Z",
    completed_at: "2026-03-19T10:00:05.231Z",
    sent_at: Date.now(),
  };
  const event = { type: "job.completed", data, webhook_url: webhookUrl };
  if (size !== undefined) {
    const missing = size - Buffer.byteLength(JSON.stringify(event));
    if (missing > 0) data.output_url += "&pad=" + "0123456789abcdef".repeat(Math.ceil(missing / 16)).slice(0, Math.max(0, missing - 5));
  }
  return event;
}

async function ingest(url: string, headers: Record<string, string>): Promise<IngestResult> {
  // One body template; autocannon gives each request its own job id ([<id>]).
  const body = JSON.stringify({ ...seedEvent("org_bench_ingest", "http://127.0.0.1:9/unused", 1024), data: { ...seedEvent("org_bench_ingest", "", 1024).data as object, job_id: "job_[<id>]" } });
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
  const avg = (pick: (r: IngestResult) => number) => Math.round(rounds.reduce((n, r) => n + pick(r), 0) / rounds.length);
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

/** Waits until the consumer has taken every queued message (reads stop changing). */
async function drained(dispatcher: Dispatcher, timeoutMs = 10 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  for (;;) {
    const counters = await getCounters(dispatcher);
    if (counters.queueMessagesAcked >= counters.queueMessagesWritten && counters.queueMessagesRead === last) return;
    if (Date.now() > deadline) throw new Error(`the queue did not drain: ${JSON.stringify(counters)}\n${dispatcher.output().slice(-3000)}`);
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

type Receiver = Awaited<ReturnType<typeof startReceiver>>;

/** Posts events through /v1/events/batch, 8 requests in flight, and waits for all arrivals. */
async function burst(base: string, token: string | null, receiver: Receiver, count: number, orgOf: (i: number) => string) {
  await receiver.reset();
  const started = Date.now();
  const requests = Array.from({ length: count / BATCH }, (_, b) => async () => {
    const events = Array.from({ length: BATCH }, (_, i) => seedEvent(orgOf(b * BATCH + i), receiver.url));
    const res = await fetch(`${base}/v1/events/batch`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ events }),
    });
    if (res.status !== 202) throw new Error(`batch ingest: ${res.status} ${await res.text()}`);
  });
  await inParallel(requests, 8);
  const stats = await receiver.waitFor(count);
  return { seconds: (stats.lastAt - started) / 1000, stats };
}

async function deliver(dispatcher: Dispatcher, receiver: Receiver): Promise<DeliveryResult> {
  await fetch(`${dispatcher.url}/__bench/reset`, { method: "POST" });
  const sizeBefore = await d1Size(dispatcher);
  const { seconds, stats } = await burst(dispatcher.url, dispatcher.producerToken, receiver, DELIVERY_EVENTS, (i) => `org_bench_${i % ORGS}`);
  await drained(dispatcher);
  const counters = await getCounters(dispatcher);
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
async function deliverControl(control: Dispatcher, receiver: Receiver): Promise<{ seconds: number; deliveriesPerSecond: number }> {
  const { seconds } = await burst(control.url, null, receiver, DELIVERY_EVENTS, () => "org_control");
  return { seconds, deliveriesPerSecond: Math.round(DELIVERY_EVENTS / seconds) };
}

/** POSTs per second one invocation of the runtime makes with 6 connections, nothing else. */
async function outboundFetchCeiling(control: Dispatcher, receiver: Receiver): Promise<number> {
  const n = 2000;
  const res = await fetch(`${control.url}/fetch-ceiling?n=${n}&url=${encodeURIComponent(receiver.url)}`);
  const { ms } = (await res.json()) as { ms: number };
  return Math.round((n * 1000) / ms);
}

/** What a single job sees when the dispatcher is not behind: events sent one by one at a steady rate. */
async function steadyLatency(dispatcher: Dispatcher, receiver: Receiver): Promise<{ p50Ms: number; p99Ms: number }> {
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

async function d1Size(dispatcher: Dispatcher): Promise<number> {
  // Any query refreshes meta.size_after; an unauthenticated log read is the cheapest.
  await fetch(`${dispatcher.url}/v1/webhook-logs`, { headers: { Authorization: "Bearer zk_bench_size_probe" } });
  return (await getCounters(dispatcher)).d1SizeBytes;
}

async function getCounters(dispatcher: Dispatcher): Promise<Counters> {
  return (await (await fetch(`${dispatcher.url}/__bench/counters`)).json()) as Counters;
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
  const timer = setInterval(sample, 500);
  return {
    peakKiB: () => (sample(), peak),
    stop: () => clearInterval(timer),
  };
}

function descendants(pid: number): number[] {
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

function report(
  control: IngestMean,
  controlQueued: IngestMean,
  product: IngestMean,
  delivery: DeliveryResult,
  ceiling: { seconds: number; deliveriesPerSecond: number; fetchOnlyPerSecond: number },
  steady: { p50Ms: number; p99Ms: number },
  peakKiB: number,
) {
  const c = delivery.counters;
  const per = (n: number) => n / delivery.events;
  const perEvent = {
    workerInvocations: per(c.fetchInvocations + c.queueInvocations),
    queueOperations: per(c.queueMessagesWritten + c.queueMessagesRead + c.queueMessagesAcked),
    d1RoundTrips: per(c.d1RoundTrips),
    d1Statements: per(c.d1Statements),
    d1RowsWritten: per(c.d1RowsWritten),
    d1RowsRead: per(c.d1RowsRead),
    durableObjectCalls: per(c.durableObjectCalls),
  };
  const dollarsPerMillion = {
    workerRequests: perEvent.workerInvocations * PRICES.workersPerMillionRequests,
    queueOperations: perEvent.queueOperations * PRICES.queuesPerMillionOperations,
    d1RowsWritten: perEvent.d1RowsWritten * PRICES.d1PerMillionRowsWritten,
    d1RowsRead: perEvent.d1RowsRead * PRICES.d1PerMillionRowsRead,
    durableObjectRequests: perEvent.durableObjectCalls * PRICES.durableObjectsPerMillionRequests,
  };
  const totalPerMillion = Object.values(dollarsPerMillion).reduce((a, b) => a + b, 0);
  const retentionDays = 30;
  const deliveriesIn10GB = Math.floor(10e9 / delivery.d1BytesPerDelivery);
  const targets = [
    { target: "ingest ≥ 70% of the control route", ok: product.requestsPerSecond >= 0.7 * control.requestsPerSecond, value: `${Math.round((100 * product.requestsPerSecond) / control.requestsPerSecond)}%` },
    { target: "≥ 1,000 deliveries/s end to end", ok: delivery.deliveriesPerSecond >= 1000, value: `${delivery.deliveriesPerSecond}/s (local ceiling ${ceiling.deliveriesPerSecond}/s)` },
    { target: `p50 ingest-to-arrival ≤ batch timeout + 100 ms (${BATCH_TIMEOUT_MS + 100} ms), burst`, ok: delivery.latencyP50Ms <= BATCH_TIMEOUT_MS + 100, value: `${delivery.latencyP50Ms} ms` },
    { target: `p50 ingest-to-arrival ≤ ${BATCH_TIMEOUT_MS + 100} ms, steady ${STEADY_RATE}/s`, ok: steady.p50Ms <= BATCH_TIMEOUT_MS + 100, value: `${steady.p50Ms} ms` },
    { target: "one D1 round trip per queue batch for writes", ok: c.maxD1WriteRoundTripsPerBatch <= 1, value: `max ${c.maxD1WriteRoundTripsPerBatch}` },
    { target: "≤ 1 Durable Object call per org per batch", ok: c.maxSettingsCallsPerOrgPerBatch <= 1, value: `max ${c.maxSettingsCallsPerOrgPerBatch}` },
    { target: "≤ $4 per million delivered events", ok: totalPerMillion <= 4, value: `$${totalPerMillion.toFixed(2)}` },
  ];
  return {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    ingest: {
      control,
      controlWithQueueSend: controlQueued,
      dispatcher: product,
      ratio: product.requestsPerSecond / control.requestsPerSecond,
      ratioToControlWithQueueSend: product.requestsPerSecond / controlQueued.requestsPerSecond,
      connections: CONNECTIONS,
      seconds: INGEST_SECONDS,
      rounds: INGEST_ROUNDS,
    },
    delivery: { ...delivery, orgs: ORGS, batchRequestSize: BATCH, queueBatchSize: BATCH_SIZE, ceiling, ratioToCeiling: delivery.deliveriesPerSecond / ceiling.deliveriesPerSecond },
    steady: { events: STEADY_EVENTS, rate: STEADY_RATE, ...steady },
    perEvent,
    dollarsPerMillion: { ...dollarsPerMillion, total: totalPerMillion },
    prices: { ...PRICES, date: PRICES_DATE },
    memory: { workerdPeakRssMiB: Math.round(peakKiB / 1024) },
    storage: { d1BytesPerDelivery: delivery.d1BytesPerDelivery, deliveriesIn10GB, deliveriesPerDayAt30DayRetention: Math.floor(deliveriesIn10GB / retentionDays) },
    targets,
  };
}

function print(r: ReturnType<typeof report>) {
  const rows: Array<[string, string]> = [
    ["machine", `${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}`],
    [`ingest, control route (${r.ingest.control.bodyBytes} B, c=${CONNECTIONS}, ${INGEST_ROUNDS}×${INGEST_SECONDS} s)`, `${r.ingest.control.requestsPerSecond} req/s (${r.ingest.control.rounds.join(", ")}), p50 ${r.ingest.control.p50Ms} ms, p99 ${r.ingest.control.p99Ms} ms, errors ${r.ingest.control.errors + r.ingest.control.non2xx}`],
    [`ingest, control route + Queue.send (same load)`, `${r.ingest.controlWithQueueSend.requestsPerSecond} req/s (${r.ingest.controlWithQueueSend.rounds.join(", ")}), p50 ${r.ingest.controlWithQueueSend.p50Ms} ms, p99 ${r.ingest.controlWithQueueSend.p99Ms} ms`],
    [`ingest, POST /v1/events (same load)`, `${r.ingest.dispatcher.requestsPerSecond} req/s (${r.ingest.dispatcher.rounds.join(", ")}), p50 ${r.ingest.dispatcher.p50Ms} ms, p99 ${r.ingest.dispatcher.p99Ms} ms, errors ${r.ingest.dispatcher.errors + r.ingest.dispatcher.non2xx}`],
    ["ingest ratio to control", `${(100 * r.ingest.ratio).toFixed(0)}% (to control + Queue.send: ${(100 * r.ingest.ratioToControlWithQueueSend).toFixed(0)}%)`],
    [`delivery, ${r.delivery.events} events via /v1/events/batch`, `${r.delivery.seconds.toFixed(2)} s to the last arrival, ${r.delivery.deliveriesPerSecond} deliveries/s`],
    ["delivery ceiling (control: queue + fetch only)", `${r.delivery.ceiling.seconds.toFixed(2)} s, ${r.delivery.ceiling.deliveriesPerSecond} deliveries/s; dispatcher at ${(100 * r.delivery.ratioToCeiling).toFixed(0)}%`],
    ["outbound fetch alone (one invocation, 6 connections)", `${r.delivery.ceiling.fetchOnlyPerSecond} POSTs/s`],
    ["ingest-to-arrival latency, burst", `p50 ${r.delivery.latencyP50Ms} ms, p99 ${r.delivery.latencyP99Ms} ms`],
    [`ingest-to-arrival latency, steady ${r.steady.rate}/s`, `p50 ${r.steady.p50Ms} ms, p99 ${r.steady.p99Ms} ms`],
    ["queue batches (size: count)", Object.entries(r.delivery.counters.batchSizes).map(([k, v]) => `${k}: ${v}`).join(", ")],
    ["per delivered event", `${fmt(r.perEvent.workerInvocations)} invocations, ${fmt(r.perEvent.queueOperations)} queue ops, ${fmt(r.perEvent.d1RoundTrips)} D1 round trips, ${fmt(r.perEvent.d1Statements)} statements, ${fmt(r.perEvent.d1RowsWritten)} rows written, ${fmt(r.perEvent.d1RowsRead)} rows read, ${fmt(r.perEvent.durableObjectCalls)} DO calls`],
    ["$ per million delivered events", `$${r.dollarsPerMillion.total.toFixed(2)} (queue $${r.dollarsPerMillion.queueOperations.toFixed(2)}, D1 writes $${r.dollarsPerMillion.d1RowsWritten.toFixed(2)}, requests $${r.dollarsPerMillion.workerRequests.toFixed(3)}, DO $${r.dollarsPerMillion.durableObjectRequests.toFixed(3)}, D1 reads $${r.dollarsPerMillion.d1RowsRead.toFixed(4)}; prices of ${r.prices.date})`],
    ["workerd peak resident memory", `${r.memory.workerdPeakRssMiB} MiB`],
    ["D1 bytes per delivered event", `${r.storage.d1BytesPerDelivery} B → 10 GB holds ${(r.storage.deliveriesIn10GB / 1e6).toFixed(1)} M deliveries, ${(r.storage.deliveriesPerDayAt30DayRetention / 1e3).toFixed(0)} k/day at 30-day retention`],
    ...r.targets.map((t): [string, string] => [`${t.ok ? "✓" : "✗"} ${t.target}`, t.value]),
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nzupertry-webhooks bench, ${r.date}\n`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
  console.log(`\nwritten to bench/results/latest.json\n`);
}

// ---- helpers -----------------------------------------------------------------------

const fmt = (n: number) => (n >= 10 ? n.toFixed(0) : n.toFixed(n >= 1 ? 2 : 3));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (text: string) => console.log(`[bench] ${text}`);

async function inParallel(tasks: Array<() => Promise<void>>, width: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < tasks.length) await tasks[next++]!();
  }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
