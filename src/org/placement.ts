/**
 * Where a new org's log lives: one of the shards open to new orgs, by rendezvous
 * (highest random weight) hashing of the org's key (its Durable Object id, derived from
 * the org id) with each shard's name.
 *
 * The choice is made once, when the org's settings are created, and recorded in its
 * Durable Object (src/org/org-settings.ts); from then on the record decides, so adding
 * or closing shards never moves an org. The hash only has to spread new orgs evenly
 * (each open shard wins for about 1/N of orgs), and it gives one more property for
 * free: should an org's record ever be lost while the shard list is unchanged, placing
 * it again finds the same shard, and adding a shard changes the answer for only the
 * orgs the new shard wins.
 */
export function placeOrg(orgKey: string, openShards: readonly string[]): string {
  let best = openShards[0];
  let bestWeight = -1;
  for (const shard of openShards) {
    const weight = hash32(`${shard}\u0000${orgKey}`);
    if (weight > bestWeight) {
      best = shard;
      bestWeight = weight;
    }
  }
  if (best === undefined) throw new Error("no log shard is open to new orgs");
  return best;
}

/** FNV-1a over UTF-16 code units, then murmur3's finalizer so nearby ids spread apart. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
