/**
 * The OrgSettings object's SQLite schema, versioned.
 *
 * Every org's object keeps its own copy of these tables, and objects live on for
 * years: a change to them is a new entry at the end of `MIGRATIONS`, never an edit of
 * an old one. Each object brings itself up to date when it starts (in its
 * constructor, before it serves anything), every step it lacks in one transaction
 * (all or none: an object never runs on a half-migrated schema), and records the
 * version it reached in `schema_version`.
 *
 * Objects created before versioning (v1 only, no `schema_version` row) count as
 * version 0; their v1 step is a no-op (`IF NOT EXISTS`).
 *
 *   org_settings      one row: default URL, signing secrets, and the org's log shard
 *                     (src/org/org-settings.ts)
 *   endpoint_health   one row per endpoint (origin) the org's deliveries went to: the
 *                     state of src/org/endpoint-health.ts; at most MAX_ENDPOINTS rows
 *   listener_results  what the org's `zupertry listen` sessions answered for relayed
 *                     deliveries (src/org/listeners.ts); the last MAX_LISTENER_RESULTS,
 *                     trimmed every 50 inserts
 *   redeliver_claims  one row per redeliver queued in the last REDELIVER_CLAIM_MS
 *                     (`delivery_id:after_attempt`), trimmed as new ones are queued
 *   schema_version    one row: the last migration applied
 */

const MIGRATIONS: readonly string[] = [
  // v1: the org's settings.
  `CREATE TABLE IF NOT EXISTS org_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    webhook_url TEXT,
    signing_secret TEXT NOT NULL,
    secret_rotated_at INTEGER,
    previous_secret TEXT,
    previous_secret_expires_at INTEGER
  )`,
  // v2: endpoint health, for the slow lane (src/delivery/lanes.ts).
  `CREATE TABLE endpoint_health (
    origin TEXT PRIMARY KEY,
    lane TEXT NOT NULL CHECK (lane IN ('fast', 'slow')),
    lane_reason TEXT CHECK (lane_reason IN ('timeout', 'slow', 'failing')),
    lane_changed_at INTEGER,
    demotions INTEGER NOT NULL,
    good_streak INTEGER NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_failure_at INTEGER,
    last_error TEXT,
    latency_ms INTEGER,
    recent TEXT NOT NULL,
    hours TEXT NOT NULL,
    CHECK ((lane = 'slow') = (lane_reason IS NOT NULL))
  )`,
  // v3: the org's log shard (src/store/shards.ts). Orgs that existed before sharding
  // (those with settings) logged to the one database there was, bound as DB, so that
  // is their shard. A new org gets its shard when its settings are created.
  `ALTER TABLE org_settings ADD COLUMN log_shard TEXT;
   UPDATE org_settings SET log_shard = 'DB'`,
  // v4: what the org's `zupertry listen` sessions answered (src/org/listeners.ts): never
  // attempts, kept apart from the log, the last MAX_LISTENER_RESULTS only.
  `CREATE TABLE listener_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status_code INTEGER,
    response_time_ms INTEGER NOT NULL,
    error TEXT
  )`,
  // v5: every secret replaced in the last 24 h keeps signing `webhook-signature` until
  // 24 h after it was replaced: two rotations in a day kept only the newer one, and cut
  // off the secret receivers still had. `previous_secret*` are no longer written. And an
  // endpoint's flapping is counted from its moves to the slow lane (`demoted_at`), not
  // from its last change of lane either way.
  // (An endpoint back in the fast lane with demotions keeps them: its last change of lane,
  // a return, came after its last move aside, so the day is counted from no earlier.)
  `ALTER TABLE org_settings ADD COLUMN previous_secrets TEXT NOT NULL DEFAULT '[]';
   UPDATE org_settings
      SET previous_secrets = json_array(
            json_object('secret', previous_secret, 'expires_at', previous_secret_expires_at))
    WHERE previous_secret IS NOT NULL AND previous_secret_expires_at IS NOT NULL;
   ALTER TABLE endpoint_health ADD COLUMN demoted_at INTEGER;
   UPDATE endpoint_health SET demoted_at = lane_changed_at WHERE lane = 'slow' OR demotions > 0`,
  // v6: redelivers queued lately, by delivery and the attempt they follow: the object is
  // dropped from memory after 10 s without a call, and a redeliver must stay queued once
  // for its REDELIVER_CLAIM_MS, not for as long as the object happens to stay in memory.
  `CREATE TABLE redeliver_claims (
    claim TEXT PRIMARY KEY,
    queued_at INTEGER NOT NULL
  )`,
];

/** The version an object has once `migrateSchema` ran. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings an object's tables up to SCHEMA_VERSION; returns the version it started at. */
export function migrateSchema(storage: DurableObjectStorage): number {
  const sql = storage.sql;
  return storage.transactionSync(() => {
    sql.exec(
      "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    );
    const from =
      sql.exec<{ version: number }>("SELECT version FROM schema_version WHERE id = 1").toArray()[0]?.version ?? 0;
    for (let version = from; version < MIGRATIONS.length; version++) sql.exec(MIGRATIONS[version]!);
    if (from < MIGRATIONS.length) {
      sql.exec(
        `INSERT INTO schema_version (id, version) VALUES (1, ?)
           ON CONFLICT (id) DO UPDATE SET version = excluded.version`,
        MIGRATIONS.length,
      );
    }
    return from;
  });
}
