import { createMiddleware } from "hono/factory";
import { bodyLimit } from "hono/body-limit";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors";

/**
 * Reads a JSON request body in the order a client would want its mistakes reported:
 * wrong `Content-Type` → 415, too large → 413 (from `Content-Length`, or while
 * streaming when there is none), not JSON → 400 `invalid_json`. Only then does the
 * route's zod schema see it (400 `invalid_request`).
 *
 * With `optional`, a request without a body counts as `{}`.
 *
 * The parsed value is kept as `c.var.json`: handlers that pass data through use it
 * rather than zod's output, which reorders object keys.
 */

export type JsonBodyVariables = { json: unknown };

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

export function jsonBody(
  maxBytes: number,
  { optional = false } = {},
): MiddlewareHandler<{ Variables: JsonBodyVariables }>[] {
  return [
    createMiddleware<{ Variables: JsonBodyVariables }>(async (c, next) => {
      if (optional && isEmpty(c.req.raw)) {
        // No body means `{}`, whatever Content-Type came with it (curl -X POST sends none).
        const headers = new Headers(c.req.raw.headers);
        headers.set("content-type", "application/json");
        c.req.raw = new Request(c.req.raw, { body: "{}", headers });
        c.set("json", {});
        return next();
      }
      if (!JSON_TYPE.test(c.req.header("content-type") ?? "")) {
        throw new ApiError(415, "unsupported_media_type", "the body must be JSON, sent with Content-Type: application/json");
      }
      await next();
    }),
    bodyLimit({
      maxSize: maxBytes,
      onError: () => {
        throw new ApiError(413, "payload_too_large", `the body must be at most ${maxBytes} bytes`);
      },
    }),
    createMiddleware<{ Variables: JsonBodyVariables }>(async (c, next) => {
      if (c.var.json !== undefined) return next();
      const text = await c.req.text();
      try {
        c.set("json", JSON.parse(text));
      } catch {
        throw new ApiError(400, "invalid_json", "the body is not valid JSON");
      }
      await next();
    }),
  ];
}

/** A request without a body, or with an empty one (`curl -X POST` sends `Content-Length: 0`). */
function isEmpty(request: Request): boolean {
  return request.body === null || request.headers.get("content-length") === "0";
}
