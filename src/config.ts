/**
 * Runtime settings, read from the Worker's vars (see wrangler.toml and DESIGN.md).
 *
 * Vars always arrive as strings (`wrangler dev --var NAME:VALUE` included), so they
 * are parsed here once per `env` object and validated loudly: a typo in a delay or a
 * timeout must stop the Worker, not quietly change the schedule customers rely on.
 */

/** The longest delay a queue retry accepts (12 h). */
export const MAX_QUEUE_DELAY_SECONDS = 43_200;

export interface Config {
  /** Delays before attempts 2..n; attempt 1 is immediate, so there are `length + 1` attempts. */
  readonly retryDelaysSeconds: readonly number[];
  readonly attemptTimeoutMs: number;
  /** Allows `http://` and loopback targets (local dev and tests only). */
  readonly allowInsecureWebhookUrls: boolean;
  readonly responseBodyLimitBytes: number;
  readonly logRetentionDays: number;
  /**
   * An attempt still running after this long marks its endpoint slow: the fast (or bulk) lane stops
   * waiting for it (the attempt goes on in the background) and sends the endpoint's next
   * deliveries to the slow lane. See src/delivery/lanes.ts.
   */
  readonly slowAttemptMs: number;
  /**
   * A pending delivery this far past its `next_attempt_at` has lost its schedule: the
   * stall sweep picks it up and any message of it may take it over (src/delivery/plan.ts).
   */
  readonly stalledAfterMs: number;
  /**
   * Attempts one org may keep going in the slow lane at once; its deliveries beyond that
   * take the overflow lane (src/org/slow-lane-share.ts).
   */
  readonly slowLaneOrgShare: number;
  /** The D1 bindings that hold the log; every org lives on one (src/store/shards.ts). */
  readonly logShards: readonly string[];
  /** Of those, the ones a new org may be placed on (all but `LOG_SHARDS_CLOSED`). */
  readonly openLogShards: readonly string[];
}

/** The vars this module reads; `Env` from `wrangler types` satisfies it. */
export type ConfigVars = Pick<
  Env,
  | "RETRY_DELAYS_SECONDS"
  | "ATTEMPT_TIMEOUT_MS"
  | "ALLOW_INSECURE_WEBHOOK_URLS"
  | "RESPONSE_BODY_LIMIT_BYTES"
  | "LOG_RETENTION_DAYS"
  | "SLOW_ATTEMPT_MS"
  | "STALLED_AFTER_SECONDS"
  | "SLOW_LANE_ORG_SHARE"
  | "LOG_SHARDS"
  | "LOG_SHARDS_CLOSED"
>;

/**
 * Every var's default: the one source. wrangler.toml `[vars]`, the README and DESIGN.md
 * configuration tables say the same (test/node/contract.test.ts holds them to it).
 */
export const CONFIG_DEFAULTS = {
  RETRY_DELAYS_SECONDS: "60,300",
  ATTEMPT_TIMEOUT_MS: "10000",
  ALLOW_INSECURE_WEBHOOK_URLS: "false",
  RESPONSE_BODY_LIMIT_BYTES: "65536",
  LOG_RETENTION_DAYS: "30",
  SLOW_ATTEMPT_MS: "1000",
  STALLED_AFTER_SECONDS: "300",
  SLOW_LANE_ORG_SHARE: "50",
  // One shard, the database that also holds the API keys; wrangler.toml runs two.
  LOG_SHARDS: "DB",
  LOG_SHARDS_CLOSED: "",
} as const satisfies Record<keyof ConfigVars, string>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

const cache = new WeakMap<object, Config>();

export function readConfig(env: ConfigVars): Config {
  let config = cache.get(env);
  if (!config) {
    config = parseConfig(env);
    cache.set(env, config);
  }
  return config;
}

/**
 * The most RESPONSE_BODY_LIMIT_BYTES may be: an attempt's row travels to D1 in hex inside
 * a JSON string (src/store/attempts.ts), and D1 takes a string of at most 2 MB. A row with
 * the answer that compresses worst (512 KiB of random control characters, which JSON
 * escapes to six each), a 64 KiB event and 16 KiB of headers is about 1.2 MB (a test
 * writes one). It was 1 MiB before 2026-11-30; a deployment set above 512 KiB now fails
 * to start with a ConfigError that names the range.
 */
export const RESPONSE_BODY_LIMIT_MAX_BYTES = 524_288;

export function parseConfig(env: ConfigVars): Config {
  const raw = (name: keyof ConfigVars): string => env[name] ?? CONFIG_DEFAULTS[name];
  const config: Config = {
    retryDelaysSeconds: parseDelays(raw("RETRY_DELAYS_SECONDS")),
    attemptTimeoutMs: parseInteger("ATTEMPT_TIMEOUT_MS", raw("ATTEMPT_TIMEOUT_MS"), 1, 900_000),
    allowInsecureWebhookUrls: parseBoolean("ALLOW_INSECURE_WEBHOOK_URLS", raw("ALLOW_INSECURE_WEBHOOK_URLS")),
    responseBodyLimitBytes: parseInteger(
      "RESPONSE_BODY_LIMIT_BYTES",
      raw("RESPONSE_BODY_LIMIT_BYTES"),
      0,
      RESPONSE_BODY_LIMIT_MAX_BYTES,
    ),
    logRetentionDays: parseInteger("LOG_RETENTION_DAYS", raw("LOG_RETENTION_DAYS"), 1, 3650),
    slowAttemptMs: parseInteger("SLOW_ATTEMPT_MS", raw("SLOW_ATTEMPT_MS"), 1, 900_000),
    stalledAfterMs: parseInteger("STALLED_AFTER_SECONDS", raw("STALLED_AFTER_SECONDS"), 1, 86_400) * 1000,
    slowLaneOrgShare: parseInteger("SLOW_LANE_ORG_SHARE", raw("SLOW_LANE_ORG_SHARE"), 1, 10_000),
    ...parseShards(raw("LOG_SHARDS"), raw("LOG_SHARDS_CLOSED")),
  };
  // A floor, not a margin: a delivery whose attempt can still be running (it starts when its
  // run gets to it, and a handed-off one holds a lease 5 s past its timeout) must not count
  // as stalled, or the sweep takes it over and the receiver gets that attempt twice. The
  // default (300 s against 10 s) leaves minutes for a late run.
  if (config.stalledAfterMs <= config.attemptTimeoutMs) {
    throw new ConfigError(
      `STALLED_AFTER_SECONDS (${config.stalledAfterMs / 1000}) must be longer than ATTEMPT_TIMEOUT_MS ` +
        `(${config.attemptTimeoutMs} ms), and by minutes: a delivery whose attempt may still be running ` +
        "would be taken over and the attempt made twice",
    );
  }
  return config;
}

/**
 * Shard names are binding names. Checked here for shape only: whether each one is bound
 * is checked where a shard is used (src/store/shards.ts), so that one missing binding
 * fails the orgs that live on it and no others.
 */
function parseShards(shards: string, closed: string): Pick<Config, "logShards" | "openLogShards"> {
  const names = (name: string, raw: string) => {
    const list = raw
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part !== "");
    for (const item of list) {
      if (!/^[A-Z][A-Z0-9_]*$/.test(item))
        throw new ConfigError(`${name}: ${JSON.stringify(item)} is not a binding name`);
    }
    if (new Set(list).size !== list.length) throw new ConfigError(`${name} names a shard twice`);
    return list;
  };
  const logShards = names("LOG_SHARDS", shards);
  const closedShards = names("LOG_SHARDS_CLOSED", closed);
  if (logShards.length === 0) throw new ConfigError("LOG_SHARDS must name at least one D1 binding");
  for (const item of closedShards) {
    if (!logShards.includes(item)) throw new ConfigError(`LOG_SHARDS_CLOSED names ${item}, which is not in LOG_SHARDS`);
  }
  const openLogShards = logShards.filter((item) => !closedShards.includes(item));
  if (openLogShards.length === 0) throw new ConfigError("LOG_SHARDS_CLOSED closes every shard: new orgs have none");
  return { logShards, openLogShards };
}

function parseDelays(raw: string): number[] {
  const text = raw.trim();
  if (text === "") return [];
  return text.split(",").map((part) => parseInteger("RETRY_DELAYS_SECONDS", part.trim(), 0, MAX_QUEUE_DELAY_SECONDS));
}

function parseInteger(name: string, raw: string, min: number, max: number): number {
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function parseBoolean(name: string, raw: string): boolean {
  if (raw === "true") return true;
  if (raw === "false" || raw === "") return false;
  throw new ConfigError(`${name} must be "true" or "false", got ${JSON.stringify(raw)}`);
}
