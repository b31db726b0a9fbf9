import { knownLogShard, rememberLogShard } from "../org/log-shard";
import { LogShardUnavailable, logShard, logShardFault } from "../store/shards";

/**
 * A consumer run's messages, grouped by the log shard of their org (src/store/shards.ts):
 * every read and write of the run goes to each shard once, for that shard's messages.
 *
 * The shard comes from the org's settings read, which the run makes anyway. When this
 * isolate already knows every org's shard (they never change), the log is read at once,
 * alongside the settings; the first run that sees an org waits for its settings first.
 */

export interface ShardGroup<M> {
  name: string;
  db: D1Database;
  messages: M[];
}

/** Why a message has no group: its org's settings failed to load, or its shard is not usable. */
export interface Unplaced<M> {
  message: M;
  stage: "org_settings" | "log_shard";
  error: unknown;
}

/** An org's recorded shard (null: the record is lost), or why it could not be read. */
export type ShardRecord = { ok: true; value: string | null } | { ok: false; error: unknown };

/**
 * `records`: every org's shard record, as its settings read returns it; awaited only
 * when this isolate does not know every org's shard already.
 */
export async function groupByShard<M extends { body: { org_id: string } }>(
  env: Env,
  messages: readonly M[],
  records: Promise<ReadonlyMap<string, ShardRecord>>,
): Promise<{ groups: ShardGroup<M>[]; unplaced: Unplaced<M>[] }> {
  const orgIds = new Set(messages.map((m) => m.body.org_id));
  const shardOf = new Map<
    string,
    { ok: true; name: string } | { ok: false; stage: Unplaced<M>["stage"]; error: unknown }
  >();
  if ([...orgIds].every((org) => knownLogShard(org) !== undefined)) {
    for (const org of orgIds) shardOf.set(org, { ok: true, name: knownLogShard(org)! });
  } else {
    const loaded = await records;
    for (const org of orgIds) {
      const record = loaded.get(org)!;
      if (!record.ok) {
        shardOf.set(org, { ok: false, stage: "org_settings", error: record.error });
        continue;
      }
      const name = record.value;
      rememberLogShard(org, name);
      shardOf.set(
        org,
        name === null
          ? { ok: false, stage: "log_shard", error: new LogShardUnavailable(null, "the org has no log shard recorded") }
          : { ok: true, name },
      );
    }
  }

  const groups = new Map<string, ShardGroup<M>>();
  const unplaced: Unplaced<M>[] = [];
  const faults = new Map<string, unknown>();
  for (const message of messages) {
    const org = message.body.org_id;
    const shard = shardOf.get(org)!;
    if (!shard.ok) {
      unplaced.push({ message, stage: shard.stage, error: shard.error });
      if (shard.stage === "log_shard") faults.set(org, shard.error);
      continue;
    }
    let group = groups.get(shard.name);
    if (!group) {
      try {
        group = { name: shard.name, db: logShard(env, shard.name), messages: [] };
        groups.set(shard.name, group);
      } catch (error) {
        unplaced.push({ message, stage: "log_shard", error });
        faults.set(org, error);
        continue;
      }
    }
    group.messages.push(message);
  }
  for (const [org, error] of faults) logShardFault(error, { org_id: org });
  return { groups: [...groups.values()], unplaced };
}
