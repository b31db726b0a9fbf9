import { z } from "@hono/zod-openapi";
import { createMiddleware } from "hono/factory";
import { logShardOf } from "../org/log-shard";
import { type LogDb, LogShardUnavailable, logShard, logShardFault } from "../store/shards";
import type { OrgVariables } from "./auth";
import { ApiError } from "./errors";

/**
 * The org's log, for the log and delivery routes: its shard (src/store/shards.ts), read
 * through a D1 Sessions API session so that reads may be served by a read replica.
 *
 * What a customer is guaranteed: a replica can lag its primary by a moment, so every
 * answer carries `X-Zupertry-Bookmark` (where in the log it read), and a request that
 * sends one back reads a state at least that new. A client that always sends the last
 * bookmark it got (the console does) never sees its log go back in time. A request that
 * decides something (a redeliver, anything but GET) reads the primary, and its bookmark
 * carries that to the reads after it.
 *
 * An org whose shard cannot be used gets a 500 `internal` and the operator a log line
 * (src/store/shards.ts): never an empty log that looks like the org's own.
 */

export const BOOKMARK_HEADER = "X-Zupertry-Bookmark";

/** D1's bookmark shape: three 8-hex-digit parts and a 32-hex-digit one. */
const BOOKMARK = /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/;

export type OrgLogVariables = { log: LogDb };

/** The request header, for a route's OpenAPI `request.headers`. */
export const BookmarkHeaders = z.object({
  [BOOKMARK_HEADER.toLowerCase()]: z
    .string()
    .regex(BOOKMARK)
    .optional()
    .openapi({
      description: `The \`${BOOKMARK_HEADER}\` of an earlier answer: this one reads a log at least as new`,
    }),
});

/** The response header, for a route's OpenAPI 200/202 answer. */
export const bookmarkResponseHeaders = {
  [BOOKMARK_HEADER]: {
    description: "Where in the log this answer read; send it back to never read an older log",
    schema: { type: "string" as const },
  },
};

export const orgLog = createMiddleware<{ Bindings: Env; Variables: OrgVariables & OrgLogVariables }>(
  async (c, next) => {
    const bookmark = c.req.header(BOOKMARK_HEADER);
    if (bookmark !== undefined && !BOOKMARK.test(bookmark)) {
      throw new ApiError(400, "invalid_request", `${BOOKMARK_HEADER} must be one this API gave out`);
    }
    let db: D1Database;
    try {
      db = logShard(c.env, await logShardOf(c.env, c.var.orgId));
    } catch (error) {
      if (!(error instanceof LogShardUnavailable)) throw error;
      logShardFault(error, { org_id: c.var.orgId });
      throw new ApiError(500, "internal", "this org's log cannot be read right now; the operator has been alerted");
    }
    const session = db.withSession(c.req.method === "GET" ? (bookmark ?? "first-unconstrained") : "first-primary");
    c.set("log", session);
    await next();
    const latest = session.getBookmark();
    if (latest !== null) c.header(BOOKMARK_HEADER, latest);
  },
);
