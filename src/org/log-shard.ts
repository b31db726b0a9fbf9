import { orgSettings } from "./org-settings";

/**
 * Which log shard an org lives on, as its Durable Object recorded it
 * (src/org/placement.ts). The record never changes once made, so an isolate keeps what
 * it learned: a consumer run that knows every org of its batch reads the log at once,
 * alongside the settings, and the API reads an org's log without a Durable Object
 * call first. A lost record (null) is not kept: it is asked again next time.
 */

/** Enough for every busy org of a deployment; the oldest entry goes first past it. */
const MAX_KNOWN = 10_000;
const known = new Map<string, string>();

/** The org's shard if this isolate learned it already. */
export function knownLogShard(orgId: string): string | undefined {
  return known.get(orgId);
}

/** Keeps what an org's object said about its shard (nothing when it had none). */
export function rememberLogShard(orgId: string, shard: string | null): void {
  if (shard === null || known.has(orgId)) return;
  if (known.size >= MAX_KNOWN) known.delete(known.keys().next().value!);
  known.set(orgId, shard);
}

/** The org's shard: from this isolate's memory, or from its object (which creates the org if new). */
export async function logShardOf(env: Pick<Env, "ORG_SETTINGS">, orgId: string): Promise<string | null> {
  const cached = known.get(orgId);
  if (cached !== undefined) return cached;
  const shard = await orgSettings(env, orgId).getLogShard();
  rememberLogShard(orgId, shard);
  return shard;
}
