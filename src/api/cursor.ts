import { z } from "@hono/zod-openapi";
import { fromBase64, toBase64Url } from "../encoding";
import { ApiError } from "./errors";

/**
 * Opaque list cursors: the sort key of a page's last row, as base64url JSON. Opaque so
 * clients pass them back untouched; validated on the way in, so a tampered cursor is a
 * 400, never a query error.
 */

/** The paging half of every list query: `limit` 1..100 (50 by default) and `cursor`. */
export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(512).optional(),
};

export function encodeCursor(position: readonly (string | number)[]): string {
  return toBase64Url(new TextEncoder().encode(JSON.stringify(position)));
}

/**
 * Cuts a page from rows fetched with `LIMIT limit + 1`: the extra row only says that
 * there is a next page, whose cursor is the position of the last row kept.
 */
export function cutPage<Row>(
  rows: readonly Row[],
  limit: number,
  position: (row: Row) => readonly (string | number)[],
  /** Where the read stopped, when its scan budget ended it before `limit + 1` rows (src/store/log.ts). */
  scannedTo?: readonly (string | number)[],
): { rows: Row[]; next_cursor: string | null } {
  const kept = rows.slice(0, limit);
  const last = kept.at(-1);
  if (rows.length > limit && last !== undefined) return { rows: kept, next_cursor: encodeCursor(position(last)) };
  return { rows: kept, next_cursor: scannedTo ? encodeCursor(scannedTo) : null };
}

export function decodeCursor<T>(cursor: string, schema: z.ZodType<T>): T {
  try {
    const text = new TextDecoder().decode(fromBase64(cursor.replaceAll("-", "+").replaceAll("_", "/")));
    const parsed = schema.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through
  }
  throw new ApiError(400, "invalid_request", "invalid cursor: pass back next_cursor exactly as it was returned");
}
