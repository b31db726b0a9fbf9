import { sha256Hex, toBase64Url, toHex } from "../encoding";

/**
 * Org API keys in D1. A key is `zk_` + 32 random bytes (base64url); only its SHA-256
 * is stored, so a leak of the database leaks no usable key. 256 bits of randomness
 * make a fast unsalted hash safe here (there is nothing to brute-force).
 */

export const ORG_KEY_PREFIX = "zk_";

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

/** The org of a valid (not revoked) key, or null. */
export async function findOrgIdByKey(db: D1Database, key: string): Promise<string | null> {
  return db
    .prepare("SELECT org_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL")
    .bind(await sha256Hex(key))
    .first<string>("org_id");
}

/** Revokes a key of this org; false when the org has no such key (or it was revoked). */
export async function revokeApiKey(db: D1Database, orgId: string, keyId: string): Promise<boolean> {
  const { meta } = await db
    .prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND org_id = ? AND revoked_at IS NULL")
    .bind(Date.now(), keyId, orgId)
    .run();
  return meta.changes === 1;
}
