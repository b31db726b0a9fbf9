/**
 * Cloudflare's published list prices (Workers Paid plan, beyond the included amounts),
 * as read on the date below from developers.cloudflare.com: see bench/README.md for
 * each page. Change the numbers and the date together.
 */
export const PRICES_DATE = "2026-11-28";

export const PRICES = {
  /** Workers Standard: requests, including queue consumer invocations. */
  workersPerMillionRequests: 0.3,
  /** Workers Standard: CPU time (not counted locally: see README). */
  workersPerMillionCpuMs: 0.02,
  /** Queues: each 64 KB written, read or deleted is one operation. */
  queuesPerMillionOperations: 0.4,
  /** D1: rows written, index entries included (meta.rows_written). */
  d1PerMillionRowsWritten: 1.0,
  d1PerMillionRowsRead: 0.001,
  /** D1 storage beyond the included 5 GB. */
  d1PerGbMonth: 0.75,
  /** Durable Objects: each RPC method call is one request. */
  durableObjectsPerMillionRequests: 0.15,
  durableObjectsPerMillionGbSeconds: 12.5,
  /** SQLite-backed Durable Objects: rows written by the object's own SQL, like D1's. */
  durableObjectsPerMillionRowsWritten: 1.0,
} as const;
