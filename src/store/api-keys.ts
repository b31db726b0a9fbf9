import { sha256Hex, toBase64Url, toHex } from "../encoding";

/**
 * Org API keys in D1. A key is `zk_` + 32 random bytes (base64url); only its SHA-256
 * is stored, so a leak of the database leaks no usable key. 256 bits of randomness
 * make a fast unsalted hash safe here (there is nothing to brute-force).
 */

export const ORG_KEY_PREFIX = "zk_";

/** Every key this code issues: the prefix and 32 bytes in base64url (43 characters). */
const ORG_KEY_SHAPE = new RegExp(`^${ORG_KEY_PREFIX}[A-Za-z0-9_-]{43}$`);

/**
 * Whether `token` could be a key at all. Anything else is refused without a D1 query:
 * `DB` serves every org's key checks, and a flood of made-up tokens must not queue there.
 */
export function isOrgKeyShaped(token: string): boolean {
  return ORG_KEY_SHAPE.test(token);
}

export interface ApiKey {
  id: string;
  org_id: string;
  name: string | null;
  created_at: number;
}

export async function createApiKey(
  db: D1Database,
  orgId: string,
  name: string | null,
): Promise<ApiKey & { key: string }> {
  const key = ORG_KEY_PREFIX + toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  const row: ApiKey = {
    id: `key_${toHex(crypto.getRandomValues(new Uint8Array(12)))}`,
    org_id: orgId,
    name,
    created_at: Date.now(),
  };
  await db
    .prepare("INSERT INTO api_keys (id, org_id, name, key_hash, created_at) VALUES (?, ?, ?, ?, ?)")
    .bind(row.id, row.org_id, row.name, await sha256Hex(key), row.created_at)
    .run();
  return { ...row, key };
}

/** How stale `last_used_at` may be: a request writes it only when it is older than this. */
export const LAST_USED_GRANULARITY_MS = 5 * 60 * 1000;

/** A valid key as the auth check sees it. */
export interface KeyUse {
  id: string;
  org_id: string;
  last_used_at: number | null;
}

/** The valid (not revoked) key `key`, or null. */
export async function findValidKey(db: D1Database, key: string): Promise<KeyUse | null> {
  return db
    .prepare("SELECT id, org_id, last_used_at FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL")
    .bind(await sha256Hex(key))
    .first<KeyUse>();
}

/** Whether a use of `key` at `now` should be written (its stored time is too old). */
export function lastUseIsStale(key: Pick<KeyUse, "last_used_at">, now: number): boolean {
  return key.last_used_at === null || now - key.last_used_at >= LAST_USED_GRANULARITY_MS;
}

/**
 * Records a use of the key. The condition repeats the staleness test in SQL, so that
 * concurrent requests that all saw a stale time write it once between them.
 */
export async function recordKeyUse(db: D1Database, keyId: string, now: number): Promise<void> {
  await db
    .prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)")
    .bind(now, keyId, now - LAST_USED_GRANULARITY_MS)
    .run();
}

/** A key as listed to its org and operators: never the key or its hash. */
export interface ApiKeySummary extends ApiKey {
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface ApiKeyPosition {
  created_at: number;
  id: string;
}

/** An org's keys, newest first, revoked ones included (`api_keys_by_org`). */
export async function listApiKeys(
  db: D1Database,
  orgId: string,
  q: { after?: ApiKeyPosition; limit: number },
): Promise<ApiKeySummary[]> {
  const after = q.after ? "AND (created_at, id) < (?, ?)" : "";
  const { results } = await db
    .prepare(
      `SELECT id, org_id, name, created_at, last_used_at, revoked_at FROM api_keys
        WHERE org_id = ? ${after} ORDER BY created_at DESC, id DESC LIMIT ?`,
    )
    .bind(orgId, ...(q.after ? [q.after.created_at, q.after.id] : []), q.limit)
    .run<ApiKeySummary>();
  return results;
}

/** Of these key ids, the ones not revoked (a listener's keys, checked again now and then). */
export async function liveKeyIds(db: D1Database, keyIds: readonly string[]): Promise<Set<string>> {
  const { results } = await db
    .prepare("SELECT id FROM api_keys WHERE id IN (SELECT value FROM json_each(?)) AND revoked_at IS NULL")
    .bind(JSON.stringify(keyIds))
    .run<{ id: string }>();
  return new Set(results.map((r) => r.id));
}

/** Revokes a key of this org; false when the org has no such key (or it was revoked). */
export async function revokeApiKey(db: D1Database, orgId: string, keyId: string): Promise<boolean> {
  const { meta } = await db
    .prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND org_id = ? AND revoked_at IS NULL")
    .bind(Date.now(), keyId, orgId)
    .run();
  return meta.changes === 1;
}
