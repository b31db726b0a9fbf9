import { type Config, readConfig } from "../config";
import { type EndpointReport, endpointOf } from "../org/endpoint-health";
import type { FirstAttemptClaim } from "../org/first-attempts";
import { type DeliverySettings, orgSettings } from "../org/org-settings";
import type { ShareRules, SlowLaneMove } from "../org/slow-lane-share";
import { checkWebhookUrl } from "../org/webhook-url";
import {
  type AttemptRecord,
  type DeliveryState,
  type EncodedAttempt,
  encodeAttempt,
  readDeliveryStates,
  writeAttempts,
} from "../store/attempts";
import { readStoredEvents } from "../store/stalled";
import { type AttemptError, postWebhook, unsentResponse } from "./attempt";
import { inSendLimits } from "./enqueue";
import { logFault } from "./fault-log";
import { signedAttemptHeaders } from "./headers";
import { type AsideLane, handOffLeaseMarginMs, laneOfQueue, laneQueue, movesSlowAside } from "./lanes";
import { LogWriter, type Written } from "./log-writer";
import type { DeliveryMessage } from "./message";
import { ownerOf, type Plan, planMessage } from "./plan";
import { AttemptPool, type PoolTask } from "./pool";
import { eventColumns } from "./record";
import { RunRelay } from "./relay";
import { type Requeue, requeue, requeued } from "./requeue";
import { crashBackoffSeconds, retryDelayAfter } from "./retry-policy";
import { groupByShard, type ShardGroup, type ShardRecord } from "./shard-groups";
import { Signer } from "./signing";

/**
 * The queue consumer: one run delivers one batch of one lane (src/delivery/lanes.ts).
 *
 *   1. one Durable Object call per org: its URL, signing secrets, log shard, which of
 *      the batch's endpoints are in the slow lane, and which of its new deliveries
 *      another message holds (src/org/first-attempts.ts); and one D1 read per log shard:
 *      the logged state of the batch's deliveries there (at the same time as the calls
 *      once this isolate knows the orgs' shards, src/delivery/shard-groups.ts);
 *   2. a plan per message (src/delivery/plan.ts): attempt, wait, or drop;
 *   3. in the fast and bulk lanes, deliveries to slow endpoints move aside unattempted;
 *   (steps 2 and 3 for each org as soon as its own call and its shard's read are in:
 *   a slow object or shard holds up its own deliveries, not the batch's others)
 *   4. the attempts, 6 at a time (a run's open-connection limit), each timed from the
 *      moment it gets its connection; in the fast and bulk lanes, one still running after
 *      SLOW_ATTEMPT_MS is handed off to finish in the background, and an endpoint or an
 *      org whose first attempt started 5 times that long ago has the rest moved aside
 *      (src/delivery/pool.ts);
 *   5. the log rows, written to each org's shard in a few D1 transactions while the
 *      attempts go on (a group commit, src/delivery/log-writer.ts), and one Durable
 *      Object call per org reporting the outcomes (endpoint health), and one more per
 *      org whose deliveries move aside: which fit in its share of the slow lane;
 *   6. only once its own row is written, ack or retry each message; moved and
 *      handed-off deliveries continue as slow-lane messages (or overflow-lane ones,
 *      beyond the org's share), and released ones (no connection left to start them)
 *      as new messages at this lane's tail.
 *
 * Acking after the write is what makes a crash harmless: a run that dies before step 5
 * leaves its messages unacked, they come back, and the attempts are made again (the
 * receiver may see a duplicate, which the seed tells it to expect; the log never
 * does). A run that dies after step 5 finds its attempts logged and only waits. A
 * handed-off attempt is logged by the background work; the message that follows it
 * (in the slow or the overflow lane) holds a lease until the attempt's timeout has surely passed, and makes
 * the attempt again only if it never got logged.
 */

type BatchMessage = Message<DeliveryMessage>;

/**
 * A Worker invocation holds at most 6 open connections; further fetches wait in a queue
 * for one. Running at most 6 attempts at once keeps that wait out of the attempts: each
 * one's 10 s timeout and `attempted_at` start when it can actually connect.
 */
export const MAX_OPEN_CONNECTIONS = 6;

const encoder = new TextEncoder();

/**
 * How long after its first attempt in a fast- or bulk-lane run an endpoint, or an org, starts no
 * more (src/delivery/pool.ts): 5 × SLOW_ATTEMPT_MS, 5 s. A batch of 100 to one endpoint
 * stays whole up to an average of 300 ms an attempt (100 over 6 connections); beyond, the
 * rest moves aside, as a flood to an endpoint answering in 900 ms (a 15 s run) does.
 */
export function busyAfterMs(config: Pick<Config, "slowAttemptMs">): number {
  return 5 * config.slowAttemptMs;
}

/**
 * Whether a message may make its delivery's attempt 1 and is new to the queue: any but a
 * take-over and a redeliver (they follow a logged attempt) and a lease's follower of a
 * later attempt, on its first delivery (an owner back for attempt 2 or 3 is a retry of its
 * message, so it takes no hold it cannot use).
 */
function mayMakeAttempt1(message: BatchMessage): boolean {
  const body = message.body;
  return (
    message.attempts === 1 &&
    body.take_over === undefined &&
    body.redeliver_after === undefined &&
    (body.lease?.attempt ?? 1) === 1
  );
}

/** Of those, what one endpoint may hold while others wait (src/delivery/pool.ts). */
export const MAX_CONNECTIONS_PER_ENDPOINT = 3;

/**
 * And what one org may hold while other orgs' attempts wait: its events may go to many
 * endpoints (per-event URLs), each under its own share, and all of them may hang.
 */
export const MAX_CONNECTIONS_PER_ORG = 4;

interface OrgContext {
  settings: DeliverySettings;
  signer: Signer;
}

type AttemptPlan = Extract<Plan, { kind: "attempt" }>;

interface Planned {
  message: BatchMessage;
  plan: AttemptPlan;
  /** What is sent: the message's event, or the stored one when the message takes a delivery over. */
  event: DeliveryMessage;
}

/** An attempt that ended: its log row, what the schedule does next, what its endpoint did. */
interface Attempted {
  message: BatchMessage;
  row: EncodedAttempt;
  /** Seconds until the next attempt, when the schedule has one. */
  retryDelaySeconds: number | null;
  /** Null when nothing was sent (no URL, a refused URL). */
  report: EndpointReport | null;
}

/** An attempt for the pool, with what the run needs of it once the pool is done. */
type AttemptTask = PoolTask<TaskValue> & {
  message: BatchMessage;
  origin: string;
  plan: AttemptPlan;
  startedAt: number;
};

/** A task's value: the attempt, or the internal fault that kept it from being made. */
type TaskValue = { ok: true; attempted: Attempted } | { ok: false; message: BatchMessage; error: unknown };

const summaryKeys = [
  "delivered",
  "retrying",
  "failed",
  "dropped",
  "waiting",
  "deferred",
  "moved",
  "handed_off",
  "busy",
  "overflowed",
  "released",
  "replanned",
] as const;
type Summary = Record<(typeof summaryKeys)[number], number>;

export async function deliverBatch(
  batch: MessageBatch<DeliveryMessage>,
  env: Env,
  ctx: ExecutionContext,
): Promise<void> {
  const lane = laneOfQueue(batch.queue);
  const fastLike = movesSlowAside(lane);
  const config = readConfig(env);
  const summary = Object.fromEntries(summaryKeys.map((k) => [k, 0])) as Summary;
  const log = () => logBatch({ queue: batch.queue, messages: batch.messages.length, ...summary });

  // The settings do not depend on the log: both are asked at once (a run's fixed cost),
  // for the orgs whose shards this isolate knows (src/delivery/shard-groups.ts), and
  // each org's attempts join the pool as soon as its own settings and its shard's log
  // state are in: an org whose Durable Object answers slowly, or a shard that does,
  // holds up only its own deliveries (and the orgs new to this isolate, placed with it).
  const orgLoads = loadOrgContexts(env, batch.messages);
  const shardOfOrg = new Map<string, ShardGroup<BatchMessage>>();

  // Rows are written while the batch's other attempts go on (src/delivery/log-writer.ts),
  // by one writer per shard, each writing when a third of the whole batch is ready for it:
  // at most 3 writes to a shard, and the more shards a batch spreads over, the closer to
  // one write each (a shard with a third of the batch or less gets one, at the end).
  const chunk = Math.max(10, Math.ceil(batch.messages.length / 3));
  const writers = new Map<string, LogWriter>();
  const ended: Array<Attempted & { written: Promise<Written> }> = [];
  const end = (attempted: Attempted) => {
    const shard = shardOfOrg.get(attempted.message.body.org_id)!;
    let writer = writers.get(shard.name);
    if (!writer) {
      writer = new LogWriter(shard.db, chunk);
      writers.set(shard.name, writer);
    }
    ended.push({ ...attempted, written: writer.add(attempted.row) });
  };
  const toOtherLanes: LaneMove[] = [];
  const holdWaits: Requeue[] = [];
  // This batch's messages of each delivery: a hold by one of them is the run's own (it
  // picked one message of the delivery, perhaps another, and dropped the rest).
  const inBatch = new Set(batch.messages.map((m) => `${m.body.delivery_id} ${ownerOf(m)}`));
  const tasks: AttemptTask[] = [];
  const relay = new RunRelay(env, ctx);
  const pool = new AttemptPool<TaskValue>({
    connections: MAX_OPEN_CONNECTIONS,
    perEndpoint: MAX_CONNECTIONS_PER_ENDPOINT,
    perOrg: MAX_CONNECTIONS_PER_ORG,
    handOffAfterMs: fastLike ? config.slowAttemptMs : null,
    busyAfterMs: fastLike ? busyAfterMs(config) : null,
    onDone: (value) => value.ok && end(value.attempted),
  });

  /** One org's planned deliveries, once its settings are in: attempts to the pool, the rest moved or ended. */
  const addOrg = (orgId: string, org: Settled<OrgContext>, list: readonly Planned[]) => {
    if (!org.ok) {
      defer(
        list.map((p) => p.message),
        "org_settings",
        org.error,
      );
      summary.deferred += list.length;
      return;
    }
    const added: AttemptTask[] = [];
    const { settings, signer } = org.value;
    const now = Date.now();
    for (const { message, plan, event } of list) {
      // (`?.`: an object still on the code before holds answers without them.)
      const hold = plan.attempt === 1 ? settings.held?.[message.body.delivery_id] : undefined;
      if (hold !== undefined && !inBatch.has(`${message.body.delivery_id} ${hold.owner}`)) {
        // Another message of this delivery holds its attempt 1: by the end of the hold
        // it is logged (and this message is dropped) or its holder is gone (src/org/first-attempts.ts).
        holdWaits.push({ message, delaySeconds: Math.max(1, Math.ceil((hold.until - now) / 1000)) });
        continue;
      }
      const target = resolveTarget(event, settings, config);
      const moving = target.ok && fastLike && settings.slow_endpoints.includes(target.endpoint);
      // To the org's `zupertry listen` sessions, as each attempt starts (src/delivery/relay.ts).
      const listening = settings.listeners > 0;
      const relayItem = { orgId, event, attempt: plan.attempt };
      if (!target.ok) {
        if (listening) relay.add({ ...relayItem, signer });
        end(unsentAttempt(message, event, plan, target.url, target.error, target.detail));
      } else if (moving) {
        toOtherLanes.push(moveOf(message, target.endpoint, false));
      } else {
        const task: AttemptTask = {
          endpoint: `${orgId} ${target.endpoint}`,
          org: orgId,
          origin: target.endpoint,
          message,
          plan,
          startedAt: 0,
          start: () => {
            const relayed = listening
              ? (headers: Record<string, string>) => relay.add({ ...relayItem, headers })
              : null;
            task.startedAt = Date.now();
            return makeAttempt(message, event, plan, target.url, target.endpoint, org.value, config, relayed).then(
              (attempted): TaskValue => ({ ok: true, attempted }),
              (error: unknown): TaskValue => ({ ok: false, message, error }),
            );
          },
        };
        added.push(task);
      }
    }
    // The pool's results follow the order tasks are added in.
    tasks.push(...added);
    pool.add(added);
  };

  const claimed = new Set<string>();
  const shardRecordOf = async (org: string): Promise<ShardRecord> => {
    const loaded = await orgLoads.get(org)!;
    return loaded.ok ? { ok: true, value: loaded.value.settings.log_shard } : loaded;
  };
  try {
    await Promise.all(
      groupByShard(env, batch.messages, shardRecordOf).map(async (placing) => {
        const { groups, unplaced } = await placing;
        for (const { message, stage, error } of unplaced) defer([message], stage, error);
        summary.deferred += unplaced.length;
        for (const group of groups) for (const message of group.messages) shardOfOrg.set(message.body.org_id, group);
        await Promise.all(
          groups.map(async (group) => {
            const planned = await planGroup(group, claimed, summary, config);
            await Promise.all(
              [...Map.groupBy(planned, (p) => p.message.body.org_id)].map(async ([orgId, list]) =>
                addOrg(orgId, await orgLoads.get(orgId)!, list),
              ),
            );
          }),
        );
      }),
    );
  } finally {
    // Also when a fault above ends the run: the attempts started go on to their end.
    pool.close();
  }
  const results = await pool.results;
  relay.flush();
  const handedOff: Array<(typeof tasks)[number] & { value: Promise<TaskValue> }> = [];
  const released: BatchMessage[] = [];
  results.forEach((result, i) => {
    const task = tasks[i]!;
    if (result.kind === "done") {
      if (!result.value.ok) {
        defer([task.message], "attempt", result.value.error);
        summary.deferred++;
      }
    } else if (result.kind === "handed_off") {
      handedOff.push({ ...task, value: result.value });
    } else if (result.kind === "moved") {
      if (result.reason === "busy") summary.busy++;
      // Slow: its endpoint has an attempt of this run still going past SLOW_ATTEMPT_MS.
      // Busy: its endpoint's (or its org's) attempts used up their time in this run.
      toOtherLanes.push(moveOf(task.message, task.origin, result.reason === "slow"));
    } else {
      released.push(task.message);
    }
  });

  // Handed-off attempts finish in the background; a message follows each (another lane's),
  // waiting until its attempt has surely ended (the lease).
  const leaseMarginMs = handOffLeaseMarginMs(config.retryDelaysSeconds);
  const secondsUntil = (ms: number) => Math.max(0, Math.ceil((ms - Date.now()) / 1000));
  for (const h of handedOff) {
    const until = h.startedAt + config.attemptTimeoutMs + leaseMarginMs;
    const move = moveOf(h.message, h.origin, true);
    toOtherLanes.push({
      ...move,
      request: {
        ...move.request,
        body: { ...move.request.body, lease: { attempt: h.plan.attempt, until, scheduled: h.plan.scheduled } },
        delaySeconds: secondsUntil(until),
      },
      leaseUntil: until,
    });
  }
  if (handedOff.length > 0) {
    ctx.waitUntil(
      finishHandedOff(
        handedOff.map((h) => h.value),
        env,
        shardOfOrg,
      ),
    );
  }

  const inFlight: EndpointReport[] = handedOff.map((h) => ({
    origin: h.origin,
    at: h.startedAt,
    outcome: "in_flight",
    error: null,
    response_time_ms: config.slowAttemptMs,
    slow: true,
  }));
  await Promise.all([
    ...[...writers.values()].map((writer) => writer.flush()),
    shareSlowLane(env, toOtherLanes, {
      share: config.slowLaneOrgShare,
      slowAttemptMs: config.slowAttemptMs,
      attemptTimeoutMs: config.attemptTimeoutMs,
    }),
    reportHealth(env, [
      ...ended.flatMap((a) => (a.report ? [{ org: a.row.record.org_id, report: a.report }] : [])),
      ...handedOff.map((h, i) => ({ org: h.message.body.org_id, report: inFlight[i]! })),
    ]),
  ]);
  const unwritten: BatchMessage[] = [];
  let writeError: unknown;
  for (const {
    message,
    row: { record },
    retryDelaySeconds,
    written,
  } of ended) {
    const result = await written;
    if (!result.ok) {
      unwritten.push(message);
      writeError = result.error;
    } else if (!result.fresh && message.body.lease?.attempt === record.attempt) {
      // The handed-off attempt this message follows was logged after all, later than its
      // lease allowed for (a slow write), while this message made it again. That row is
      // this message's own (the same owner): no other message carries the delivery on, so
      // this one reads the log again and goes on from there (waits for the next attempt).
      message.retry({ delaySeconds: 0 });
      summary.replanned++;
    } else if (!result.fresh) {
      // Another message logged this attempt first; it carries the delivery on.
      message.ack();
      summary.dropped++;
    } else if (retryDelaySeconds !== null) {
      message.retry({ delaySeconds: retryDelaySeconds });
      summary.retrying++;
    } else {
      message.ack();
      summary[record.outcome === "succeeded" ? "delivered" : "failed"]++;
    }
  }
  defer(unwritten, "write_log", writeError);
  summary.deferred += unwritten.length;

  // Moved and handed-off deliveries go on in the slow lane (or the overflow lane) as new
  // messages, in as many sends as the queue's limits take (a batch of large events is more
  // than one send's 256 KB). A send that fails keeps its own messages in this lane: moved
  // ones come back after a back-off; handed-off ones once their attempt has surely ended
  // (the plan then finds it logged, or makes it).
  const sends = [...Map.groupBy(toOtherLanes, (move) => move.lane)].flatMap(([to, moves]) =>
    [...inSendLimits(moves, (move) => move.request.body)].map((chunk) => ({ to, chunk })),
  );
  for (const { to, chunk } of sends) {
    try {
      await laneQueue(env, to).sendBatch(chunk.map((move) => move.request));
      for (const move of chunk) {
        move.message.ack();
        summary[move.leaseUntil === null ? "moved" : "handed_off"]++;
        if (to === "overflow") summary.overflowed++;
      }
    } catch (error) {
      const moved = chunk.filter((move) => move.leaseUntil === null);
      defer(
        moved.map((move) => move.message),
        "move",
        error,
      );
      for (const { message, leaseUntil } of chunk) {
        if (leaseUntil !== null) message.retry({ delaySeconds: secondsUntil(leaseUntil) });
      }
      summary.deferred += chunk.length;
    }
  }
  // Back on this lane as new messages (src/delivery/requeue.ts), through no fault of their
  // own. Released deliveries (every connection held by handed-off attempts) go to the
  // tail at once: runs filled by other orgs' newly hanging endpoints could otherwise
  // release the same message until the dead-letter queue took it, failed without a single
  // attempt. A message waiting out another message's hold on its delivery's attempt 1
  // (src/org/first-attempts.ts) comes back when the hold ends.
  await requeue(
    env,
    lane,
    released.map((message) => ({ message })),
    retryOnFault("put_back"),
  );
  summary.released += released.length;
  await requeue(env, lane, holdWaits, retryOnFault("hold_wait"));
  summary.waiting += holdWaits.length;
  log();
}

/** A requeue's chunk that could not be sent falls back to a retry, with the same delay. */
function retryOnFault(stage: string): (chunk: readonly Requeue[], error: unknown) => void {
  return (chunk, error) => {
    for (const { message, delaySeconds } of chunk) message.retry({ delaySeconds: delaySeconds ?? 0 });
    logFault(stage, chunk.length, error);
  };
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * One shard's part of the batch: its deliveries' logged state (one read), a plan per
 * message (attempt, wait or drop; waits and drops are settled here), and, for the rare
 * message that did not make attempt 1, the stored event it sends (one more read). A
 * shard that fails holds up its own messages only: they are deferred.
 */
async function planGroup(
  group: ShardGroup<BatchMessage>,
  claimed: Set<string>,
  summary: Summary,
  config: Config,
): Promise<Planned[]> {
  let states: Map<string, DeliveryState>;
  try {
    states = await readDeliveryStates(group.db, [...new Set(group.messages.map((m) => m.body.delivery_id))]);
  } catch (error) {
    defer(group.messages, "read_state", error);
    summary.deferred += group.messages.length;
    return [];
  }
  const now = Date.now();
  const planned: Planned[] = [];
  for (const message of group.messages) {
    const plan = planMessage(ownerOf(message), message.body, states.get(message.body.delivery_id), now, config);
    if (plan.kind === "wait") {
      message.retry({ delaySeconds: plan.delaySeconds });
      summary.waiting++;
    } else if (plan.kind === "attempt" && !claimed.has(message.body.delivery_id)) {
      claimed.add(message.body.delivery_id);
      planned.push({ message, plan, event: message.body });
    } else {
      // Finished, not the owner, or a second message for a delivery this run attempts.
      message.ack();
      summary.dropped++;
    }
  }

  const takeOvers = planned.filter((p) => p.plan.storedEvent);
  if (takeOvers.length === 0) return planned;
  // Rare (a message that did not make attempt 1: a take-over, a redeliver, and the
  // attempts each owns after it): one more read, for the stored event.
  try {
    const stored = await readStoredEvents(
      group.db,
      takeOvers.map((p) => p.event.delivery_id),
    );
    for (const p of takeOvers) {
      const event = stored.get(p.event.delivery_id);
      if (event) p.event = { ...p.event, webhook_url: event.webhook_url, body: encoder.encode(event.body) };
    }
    return planned;
  } catch (error) {
    defer(
      takeOvers.map((p) => p.message),
      "read_event",
      error,
    );
    summary.deferred += takeOvers.length;
    return planned.filter((p) => !p.plan.storedEvent);
  }
}

/** One settings read per org of the batch, all at once; each org's settles on its own. */
function loadOrgContexts(env: Env, messages: readonly BatchMessage[]): Map<string, Promise<Settled<OrgContext>>> {
  const orgs = new Map<string, { endpoints: Set<string>; firstAttempts: FirstAttemptClaim[] }>();
  for (const message of messages) {
    const org = orgs.get(message.body.org_id) ?? { endpoints: new Set<string>(), firstAttempts: [] };
    orgs.set(message.body.org_id, org);
    const endpoint = message.body.webhook_url === null ? null : endpointOf(message.body.webhook_url);
    if (endpoint !== null) org.endpoints.add(endpoint);
    if (mayMakeAttempt1(message)) {
      org.firstAttempts.push({ delivery_id: message.body.delivery_id, owner: ownerOf(message) });
    }
  }
  return new Map(
    [...orgs].map(([orgId, asked]) => [
      orgId,
      (async (): Promise<Settled<OrgContext>> => {
        try {
          const settings = await orgSettings(env, orgId).getDeliverySettings([...asked.endpoints], asked.firstAttempts);
          return { ok: true, value: { settings, signer: await Signer.create(settings.signing_secrets) } };
        } catch (error) {
          return { ok: false, error };
        }
      })(),
    ]),
  );
}

type Target =
  | { ok: true; url: string; endpoint: string }
  | { ok: false; url: string | null; error: AttemptError; detail: string };

/** Where a delivery goes: the event's URL or the org default, if the URL rules allow it. */
function resolveTarget(event: DeliveryMessage, settings: DeliverySettings, config: Config): Target {
  const url = event.webhook_url ?? settings.webhook_url;
  if (url === null)
    return {
      ok: false,
      url,
      error: "no_webhook_url",
      detail: "the event has no webhook_url and the org has no default URL",
    };
  const check = checkWebhookUrl(url, { allowInsecure: config.allowInsecureWebhookUrls });
  const endpoint = endpointOf(url);
  if (!check.ok || endpoint === null)
    return { ok: false, url, error: "invalid_url", detail: check.ok ? "webhook_url is not a URL" : check.reason };
  return { ok: true, url, endpoint };
}

/** The log row fields every attempt of this message shares. */
function recordBase(
  message: BatchMessage,
  event: DeliveryMessage,
  plan: AttemptPlan,
  url: string | null,
  attemptedAt: number,
) {
  return {
    delivery_id: event.delivery_id,
    attempt: plan.attempt,
    org_id: event.org_id,
    job_id: event.job_id,
    event_type: event.event_type,
    message_id: ownerOf(message),
    attempted_at: attemptedAt,
    url,
    ...eventColumns(plan.attempt, event),
  };
}

/** Nothing can be sent, and retrying cannot help: the delivery fails now. */
function unsentAttempt(
  message: BatchMessage,
  event: DeliveryMessage,
  plan: AttemptPlan,
  url: string | null,
  error: AttemptError,
  detail: string,
): Attempted {
  const { retry_after_seconds: _, ...response } = unsentResponse(error, detail);
  const record: AttemptRecord = {
    ...recordBase(message, event, plan, url, Date.now()),
    ...response,
    outcome: "failed",
    next_attempt_at: null,
    signatures: null,
  };
  return { message, retryDelaySeconds: null, report: null, row: encodeAttempt(record) };
}

/** Makes one attempt and describes it as a log row. Throws only on internal faults. */
async function makeAttempt(
  message: BatchMessage,
  event: DeliveryMessage,
  plan: AttemptPlan,
  url: string,
  endpoint: string,
  org: OrgContext,
  config: Config,
  relayed: ((headers: Record<string, string>) => void) | null,
): Promise<Attempted> {
  const attemptedAt = Date.now();
  const timestamp = Math.floor(attemptedAt / 1000);
  const { signatures, headers } = await signedAttemptHeaders(org.signer, event, plan.attempt, timestamp);
  relayed?.(headers);
  const { retry_after_seconds, ...response } = await postWebhook(url, headers, event.body, {
    timeoutMs: config.attemptTimeoutMs,
    responseBodyLimitBytes: config.responseBodyLimitBytes,
  });
  const retryDelaySeconds =
    response.error !== null && plan.scheduled
      ? retryDelayAfter(plan.attempt, config.retryDelaysSeconds, retry_after_seconds)
      : null;
  const outcome = response.error === null ? "succeeded" : "failed";
  return {
    message,
    retryDelaySeconds,
    report: {
      origin: endpoint,
      at: attemptedAt,
      outcome,
      error: response.error,
      response_time_ms: response.response_time_ms,
      slow: response.response_time_ms >= config.slowAttemptMs,
    },
    // Encoded now, while the run's other attempts wait on the network.
    row: encodeAttempt({
      ...recordBase(message, event, plan, url, attemptedAt),
      ...response,
      outcome,
      next_attempt_at: retryDelaySeconds === null ? null : Date.now() + retryDelaySeconds * 1000,
      // The log keeps the signatures; the other headers follow from the row (attemptHeaders).
      signatures,
    }),
  };
}

/** A delivery going on as a new message in another lane: the request, and the message it replaces. */
interface LaneMove {
  request: MessageSendRequest<DeliveryMessage>;
  message: BatchMessage;
  /** What the org's share of the slow lane counts it by. */
  share: SlowLaneMove;
  /** A handed-off attempt's lease end (unix ms); null otherwise. */
  leaseUntil: number | null;
  /** The slow lane, unless the org's share of it is used up (`shareSlowLane`). */
  lane: AsideLane;
}

/** The same delivery as a new message in another lane that keeps its owner. */
function moveOf(message: BatchMessage, endpoint: string, running: boolean): LaneMove {
  return {
    request: requeued(message),
    message,
    share: { endpoint, running },
    leaseUntil: null,
    lane: "slow",
  };
}

/**
 * Asks each org's Durable Object, once per org, which of its moves fit in its share of
 * the slow lane (src/org/slow-lane-share.ts); the others are sent to the overflow lane.
 * Like health, the share is advice: when an object cannot answer, its moves take the
 * slow lane as they did before there were shares.
 */
async function shareSlowLane(env: Env, moves: readonly LaneMove[], rules: ShareRules): Promise<void> {
  await Promise.all(
    [...Map.groupBy(moves, (move) => move.message.body.org_id)].map(async ([orgId, list]) => {
      try {
        const admitted = await orgSettings(env, orgId).admitToSlowLane(
          list.map((move) => move.share),
          rules,
        );
        list.forEach((move, i) => {
          if (admitted[i] === false) move.lane = "overflow";
        });
      } catch (error) {
        logFault("share_slow_lane", list.length, error);
      }
    }),
  );
}

/**
 * The background end of handed-off attempts: each one's log row is written as soon as
 * that attempt ends, then its outcome goes to its org's health. Not once they all have:
 * the message that follows each attempt waits only until its own timeout + 5 s
 * (its lease), and must find the row there, or it makes the attempt again. A failure here
 * loses nothing: that message makes the attempt again when its lease ends and finds it
 * unlogged.
 */
async function finishHandedOff(
  values: readonly Promise<TaskValue>[],
  env: Env,
  shardOfOrg: ReadonlyMap<string, ShardGroup<BatchMessage>>,
): Promise<void> {
  const written: Attempted[] = [];
  await Promise.all(
    values.map(async (value) => {
      const settled = await value;
      if (!settled.ok) return; // an internal fault: the lease's message makes the attempt again
      const { attempted } = settled;
      try {
        await writeAttempts(shardOfOrg.get(attempted.message.body.org_id)!.db, [attempted.row]);
      } catch (error) {
        logFault("handed_off_write", 1, error);
        return;
      }
      written.push(attempted);
      if (attempted.report) await reportHealth(env, [{ org: attempted.row.record.org_id, report: attempted.report }]);
    }),
  );
  console.log(
    JSON.stringify({
      event: "deliveries.handed_off_ended",
      attempts: written.length,
      succeeded: written.filter((a) => a.row.record.outcome === "succeeded").length,
    }),
  );
}

/**
 * Endpoint outcomes to each org's Durable Object, one call per org. Health is advice:
 * when an object cannot be reached, deliveries go on and the outcomes are not counted.
 */
async function reportHealth(env: Env, reports: ReadonlyArray<{ org: string; report: EndpointReport }>): Promise<void> {
  const byOrg = new Map<string, EndpointReport[]>();
  for (const { org, report } of reports) byOrg.set(org, [...(byOrg.get(org) ?? []), report]);
  await Promise.all(
    [...byOrg].map(async ([orgId, list]) => {
      try {
        await orgSettings(env, orgId).reportAttempts(list.sort((a, b) => a.at - b.at));
      } catch (error) {
        logFault("report_health", list.length, error);
      }
    }),
  );
}

/** Gives messages back to the queue with back-off: their attempt was not logged. */
function defer(messages: readonly BatchMessage[], stage: string, error: unknown): void {
  for (const message of messages) message.retry({ delaySeconds: crashBackoffSeconds(message.attempts) });
  if (messages.length > 0) logFault(stage, messages.length, error, "deliveries.deferred");
}

function logBatch(summary: Record<string, string | number>): void {
  console.log(JSON.stringify({ event: "deliveries.batch", ...summary }));
}
