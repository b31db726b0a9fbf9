import { createMiddleware } from "hono/factory";
import type { OrgVariables } from "./auth";
import { ApiError, errorResponseSpec } from "./errors";

/**
 * Per-org rate limits on the org API, with Cloudflare's Rate Limiting binding
 * (`[[ratelimits]]` in wrangler.toml): every org request counts against
 * ORG_API_LIMIT, and every send the API asks for (a test event, a redeliver) against
 * ORG_SEND_LIMIT too, counted where the route is about to queue it: a request refused
 * for its input makes no one send anything and spends no send budget. Keyed by the org
 * of the API key, after authentication: one org's burst never spends another's budget.
 *
 * Over the limit: 429 with the JSON error shape and `Retry-After` set to the limit's
 * period (the binding says only "over", not for how long; waiting a period is enough).
 */

type Limiter = "ORG_API_LIMIT" | "ORG_SEND_LIMIT";

/** The periods configured in wrangler.toml (`simple.period`), for Retry-After. */
const PERIOD_SECONDS: Record<Limiter, number> = { ORG_API_LIMIT: 60, ORG_SEND_LIMIT: 60 };

/** Counts one request of this org against `limiter`; throws the 429 when over. */
async function spend(env: Env, limiter: Limiter, orgId: string, what: string): Promise<void> {
  const { success } = await env[limiter].limit({ key: orgId });
  if (!success) {
    throw new ApiError(
      429,
      "rate_limited",
      `too many ${what} for this org; try again in ${PERIOD_SECONDS[limiter]} s`,
      undefined,
      {
        "Retry-After": String(PERIOD_SECONDS[limiter]),
      },
    );
  }
}

/** Every org request (middleware, after the org key). */
export const orgApiLimit = createMiddleware<{ Bindings: Env; Variables: OrgVariables }>(async (c, next) => {
  await spend(c.env, "ORG_API_LIMIT", c.var.orgId, "requests");
  await next();
});

/** A send the org asked for (a test event, a redeliver), just before it is queued. */
export function spendSend(env: Env, orgId: string): Promise<void> {
  return spend(env, "ORG_SEND_LIMIT", orgId, "test events and redeliveries");
}

export const RATE_LIMITED_429 = {
  ...errorResponseSpec("Too many requests for this org (`rate_limited`); `Retry-After` says when to try again"),
  headers: { "Retry-After": { description: "Seconds to wait", schema: { type: "integer" as const } } },
};
