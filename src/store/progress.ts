import type { LogDb } from "./shards";

/**
 * Where a walk over a shard's orgs goes on from, for the crons that spread one over
 * several runs: one row (id 1) per table, `next_org_id` ('' or no row: the first org).
 * What the org means is the walk's own: retention starts at it (migrations/0004), the
 * stall sweep after it (migrations/0005).
 */
export type ProgressTable = "retention_progress" | "sweep_progress";

export async function readProgress(db: LogDb, table: ProgressTable): Promise<string> {
  const row = await db.prepare(`SELECT next_org_id FROM ${table} WHERE id = 1`).first<{ next_org_id: string }>();
  return row?.next_org_id ?? "";
}

/** The statement that records it (to run alone, or in a batch with the run's last writes). */
export function writeProgress(db: LogDb, table: ProgressTable, orgId: string): D1PreparedStatement {
  return db
    .prepare(`INSERT INTO ${table} (id, next_org_id) VALUES (1, ?)
      ON CONFLICT (id) DO UPDATE SET next_org_id = excluded.next_org_id`)
    .bind(orgId);
}
