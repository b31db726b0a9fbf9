import type { Context } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { findValidKey, isOrgKeyShaped, lastUseIsStale, recordKeyUse } from "../store/api-keys";
import { ApiError, errorResponse, errorResponseSpec } from "./errors";

/**
 * The three credentials of DESIGN.md, all `Authorization: Bearer …`:
 *
 * - the producer token (a Worker secret) for the job service, which queues events;
 * - the operator token (another secret) for issuing and revoking org keys: apart from
 *   the producer's, so that the service sending every org's events cannot mint a key
 *   to any org. Both are compared in constant time;
 * - org API keys (`zk_…`), looked up by SHA-256 hash in D1 on every request, so a
 *   revoked key fails at once. The org of the key becomes `c.var.orgId`, and every
 *   org route scopes its queries to it: another org's ids simply do not exist. Its
 *   `last_used_at` is written in the background (`waitUntil`, never awaited by the
 *   request), and only when it is over 5 minutes old: the console's key list is not
 *   worth a D1 write per request.
 *
 * Any failure is a 401 with the JSON error shape; the message says which kind of
 * credential the route takes, never whether a given key or org exists.
 */

export type OrgVariables = { orgId: string /** The id (key_…) of the key in use. */; keyId: string };

function unauthorized(message: string) {
  return () => errorResponse(401, "unauthorized", message);
}

const MALFORMED = unauthorized("the Authorization header must be `Bearer <credential>`");

const encoder = new TextEncoder();
/** The configured tokens' digests, by token (two at most: the producer's and the operator's). */
const expectedDigests = new Map<string, Promise<ArrayBuffer>>();

/**
 * Compares in constant time: both sides are hashed to 32 bytes first (so not even the
 * length of the token leaks), then `crypto.subtle.timingSafeEqual`. The configured
 * token's digest is computed once per isolate, not per request: ingest is the hot path.
 */
async function isSecretToken(expected: string, presented: string): Promise<boolean> {
  let expectedDigest = expectedDigests.get(expected);
  if (!expectedDigest) {
    expectedDigest = crypto.subtle.digest("SHA-256", encoder.encode(expected));
    if (expectedDigests.size >= 2) expectedDigests.clear(); // a rotated secret's old digest goes
    expectedDigests.set(expected, expectedDigest);
  }
  const [a, b] = await Promise.all([expectedDigest, crypto.subtle.digest("SHA-256", encoder.encode(presented))]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/** A route group guarded by one of the Worker's secret tokens (`what` names it in the 401s). */
function requireSecretToken(secret: "PRODUCER_TOKEN" | "OPERATOR_TOKEN", what: string, notHere: string) {
  return bearerAuth({
    verifyToken: async (token, c: Context<{ Bindings: Env }>) => {
      const expected = c.env[secret];
      if (!expected) throw new ApiError(500, "internal", `the ${what} is not configured`);
      // Set to the producer's, the operator token would let the service that sends every
      // org's events mint a key to any org. Only the operator routes stop (ingest goes on):
      // a comparison of two configured secrets, which says nothing of the one presented.
      if (secret === "OPERATOR_TOKEN" && expected === c.env.PRODUCER_TOKEN) {
        throw new ApiError(500, "internal", "the operator token must differ from the producer token");
      }
      return isSecretToken(expected, token);
    },
    noAuthenticationHeader: { message: unauthorized(`this route needs the ${what}: Authorization: Bearer <token>`) },
    invalidAuthenticationHeader: { message: MALFORMED },
    invalidToken: { message: unauthorized(`invalid ${what} (${notHere} do not work here)`) },
  });
}

export const requireProducer = requireSecretToken("PRODUCER_TOKEN", "producer token", "org API keys");
export const requireOperator = requireSecretToken(
  "OPERATOR_TOKEN",
  "operator token",
  "the producer token and org API keys",
);

export const requireOrgKey = bearerAuth({
  verifyToken: async (token, c: Context<{ Bindings: Env; Variables: OrgVariables }>) => {
    if (!isOrgKeyShaped(token)) return false;
    const key = await findValidKey(c.env.DB, token);
    if (key === null) return false;
    c.set("orgId", key.org_id);
    c.set("keyId", key.id);
    const now = Date.now();
    if (lastUseIsStale(key, now)) {
      // In the background, never in the request's way: a lost write only leaves the time older.
      const written = recordKeyUse(c.env.DB, key.id, now).catch((error: unknown) =>
        console.error(JSON.stringify({ event: "api_key.last_used_unwritten", error: String(error).slice(0, 200) })),
      );
      c.executionCtx.waitUntil(written);
    }
    return true;
  },
  noAuthenticationHeader: { message: unauthorized("this route needs an org API key: Authorization: Bearer zk_…") },
  invalidAuthenticationHeader: { message: MALFORMED },
  invalidToken: { message: unauthorized("invalid or revoked org API key (the producer token does not work here)") },
});

/**
 * The OpenAPI side of each credential, spread into `createRoute` (with its 401 answer).
 * The checks themselves are applied once per group of paths, in app.ts.
 */
export const producerRoute = { security: [{ producerToken: [] }] };
export const operatorRoute = { security: [{ operatorToken: [] }] };
export const orgKeyRoute = { security: [{ orgKey: [] }] };
export const PRODUCER_401 = errorResponseSpec("Missing or wrong producer token");
export const OPERATOR_401 = errorResponseSpec("Missing or wrong operator token");
export const ORG_KEY_401 = errorResponseSpec("Missing, invalid or revoked org API key");
