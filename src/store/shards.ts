import { readConfig } from "../config";

/**
 * The attempt log is sharded by org: `LOG_SHARDS` names the D1 bindings that hold it,
 * every one with the same schema (migrations/), and every org lives on exactly one of
 * them. Which one is the org's own record, kept by its OrgSettings Durable Object
 * (src/org/placement.ts); this module only turns a shard's name into its database.
 *
 * Why shards: one D1 database has one writer and holds at most 10 GB (a hard limit).
 * Orgs are independent (no query ever spans two), so orgs are the natural unit to
 * spread: every log read and write of an org goes to its one shard, and a shard that
 * is down or slow holds up its own orgs and no others.
 *
 * A name that is not in `LOG_SHARDS`, or not bound to a D1 database, is an operator's
 * mistake (a binding removed while orgs still live on it): it throws
 * `LogShardUnavailable`, and callers fail those orgs loudly rather than give them a new,
 * empty log somewhere else.
 */

/** What the store's functions need of a database: a D1 binding or a Sessions API session. */
export type LogDb = Pick<D1Database, "prepare" | "batch">;

export class LogShardUnavailable extends Error {
  override name = "LogShardUnavailable";
  constructor(
    readonly shard: string | null,
    reason: string,
  ) {
    super(reason);
  }
}

/** The database of the shard `name`; throws `LogShardUnavailable` when it is not a bound shard. */
export function logShard(env: Env, name: string | null): D1Database {
  if (name === null) throw new LogShardUnavailable(null, "the org has no log shard recorded");
  if (!readConfig(env).logShards.includes(name)) {
    throw new LogShardUnavailable(name, `the org's log shard ${name} is not in LOG_SHARDS`);
  }
  const binding = (env as unknown as Record<string, unknown>)[name];
  if (!isD1(binding)) throw new LogShardUnavailable(name, `the org's log shard ${name} is not bound to a D1 database`);
  return binding;
}

/** Every shard that is configured and bound, by name (retention, the stall sweep). */
export function allLogShards(env: Env): Array<{ name: string; db: D1Database }> {
  return readConfig(env).logShards.flatMap((name) => {
    try {
      return [{ name, db: logShard(env, name) }];
    } catch (error) {
      logShardFault(error, { during: "all_shards" });
      return [];
    }
  });
}

/**
 * The operator's log line for a shard that cannot be used. The customer sees an
 * `internal` error; this line is what says which org and which shard.
 */
export function logShardFault(error: unknown, context: Record<string, unknown>): void {
  console.error(
    JSON.stringify({
      event: "log_shard.unavailable",
      ...context,
      shard: error instanceof LogShardUnavailable ? error.shard : null,
      reason: error instanceof Error ? error.message : String(error),
    }),
  );
}

function isD1(value: unknown): value is D1Database {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as D1Database).prepare === "function" &&
    typeof (value as D1Database).withSession === "function"
  );
}
