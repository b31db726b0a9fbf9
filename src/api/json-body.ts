import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import { ApiError, errorResponseSpec } from "./errors";
import { type InexactNumber, MAX_DATA_DEPTH, parseExactJson, TooDeepJson } from "./exact-json";

/**
 * Reads a JSON request body in the order a client would want its mistakes reported:
 * wrong `Content-Type` → 415, too large → 413 (from `Content-Length`, or while
 * streaming when there is none), not JSON (or not UTF-8) → 400 `invalid_json`. Only then does the
 * route's zod schema see it (400 `invalid_request`).
 *
 * With `optional`, a request without a body counts as `{}`.
 *
 * The parsed value is kept as `c.var.json`: handlers that pass data through use it
 * rather than zod's output, which reorders object keys.
 *
 * A number that would not arrive as sent (src/api/exact-json.ts) is a 400 naming its
 * field; with `inexactNumbers: "report"` the route gets them in `c.var.inexact` and
 * decides (the batch route refuses only the events that hold one).
 */

export type JsonBodyVariables = { json: unknown; inexact: InexactNumber[] };

/** What `jsonBody` answers before the route's own handler: every route that uses it documents these. */
export const JSON_BODY_ERRORS = {
  413: errorResponseSpec("Body too large"),
  415: errorResponseSpec("Body is not `application/json`"),
};

/**
 * A JSON media type: the part of `Content-Type` before any `;`, trimmed, any case (what
 * Hono's own validator reads a body by, `hono/validator`). Anything RFC 9110 allows
 * around it (spaces before the `;`, a `charset`) is fine.
 */
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

function isJsonContentType(header: string | undefined): boolean {
  return JSON_MEDIA_TYPE.test((header ?? "").split(";")[0]!.trim());
}

/** UTF-8 that refuses malformed bytes, where `text()` would replace them with U+FFFD and deliver that. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export function jsonBody(
  maxBytes: number,
  { optional = false, inexactNumbers = "refuse" }: { optional?: boolean; inexactNumbers?: "refuse" | "report" } = {},
): MiddlewareHandler<{ Variables: JsonBodyVariables }>[] {
  return [
    createMiddleware<{ Variables: JsonBodyVariables }>(async (c, next) => {
      if (optional && isEmpty(c.req.raw)) {
        // No body means `{}`, whatever Content-Type came with it (curl -X POST sends none).
        c.req.raw = new Request(c.req.raw, { body: "{}", headers: withJsonType(c.req.raw.headers) });
        c.set("json", {});
        c.set("inexact", []);
        return next();
      }
      const type = c.req.header("content-type");
      if (!isJsonContentType(type)) {
        throw new ApiError(
          415,
          "unsupported_media_type",
          "the body must be JSON, sent with Content-Type: application/json",
        );
      }
      if (type !== "application/json") {
        // The route's validators (@hono/zod-openapi) take a stricter spelling than RFC 9110
        // allows (`application/json ; charset=utf-8` is refused), and the one for an
        // optional body reads an unexpected one as no body at all. They see the one they
        // take; a JSON body is UTF-8 whatever its charset says.
        c.req.raw = new Request(c.req.raw, { headers: withJsonType(c.req.raw.headers) });
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
      const bytes = await c.req.arrayBuffer();
      let text: string;
      try {
        text = strictUtf8.decode(bytes);
      } catch {
        throw new ApiError(400, "invalid_json", "the body is not valid JSON: it is not UTF-8");
      }
      // The route's validator reads the body again as text: it gets this one rather than
      // decoding the bytes a second time (Hono caches each body read as a promise).
      Object.assign(c.req.bodyCache, { text: Promise.resolve(text) });
      let parsed: ReturnType<typeof parseExactJson>;
      try {
        parsed = parseExactJson(text);
      } catch (error) {
        if (!(error instanceof TooDeepJson)) throw new ApiError(400, "invalid_json", "the body is not valid JSON");
        throw new ApiError(400, "invalid_request", `the body nests deeper than ${MAX_DATA_DEPTH} levels`, [
          { path: [], code: "too_deep", message: `at most ${MAX_DATA_DEPTH} levels of objects and arrays in data` },
        ]);
      }
      if (parsed.inexact.length > 0 && inexactNumbers === "refuse") throw inexactNumbersError(parsed.inexact);
      c.set("json", parsed.value);
      c.set("inexact", parsed.inexact);
      await next();
    }),
  ];
}

function withJsonType(headers: Headers): Headers {
  const copy = new Headers(headers);
  copy.set("content-type", "application/json");
  return copy;
}

/** A request without a body, or with an empty one (`curl -X POST` sends `Content-Length: 0`). */
function isEmpty(request: Request): boolean {
  return request.body === null || request.headers.get("content-length") === "0";
}

/** An error names at most this many numbers (a 64 KiB body can hold some 10,000). */
const MAX_INEXACT_DETAILS = 20;

/** 400 `invalid_request` naming the numbers that would not arrive as sent (the first 20). */
export function inexactNumbersError(inexact: readonly InexactNumber[]): ApiError {
  const more = inexact.length - MAX_INEXACT_DETAILS;
  const details = inexact.slice(0, MAX_INEXACT_DETAILS).map(({ path, literal }) => ({
    path,
    code: "inexact_number",
    message:
      `${literal.length > 40 ? `${literal.slice(0, 40)}…` : literal} would not arrive as sent ` +
      "(JSON numbers travel as 64-bit floats); send it as a string",
  }));
  return new ApiError(
    400,
    "invalid_request",
    `${inexact.length === 1 ? "a number" : `${inexact.length} numbers`} would not arrive as sent: ` +
      details.map((d) => d.path.join(".")).join(", ") +
      (more > 0 ? `, and ${more} more` : ""),
    details,
  );
}
