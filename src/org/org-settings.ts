import { DurableObject } from "cloudflare:workers";
import { readConfig } from "../config";
import { liveKeyIds } from "../store/api-keys";
import {
  applyReport,
  type EndpointHealth,
  type EndpointHealthSummary,
  type EndpointReport,
  endpointOf,
  type Lane,
  NEW_ENDPOINT_WINDOW_MS,
  NEW_ENDPOINTS_HANG_AFTER,
  newEndpointHealth,
  summarizeHealth,
} from "./endpoint-health";
import { type FirstAttemptClaim, type FirstAttemptHold, FirstAttemptHolds } from "./first-attempts";
import {
  type DeliveryFrame,
  isSkipped,
  KEY_ID_HEADER,
  type ListenerResult,
  MAX_ANSWERS_OWED,
  MAX_LISTENER_RESULTS,
  MAX_LISTENERS,
  newAttachment,
  readAttachment,
  readClientFrame,
  settleAnswers,
} from "./listeners";
import { placeOrg } from "./placement";
import { migrateSchema } from "./schema";
import { generateSigningSecret } from "./signing-secret";
import {
  admitToSlowLane,
  expectedAttemptMs,
  type ShareHealth,
  type ShareRules,
  type SlowLaneMove,
} from "./slow-lane-share";
import { checkWebhookUrl } from "./webhook-url";

/**
 * One Durable Object per org (`idFromName(org_id)`) owns the org's delivery settings:
 * its default webhook URL and its signing secrets. Nothing else stores them, so a
 * rotation is seen by the next queue run that starts, and no D1 query can ever leak a secret.
 *
 * It also keeps the health of every endpoint the org's deliveries go to
 * (src/org/endpoint-health.ts): the consumer reads it with the settings, once per org
 * per batch, to choose each delivery's lane, and reports each run's outcomes back.
 *
 * Storage schema (SQLite in the object, versioned in src/org/schema.ts):
 *
 *   org_settings (one row)
 *     id                          1 (a single row)
 *     webhook_url                 the org default, or NULL
 *     signing_secret              the current `whsec_…` secret
 *     secret_rotated_at           unix ms of the last rotation, NULL if never rotated
 *     previous_secrets            JSON `[{secret, expires_at}]`, newest first: the secrets
 *                                 replaced in the last 24 h, each signing `webhook-signature`
 *                                 until its `expires_at` (unix ms); at most MAX_PREVIOUS_SECRETS
 *     previous_secret, previous_secret_expires_at
 *                                 before schema v5, the one previous secret; no longer written
 *     log_shard                   the D1 binding that holds the org's log (src/store/shards.ts),
 *                                 chosen with the row and never changed; NULL only if lost
 *
 *   endpoint_health (one row per endpoint, at most MAX_ENDPOINTS)
 *     origin                      the endpoint (scheme, host, port), primary key
 *     lane, lane_reason, …        the fields of `EndpointHealth`; `hours` is JSON
 *
 *   listener_results (the last MAX_LISTENER_RESULTS)
 *     what `zupertry listen` sessions answered for relayed deliveries (src/org/listeners.ts)
 *
 * And the org's listener sessions: WebSockets accepted with the hibernation API, each
 * tagged with the id of the key it signed in with, and carrying its account as its
 * attachment (`ListenerAttachment`: answers allowed, frames and bytes owed, deliveries
 * skipped). Fields added to it later are read as empty from an older session's.
 *
 * Why previous secrets: Standard Webhooks receivers accept any of several signatures,
 * so during 24 h after a rotation deliveries carry the old secret's too and receivers can
 * switch over without a gap, however many rotations that day brought (a double click
 * rotates twice). `X-Zupertry-Signature` has room for one value and switches in the runs
 * that start after the rotation.
 */

/** What an org sees of its endpoint settings (GET/PUT /v1/webhook). */
export interface WebhookSettings {
  webhook_url: string | null;
  signing_secret: string;
  /** ISO time of the last rotation, or null when the secret was never rotated. */
  secret_rotated_at: string | null;
  /** The default URL's endpoint; null without a default URL. */
  health: EndpointHealthSummary | null;
  /** `zupertry listen` sessions connected now. */
  listeners: number;
}

/** What the delivery consumer needs: where to POST, what to sign with (current first), which lane, where to log. */
export interface DeliverySettings {
  webhook_url: string | null;
  signing_secrets: string[];
  /** Of the default URL's endpoint and the endpoints asked about: those in the slow lane. */
  slow_endpoints: string[];
  /** The org's log shard; null when its record is lost (the org's deliveries then wait, loudly). */
  log_shard: string | null;
  /** `zupertry listen` sessions connected now: the run relays the org's attempts to them. */
  listeners: number;
  /**
   * Of the deliveries asked about (`firstAttempts`), those whose attempt 1 another message
   * than the one asking holds: each with its holder and when the hold ends (unix ms). A
   * message held elsewhere waits, and does not make it too (src/org/first-attempts.ts).
   */
  held: Record<string, FirstAttemptHold>;
}

export type SetWebhookUrlResult = { ok: true; settings: WebhookSettings } | { ok: false; reason: string };

/** How long the secret before a rotation keeps signing `webhook-signature`. */
export const PREVIOUS_SECRET_GRACE_MS = 24 * 60 * 60 * 1000;
/** Replaced secrets that still sign at once: each is one more HMAC and signature per delivery. */
export const MAX_PREVIOUS_SECRETS = 4;

interface PreviousSecret {
  secret: string;
  expires_at: number;
}

/** The replaced secrets that still sign at `now`, newest first. */
function previousSecrets(row: Pick<SettingsRow, "previous_secrets">, now: number): PreviousSecret[] {
  return (JSON.parse(row.previous_secrets) as PreviousSecret[]).filter((p) => p.expires_at > now);
}

/** The endpoint (origin) of the org's default URL; null without one. */
function defaultEndpointOf(row: Pick<SettingsRow, "webhook_url">): string | null {
  return row.webhook_url === null ? null : endpointOf(row.webhook_url);
}

/**
 * Endpoints whose health an org keeps. Per-event URLs can name any number of hosts;
 * past this many, the endpoint least recently attempted is forgotten (it starts over
 * in the fast lane if it comes back), but never the default URL's.
 */
export const MAX_ENDPOINTS = 1000;

/** Listener results beyond MAX_LISTENER_RESULTS are deleted once every this many. */
const TRIM_EVERY = 50;

const encoder = new TextEncoder();

/**
 * A redeliver queued for one state of a delivery is remembered this long (in storage: the
 * object leaves memory after 10 s without a call): a second click, or a client's retry,
 * in the meantime queues nothing more. Longer than a queued message takes to be made,
 * short enough to forget.
 */
const REDELIVER_CLAIM_MS = 10 * 60 * 1000;
/**
 * A claim neither confirmed nor given back this long belongs to a request that died
 * between the claim and the queue write: a click waiting on it takes it over.
 */
const REDELIVER_CLAIMING_MS = 10_000;

/** A redeliver claimed for one state of a delivery, being queued (once queued, it is in `redeliver_claims`). */
interface RedeliverClaim {
  at: number;
  /** Whose claim it is: a request whose claim lapsed may not confirm or give back the next one's. */
  token: string;
  /** Resolves when the claim is confirmed or given back. */
  settled: Promise<void>;
  settle: () => void;
}

/** What a redeliver request is to do: queue it (its claim, by its token), or nothing (it is queued). */
export type RedeliverClaimResult = { status: "claimed"; token: string } | { status: "queued" };
/** Sessions that have not pinged this long (since they connected) are dead (a laptop asleep) and make room. */
const LISTENER_DEAD_AFTER_MS = 90_000;
/**
 * While sessions are open, their keys are checked against D1 this often (an alarm): a
 * revoke closes its sessions at once, unless the object could not be reached then, or
 * forgot the revoke (it left memory, 10 s after its last call); this check closes them within a minute all the same.
 */
export const LISTENER_KEY_CHECK_MS = 60_000;

interface HealthRow extends Record<string, SqlStorageValue> {
  origin: string;
  lane: string;
  lane_reason: string | null;
  lane_changed_at: number | null;
  demoted_at: number | null;
  demotions: number;
  good_streak: number;
  consecutive_failures: number;
  last_attempt_at: number | null;
  last_success_at: number | null;
  last_failure_at: number | null;
  last_error: string | null;
  latency_ms: number | null;
  recent: string;
  hours: string;
}

interface SettingsRow extends Record<string, SqlStorageValue> {
  webhook_url: string | null;
  signing_secret: string;
  secret_rotated_at: number | null;
  /** JSON `PreviousSecret[]`, newest first. */
  previous_secrets: string;
  log_shard: string | null;
}

export class OrgSettings extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /**
   * Redelivers being queued, by `delivery_id:after_attempt`. In memory: a claim lives from
   * the click to its queue write, and the object stays in memory while calls come.
   */
  private readonly redelivers = new Map<string, RedeliverClaim>();
  /**
   * Keys revoked while this object lives: a session whose upgrade passed the key check
   * just before the revoke, and reaches the object just after it, is refused all the same.
   */
  private readonly revokedKeys = new Set<string>();
  /**
   * The org's slow-lane clock (src/org/slow-lane-share.ts). In memory on purpose: it is
   * never more than one attempt timeout ahead of now, so by the time an object is evicted
   * (after 10 s without a call, or a deploy) it has run down anyway; a restart forgets at most one
   * timeout's worth of deliveries let in.
   */
  private slowLaneClock = 0;
  /** Which message makes each new delivery's attempt 1 (src/org/first-attempts.ts). In memory, on purpose. */
  private readonly firstAttempts = new FirstAttemptHolds();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    migrateSchema(ctx.storage);
    // A listener's keep-alive is answered by the runtime: it never wakes the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  /**
   * A listener session (GET /v1/listen, already authenticated by the Worker, which names
   * the key in KEY_ID_HEADER): accepted with the hibernation API, at most MAX_LISTENERS.
   */
  override async fetch(request: Request): Promise<Response> {
    const keyId = request.headers.get(KEY_ID_HEADER);
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket" || !keyId) {
      return Response.json({ error: { code: "invalid_request", message: "a WebSocket upgrade" } }, { status: 426 });
    }
    if (this.revokedKeys.has(keyId)) {
      return Response.json({ error: { code: "unauthorized", message: "this API key was revoked" } }, { status: 401 });
    }
    this.closeDeadListeners();
    if (this.listeners().length >= MAX_LISTENERS) {
      return Response.json(
        {
          error: {
            code: "rate_limited",
            message: `this org has ${MAX_LISTENERS} listeners connected already, the most it may`,
          },
        },
        { status: 429 },
      );
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [keyId]);
    server.serializeAttachment(newAttachment(Date.now()));
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + LISTENER_KEY_CHECK_MS);
    }
    server.send(JSON.stringify({ type: "hello", listeners: this.listeners().length }));
    return new Response(null, { status: 101, webSocket: client });
  }

  /** A listener's frame: a result is kept; anything else is refused (src/org/listeners.ts). */
  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const verdict = readClientFrame(message);
    if (!verdict.ok) {
      if ("close" in verdict) ws.close(verdict.close.code, verdict.close.reason);
      else ws.send(JSON.stringify({ type: "error", message: verdict.error }));
      return;
    }
    const keyId = this.ctx.getTags(ws)[0] ?? "unknown";
    const attachment = readAttachment(ws);
    const kept = verdict.results.slice(0, attachment.answersAllowed);
    const { attachment: settled, told } = settleAnswers(attachment, kept.length, Date.now());
    ws.serializeAttachment(settled);
    if (told) ws.send(JSON.stringify(told));
    if (kept.length < verdict.results.length) {
      const refused = verdict.results.length - kept.length;
      ws.send(
        JSON.stringify({
          type: "error",
          message: `${refused} result(s) not kept: more results than deliveries were relayed to this session`,
        }),
      );
      if (kept.length === 0) return;
    }
    this.ctx.storage.transactionSync(() => {
      let last = 0;
      for (const r of kept) {
        last = this.sql
          .exec<{ id: number }>(
            `INSERT INTO listener_results (received_at, key_id, delivery_id, attempt, job_id, event_type,
               status_code, response_time_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
            Date.now(),
            keyId,
            r.delivery_id,
            r.attempt,
            r.job_id,
            r.event_type,
            r.status_code,
            r.response_time_ms,
            r.error,
          )
          .one().id;
      }
      // Trimmed now and then, not on every result: a busy listener answers for each delivery.
      if (Math.floor(last / TRIM_EVERY) > Math.floor((last - kept.length) / TRIM_EVERY)) {
        this.sql.exec("DELETE FROM listener_results WHERE id <= ?", last - MAX_LISTENER_RESULTS);
      }
    });
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    // Complete the closing handshake (a no-op once closed).
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // already closed
    }
  }

  /**
   * Relays a consumer run's attempts to every listener. `send` queues the frame and
   * returns: a slow listener holds up nothing, and one that is gone is skipped. So is,
   * frame by frame, one that owes answers for MAX_OWED_BYTES of frames (src/org/listeners.ts):
   * those deliveries are counted, not queued.
   */
  relay(frames: readonly DeliveryFrame[]): number {
    const texts = frames.map((frame) => JSON.stringify(frame));
    // Bytes as sent (UTF-8), not characters: an event in a script of 3-byte characters is
    // three times its length.
    let sizes: number[] | undefined;
    let sent = 0;
    for (const ws of this.listeners()) {
      const attachment = readAttachment(ws);
      let sentHere = 0;
      let bytesHere = 0;
      let skippedHere = 0;
      for (const [i, text] of texts.entries()) {
        if (isSkipped(attachment, bytesHere)) {
          skippedHere++;
          continue;
        }
        try {
          ws.send(text);
        } catch {
          break; // closing or closed
        }
        sizes ??= texts.map((t) => encoder.encode(t).byteLength);
        sentHere++;
        bytesHere += sizes[i]!;
      }
      if (sentHere === 0 && skippedHere === 0) continue;
      sent += sentHere;
      ws.serializeAttachment({
        ...attachment,
        answersAllowed: Math.min(attachment.answersAllowed + sentHere, MAX_ANSWERS_OWED),
        owedFrames: attachment.owedFrames + sentHere,
        owedBytes: attachment.owedBytes + bytesHere,
        skipped: attachment.skipped + skippedHere,
        skippedSince: skippedHere > 0 ? (attachment.skippedSince ?? Date.now()) : attachment.skippedSince,
      });
    }
    return sent;
  }

  /** The open listener sessions (one being closed still shows in `getWebSockets` for a moment). */
  private listeners(): WebSocket[] {
    return this.ctx.getWebSockets().filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  /**
   * Closes sessions that have been silent for LISTENER_DEAD_AFTER_MS: the CLI pings
   * every 30 s (answered by the runtime, which keeps the time), so a session that stopped
   * is gone, whatever TCP still believes. Without this, dead sessions would fill the cap.
   */
  private closeDeadListeners(): void {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const lastPing = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      const lastHeard = Math.max(lastPing, readAttachment(ws).connectedAt);
      if (now - lastHeard > LISTENER_DEAD_AFTER_MS) {
        try {
          ws.close(1001, "no ping for 90 s");
        } catch {
          // closed already
        }
      }
    }
  }

  /**
   * Claims a redeliver of `deliveryId` after its attempt `afterAttempt`: `claimed` (the
   * caller queues it, then confirms or gives the claim back), or `queued` when one was
   * queued for that same state lately (a double click queues one attempt, not two). A
   * click that finds another still being queued waits for it: if that one is given back
   * (the send limit refused it, the queue write failed), this click claims it instead,
   * so that its 202 always means an attempt is queued.
   */
  async claimRedeliver(deliveryId: string, afterAttempt: number): Promise<RedeliverClaimResult> {
    const key = `${deliveryId}:${afterAttempt}`;
    for (;;) {
      const now = Date.now();
      for (const [k, claim] of this.redelivers) {
        if (now - claim.at > REDELIVER_CLAIMING_MS) {
          this.redelivers.delete(k);
          claim.settle();
        }
      }
      const queued = this.sql
        .exec("SELECT 1 FROM redeliver_claims WHERE claim = ? AND queued_at > ?", key, now - REDELIVER_CLAIM_MS)
        .toArray();
      if (queued.length > 0) return { status: "queued" };
      const claim = this.redelivers.get(key);
      if (claim === undefined) {
        const { promise, resolve } = Promise.withResolvers<void>();
        const token = crypto.randomUUID();
        this.redelivers.set(key, { at: now, token, settled: promise, settle: resolve });
        return { status: "claimed", token };
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        claim.settled,
        new Promise((resolve) => {
          timer = setTimeout(resolve, claim.at + REDELIVER_CLAIMING_MS + 1 - now);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  /** The claimed redeliver is queued: clicks for the same state now queue nothing. */
  confirmRedeliver(deliveryId: string, afterAttempt: number, token: string): void {
    const key = `${deliveryId}:${afterAttempt}`;
    const claim = this.redelivers.get(key);
    // Lapsed, and another request's now: that one confirms or gives back its own.
    if (claim !== undefined && claim.token !== token) return;
    // Confirmed also when the claim is gone from memory (the object restarted, or the claim
    // lapsed while the queue write was slow): the redeliver is queued all the same.
    const now = Date.now();
    this.sql.exec("DELETE FROM redeliver_claims WHERE queued_at <= ?", now - REDELIVER_CLAIM_MS);
    this.sql.exec("INSERT OR REPLACE INTO redeliver_claims (claim, queued_at) VALUES (?, ?)", key, now);
    this.redelivers.delete(key);
    claim?.settle();
  }

  /** Gives back a claim whose redeliver was not queued (refused by the send limit, or the queue failed). */
  releaseRedeliver(deliveryId: string, afterAttempt: number, token: string): void {
    const key = `${deliveryId}:${afterAttempt}`;
    const claim = this.redelivers.get(key);
    if (claim?.token !== token) return;
    claim.settle();
    this.redelivers.delete(key);
  }

  /** Closes the sessions opened with a key (it was revoked): 4001, which the CLI takes as final. */
  closeListeners(keyId: string): number {
    this.revokedKeys.add(keyId);
    const sessions = this.ctx.getWebSockets(keyId).filter((ws) => ws.readyState === WebSocket.OPEN);
    for (const ws of sessions) {
      try {
        ws.close(4001, "API key revoked");
      } catch {
        // closed meanwhile
      }
    }
    return sessions.length;
  }

  /**
   * The listener key check (LISTENER_KEY_CHECK_MS): closes the sessions of keys D1 no
   * longer holds valid, and comes back while any session is open. Dead sessions (a
   * laptop asleep, its socket still "open") are closed first, so that they keep neither
   * this alarm nor D1 busy. A check that cannot reach D1 is made again at the next one.
   */
  override async alarm(): Promise<void> {
    this.closeDeadListeners();
    const keyIds = [...new Set(this.listeners().flatMap((ws) => this.ctx.getTags(ws)))];
    if (keyIds.length === 0) return;
    try {
      const live = await liveKeyIds(this.env.DB, keyIds);
      for (const keyId of keyIds) if (!live.has(keyId)) this.closeListeners(keyId);
    } catch (error) {
      console.error(JSON.stringify({ event: "listeners.key_check_failed", error: String(error).slice(0, 200) }));
    }
    if (this.listeners().length > 0) await this.ctx.storage.setAlarm(Date.now() + LISTENER_KEY_CHECK_MS);
  }

  /** What the org's listeners answered, newest first. */
  getListenerResults(limit = 100): ListenerResult[] {
    return this.sql
      .exec<{
        delivery_id: string;
        attempt: number;
        job_id: string;
        event_type: string;
        key_id: string;
        status_code: number | null;
        response_time_ms: number;
        error: string | null;
        received_at: number;
      }>(
        `SELECT delivery_id, attempt, job_id, event_type, key_id, status_code, response_time_ms, error, received_at
           FROM listener_results ORDER BY id DESC LIMIT ?`,
        limit,
      )
      .toArray()
      .map(({ key_id, received_at, ...r }) => ({
        ...r,
        listener_key_id: key_id,
        received_at: new Date(received_at).toISOString(),
      }));
  }

  /** The org's settings; the first call creates its signing secret. */
  getWebhook(): WebhookSettings {
    return this.present(this.row());
  }

  /** Sets (or, with null, clears) the org default URL after checking the URL rules. */
  setWebhookUrl(webhookUrl: string | null): SetWebhookUrlResult {
    if (webhookUrl !== null) {
      const check = checkWebhookUrl(webhookUrl, { allowInsecure: readConfig(this.env).allowInsecureWebhookUrls });
      if (!check.ok) return check;
    }
    const row = this.row();
    this.sql.exec("UPDATE org_settings SET webhook_url = ? WHERE id = 1", webhookUrl);
    return { ok: true, settings: this.present({ ...row, webhook_url: webhookUrl }) };
  }

  /**
   * Replaces the current secret; the old one keeps signing `webhook-signature` for 24 h,
   * beside those replaced earlier that day (the newest MAX_PREVIOUS_SECRETS).
   */
  rotateSecret(): WebhookSettings {
    const row = this.row();
    const now = Date.now();
    const previous = [
      { secret: row.signing_secret, expires_at: now + PREVIOUS_SECRET_GRACE_MS },
      ...previousSecrets(row, now),
    ].slice(0, MAX_PREVIOUS_SECRETS);
    const next: SettingsRow = {
      ...row,
      signing_secret: generateSigningSecret(),
      secret_rotated_at: now,
      previous_secrets: JSON.stringify(previous),
    };
    this.sql.exec(
      "UPDATE org_settings SET signing_secret = ?, secret_rotated_at = ?, previous_secrets = ? WHERE id = 1",
      next.signing_secret,
      next.secret_rotated_at,
      next.previous_secrets,
    );
    return this.present(next);
  }

  /**
   * Read by the consumer once per org per queue batch. `endpoints`: the endpoints of the
   * batch's per-event URLs, whose lanes it needs besides the default's. `firstAttempts`:
   * the batch's messages that may make a delivery's attempt 1, held for them unless
   * another message holds it (`held`).
   */
  getDeliverySettings(
    endpoints: readonly string[] = [],
    firstAttempts: readonly FirstAttemptClaim[] = [],
  ): DeliverySettings {
    const row = this.row();
    const secrets = [row.signing_secret, ...previousSecrets(row, Date.now()).map((p) => p.secret)];
    const defaultEndpoint = defaultEndpointOf(row);
    const asked = [...new Set(defaultEndpoint === null ? endpoints : [defaultEndpoint, ...endpoints])];
    const known =
      asked.length === 0
        ? []
        : this.sql
            .exec<{ origin: string; lane: Lane }>(
              // One bound JSON list: a batch can ask about more origins than the 100
              // parameters a statement may bind.
              `SELECT origin, lane FROM endpoint_health WHERE origin IN (SELECT value FROM json_each(?))`,
              JSON.stringify(asked),
            )
            .toArray();
    const slow = known.filter((r) => r.lane === "slow").map((r) => r.origin);
    if (known.length < asked.length && this.newEndpointsHang(Date.now())) {
      // Never the org's default: the customer chose it for every event (and may just have).
      const seen = new Set([...known.map((r) => r.origin), defaultEndpoint]);
      slow.push(...asked.filter((origin) => !seen.has(origin)));
    }
    return {
      webhook_url: row.webhook_url,
      signing_secrets: secrets,
      slow_endpoints: slow,
      log_shard: row.log_shard,
      listeners: this.listeners().length,
      held: this.firstAttempts.claim(firstAttempts, Date.now()),
    };
  }

  /**
   * Whether NEW_ENDPOINTS_HANG_AFTER of this org's endpoints that never answered well
   * started hanging within NEW_ENDPOINT_WINDOW_MS: its events keep naming new
   * endpoints that hang (per-event URLs, a new host each time). Each would cost a
   * fast-lane run a hand-off (SLOW_ATTEMPT_MS on up to 4 of its connections) before its
   * own health moved it aside; so, meanwhile, a per-event endpoint this org has never
   * sent to (no health kept) starts in the slow lane: its first answer there makes it
   * known, and its own health decides from then on. The org's default and the endpoints
   * it has sent to keep their own lanes; other orgs are not concerned (health is per org).
   */
  private newEndpointsHang(now: number): boolean {
    return (
      this.sql
        .exec<{ n: number }>(
          // Hung: moved aside as slow or timed out (`lane_reason`, or a timeout among its
          // recent outcomes when later failures renamed the reason `failing`).
          `SELECT COUNT(*) AS n FROM endpoint_health
            WHERE last_success_at IS NULL AND demoted_at > ?
              AND (lane_reason IN ('slow', 'timeout') OR instr(recent, 't') > 0)`,
          now - NEW_ENDPOINT_WINDOW_MS,
        )
        .one().n >= NEW_ENDPOINTS_HANG_AFTER
    );
  }

  /**
   * Asked by the fast lane as it moves deliveries to the slow lane, one call per org per
   * run: which of them (in order) fit in the org's share of the slow lane.
   * The others take the overflow lane (src/delivery/lanes.ts). The rules come with the
   * call, from the settings the consumer runs with (as its health reports do).
   */
  admitToSlowLane(moves: ReadonlyArray<SlowLaneMove>, rules: ShareRules): boolean[] {
    const health = new Map(
      this.sql
        .exec<ShareHealth & { origin: string }>(
          `SELECT origin, latency_ms, recent, demoted_at, last_attempt_at FROM endpoint_health
            WHERE origin IN (SELECT value FROM json_each(?))`,
          JSON.stringify([...new Set(moves.map((move) => move.endpoint))]),
        )
        .toArray()
        .map((r) => [r.origin, r] as const),
    );
    const expected = moves.map((move) => expectedAttemptMs(health.get(move.endpoint) ?? null, move.running, rules));
    const { admitted, clock } = admitToSlowLane(this.slowLaneClock, expected, Date.now(), rules);
    this.slowLaneClock = clock;
    return admitted;
  }

  /**
   * The org's log shard, for the API's log reads. Like every read here, the first one
   * creates the org's settings, and its shard with them. Null: the record was lost.
   */
  getLogShard(): string | null {
    return this.row().log_shard;
  }

  /**
   * A consumer run's outcomes, oldest first: each moves its endpoint's health by the
   * rules of src/org/endpoint-health.ts. One write per endpoint touched.
   */
  reportAttempts(reports: readonly EndpointReport[]): void {
    const byEndpoint = new Map<string, EndpointReport[]>();
    for (const report of reports) byEndpoint.set(report.origin, [...(byEndpoint.get(report.origin) ?? []), report]);
    this.ctx.storage.transactionSync(() => {
      let added = false;
      for (const [origin, list] of byEndpoint) {
        const known = this.health(origin);
        added ||= known === null;
        this.saveHealth(list.reduce(applyReport, known ?? newEndpointHealth(origin)));
      }
      if (!added) return;
      const count = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM endpoint_health").one().n;
      if (count > MAX_ENDPOINTS) {
        // The least recently used go, never the default's: however many per-event URLs an
        // org's events name, the endpoint it chose for all of them keeps its health (and
        // its lane) and shows it in GET /v1/webhook.
        this.sql.exec(
          `DELETE FROM endpoint_health
            WHERE origin IN (SELECT origin FROM endpoint_health WHERE origin IS NOT ?
                              ORDER BY COALESCE(last_attempt_at, lane_changed_at) LIMIT ?)`,
          defaultEndpointOf(this.row()),
          count - MAX_ENDPOINTS,
        );
      }
    });
  }

  /** The health of one endpoint of this org; null when nothing was ever sent there. */
  getEndpointHealth(origin: string): EndpointHealthSummary | null {
    const health = this.health(origin);
    return health && summarizeHealth(health, Date.now());
  }

  private health(origin: string): EndpointHealth | null {
    const row = this.sql.exec<HealthRow>("SELECT * FROM endpoint_health WHERE origin = ?", origin).toArray()[0];
    return row ? ({ ...row, hours: JSON.parse(row.hours) } as EndpointHealth) : null;
  }

  private saveHealth(h: EndpointHealth): void {
    this.sql.exec(
      `INSERT INTO endpoint_health (origin, lane, lane_reason, lane_changed_at, demoted_at, demotions, good_streak,
         consecutive_failures, last_attempt_at, last_success_at, last_failure_at, last_error, latency_ms, recent, hours)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (origin) DO UPDATE SET lane = excluded.lane, lane_reason = excluded.lane_reason,
         lane_changed_at = excluded.lane_changed_at, demoted_at = excluded.demoted_at,
         demotions = excluded.demotions, good_streak = excluded.good_streak,
         consecutive_failures = excluded.consecutive_failures, last_attempt_at = excluded.last_attempt_at,
         last_success_at = excluded.last_success_at, last_failure_at = excluded.last_failure_at,
         last_error = excluded.last_error, latency_ms = excluded.latency_ms, recent = excluded.recent,
         hours = excluded.hours`,
      h.origin,
      h.lane,
      h.lane_reason,
      h.lane_changed_at,
      h.demoted_at,
      h.demotions,
      h.good_streak,
      h.consecutive_failures,
      h.last_attempt_at,
      h.last_success_at,
      h.last_failure_at,
      h.last_error,
      h.latency_ms,
      h.recent,
      JSON.stringify(h.hours),
    );
  }

  private present(row: SettingsRow): WebhookSettings {
    const endpoint = defaultEndpointOf(row);
    return {
      webhook_url: row.webhook_url,
      signing_secret: row.signing_secret,
      secret_rotated_at: row.secret_rotated_at === null ? null : new Date(row.secret_rotated_at).toISOString(),
      health:
        endpoint === null
          ? null
          : (this.getEndpointHealth(endpoint) ?? summarizeHealth(newEndpointHealth(endpoint), Date.now())),
      listeners: this.listeners().length,
    };
  }

  private row(): SettingsRow {
    const existing = this.sql.exec<SettingsRow>("SELECT * FROM org_settings WHERE id = 1").toArray()[0];
    if (existing) return existing;
    const created: SettingsRow = {
      webhook_url: null,
      signing_secret: generateSigningSecret(),
      secret_rotated_at: null,
      previous_secrets: "[]",
      // The org's shard, for good (src/org/placement.ts). The object's id stands for the
      // org: `idFromName(org_id)` derives it from the org id, always the same.
      log_shard: placeOrg(this.ctx.id.toString(), readConfig(this.env).openLogShards),
    };
    this.sql.exec(
      "INSERT INTO org_settings (id, signing_secret, log_shard) VALUES (1, ?, ?)",
      created.signing_secret,
      created.log_shard,
    );
    return created;
  }
}

/** The settings object of one org. */
export function orgSettings(env: Pick<Env, "ORG_SETTINGS">, orgId: string): DurableObjectStub<OrgSettings> {
  return env.ORG_SETTINGS.get(env.ORG_SETTINGS.idFromName(orgId));
}
