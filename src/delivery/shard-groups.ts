import { knownLogShard, rememberLogShard } from "../org/log-shard";
import { LogShardUnavailable, logShard, logShardFault } from "../store/shards";

/**
 * A consumer run's messages, grouped by the log shard of their org (src/store/shards.ts):
 * the run reads each group's log state once, and writes each shard in a few chunks.
 *
 * The shard comes from the org's settings read, which the run makes anyway. The orgs
 * this isolate already knows (they never move) are placed at once, so their log is read
 * alongside the settings; the others (new to the isolate, or forgotten: it remembers the
 * last 10,000, and not an org whose read failed) are placed together once their own
 * settings are in, in groups of their own: one more read for a shard that both kinds
 * share. So an org whose settings are slow holds up no org this isolate has placed.
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

/** Some of a batch's messages, placed. */
export interface Placement<M> {
  groups: ShardGroup<M>[];
  unplaced: Unplaced<M>[];
}

/**
 * The batch's messages in one or two placements: the orgs this isolate knows (at once),
 * then the others (once `recordOf` answers for each of them).
 */
export function groupByShard<M extends { body: { org_id: string } }>(
  env: Env,
  messages: readonly M[],
  recordOf: (org: string) => Promise<ShardRecord>,
): Promise<Placement<M>>[] {
  const [known, unknown] = [[] as M[], [] as M[]];
  for (const message of messages) (knownLogShard(message.body.org_id) === undefined ? unknown : known).push(message);
  const placements: Promise<Placement<M>>[] = [];
  if (known.length > 0) {
    const shardOf = new Map(
      known.map((m) => [m.body.org_id, { ok: true, name: knownLogShard(m.body.org_id)! } as const]),
    );
    placements.push(Promise.resolve(place(env, known, shardOf)));
  }
  if (unknown.length > 0) placements.push(placeUnknown(env, unknown, recordOf));
  return placements;
}

type ShardOf<M> = Map<string, { ok: true; name: string } | { ok: false; stage: Unplaced<M>["stage"]; error: unknown }>;

async function placeUnknown<M extends { body: { org_id: string } }>(
  env: Env,
  messages: readonly M[],
  recordOf: (org: string) => Promise<ShardRecord>,
): Promise<Placement<M>> {
  const shardOf: ShardOf<M> = new Map();
  await Promise.all(
    [...new Set(messages.map((m) => m.body.org_id))].map(async (org) => {
      const record = await recordOf(org);
      if (!record.ok) {
        shardOf.set(org, { ok: false, stage: "org_settings", error: record.error });
        return;
      }
      const name = record.value;
      rememberLogShard(org, name);
      shardOf.set(
        org,
        name === null
          ? { ok: false, stage: "log_shard", error: new LogShardUnavailable(null, "the org has no log shard recorded") }
          : { ok: true, name },
      );
    }),
  );
  return place(env, messages, shardOf);
}

function place<M extends { body: { org_id: string } }>(
  env: Env,
  messages: readonly M[],
  shardOf: ShardOf<M>,
): Placement<M> {
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
