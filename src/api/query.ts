import { z } from "@hono/zod-openapi";
import { ApiError } from "./errors";

/**
 * Query strings. Every `/v1` route declares its query with `strictQuery`, so a parameter
 * it does not take is a 400 naming it (zod's `unrecognized_keys`) instead of being
 * ignored: `?stauts=failed` must not quietly answer every delivery.
 */

/** A route's query: these parameters and no others (none: `strictQuery({})`). */
export function strictQuery<Shape extends z.ZodRawShape>(shape: Shape) {
  return z.strictObject(shape);
}

/** An ISO 8601 time with its offset (`2026-03-19T10:00:00Z`), as unix ms. */
const Instant = z.iso
  .datetime({ offset: true })
  .transform((text) => Date.parse(text))
  .openapi({ type: "string", format: "date-time" });

/** A time range on the listed rows' time: `since` inclusive, `until` exclusive. */
export const timeRangeQuery = {
  since: Instant.optional().openapi({ description: "Only rows at or after this time (ISO 8601)" }),
  until: Instant.optional().openapi({ description: "Only rows before this time (ISO 8601)" }),
};

/** Refuses a range that ends before it starts: always a mistake, never an empty page. */
export function checkRange(q: { since?: number; until?: number }): void {
  if (q.since !== undefined && q.until !== undefined && q.since >= q.until) {
    throw new ApiError(400, "invalid_request", "`since` must be before `until`", [
      { path: ["until"], code: "invalid_range", message: "`since` must be before `until`" },
    ]);
  }
}
