import { type Hook, z } from "@hono/zod-openapi";
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/**
 * Every error this API answers has one shape, whatever raised it (a handler, zod, a
 * Hono middleware, a crash):
 *
 *   {"error": {"code": "invalid_request", "message": "...", "details": ...}}
 *
 * Clients branch on `code`; `message` is for humans; `details` is optional (the zod
 * issues of a schema miss). Never a stack trace, never HTML.
 */

/** Every `code` an error can carry (docs/DESIGN.md lists the same; a test holds them together). */
export const ERROR_CODES = [
  "invalid_request",
  "invalid_json",
  "unauthorized",
  "not_found",
  "conflict",
  "payload_too_large",
  "unsupported_media_type",
  "no_webhook_url",
  "rate_limited",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z
        .enum(ERROR_CODES)
        .openapi({ description: "What went wrong, for programs to branch on", example: "invalid_request" }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi("Error");

export type ErrorBody = z.infer<typeof ErrorSchema>;

/** An error response in a route's OpenAPI `responses`. */
export function errorResponseSpec(description: string) {
  return { description, content: { "application/json": { schema: ErrorSchema } } };
}

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    /** Headers the answer carries (`Retry-After` on a 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): ErrorBody {
    return errorBody(this.code, this.message, this.details);
  }
}

/** A webhook URL the rules refuse (src/org/webhook-url.ts), as a 400 naming the field. */
export function invalidWebhookUrl(reason: string): ApiError {
  return new ApiError(400, "invalid_request", reason, [
    { path: ["webhook_url"], code: "invalid_url", message: reason },
  ]);
}

export function errorBody(code: ErrorCode, message: string, details?: unknown): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

export function errorResponse(
  status: ContentfulStatusCode,
  code: ErrorCode,
  message: string,
  details?: unknown,
): Response {
  return Response.json(errorBody(code, message, details), { status });
}

/**
 * zod issues, without the echoed input values (they may be large or sensitive); an
 * unknown parameter keeps the names it was given (`keys`), which are the client's own.
 */
export function issueDetails(
  error: z.ZodError,
): Array<{ path: PropertyKey[]; code: string; message: string; keys?: string[] }> {
  return error.issues.map((issue) => {
    const { path, code, message } = issue;
    return issue.code === "unrecognized_keys" ? { path, code, message, keys: issue.keys } : { path, code, message };
  });
}

/** The `defaultHook` of every OpenAPIHono router: a schema miss is a 400 `invalid_request`. */
// biome-ignore lint/suspicious/noExplicitAny: one hook serves routers whose env and path types differ.
export const validationHook: Hook<unknown, any, any, unknown> = (result, c) => {
  if (!result.success) {
    return c.json(
      errorBody("invalid_request", "the request does not match the schema", issueDetails(result.error)),
      400,
    );
  }
};

const HTTP_EXCEPTION_CODES: Partial<Record<number, ErrorCode>> = {
  400: "invalid_request",
  401: "unauthorized",
  404: "not_found",
  413: "payload_too_large",
  415: "unsupported_media_type",
};

export const onError: ErrorHandler = (err, c) => {
  if (err instanceof ApiError) return c.json(err.body(), err.status, err.headers);
  if (err instanceof HTTPException) {
    // Middleware that answers with its own Response (ours build JSON ones) keep it.
    if (err.res?.headers.get("content-type")?.startsWith("application/json")) return err.getResponse();
    const code = HTTP_EXCEPTION_CODES[err.status] ?? (err.status >= 500 ? "internal" : "invalid_request");
    return c.json(errorBody(code, err.message || code.replaceAll("_", " ")), err.status);
  }
  console.error(
    JSON.stringify({
      event: "api.error",
      method: c.req.method,
      path: c.req.routePath,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    }),
  );
  return c.json(errorBody("internal", "internal error"), 500);
};

export const notFound: NotFoundHandler = (c: Context) =>
  c.json(errorBody("not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`), 404);
