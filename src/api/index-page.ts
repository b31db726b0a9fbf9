import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { validationHook } from "./errors";

/** What lives where, for someone who opens the dispatcher's address in a browser or with curl. */
const INDEX_LINKS = {
  console: "/console/",
  docs: "/docs/",
  openapi: "/openapi.json",
  health: "/health",
} as const;

const INDEX_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>zupertry-webhooks</title><meta name="color-scheme" content="light dark"></head>
<body style="font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem">
<h1>zupertry-webhooks</h1>
<p>Signed webhook delivery for Zupertry job events.</p>
<ul>
<li><a href="${INDEX_LINKS.console}">Console</a>: your deliveries, webhook logs and settings
  (sign in with an org API key)</li>
<li><a href="${INDEX_LINKS.docs}">API reference</a></li>
<li><a href="${INDEX_LINKS.openapi}">OpenAPI document</a></li>
<li><a href="${INDEX_LINKS.health}">Health</a></li>
</ul>
</body></html>
`;

export const indexPage = new OpenAPIHono<{ Bindings: Env }>({ defaultHook: validationHook }).openapi(
  createRoute({
    method: "get",
    path: "/",
    summary: "An index of this dispatcher: the console, the API reference, the OpenAPI document, health",
    description: "HTML for a browser (`Accept: text/html`), JSON otherwise.",
    tags: ["Meta"],
    responses: {
      200: {
        description: "The index",
        content: {
          "application/json": {
            schema: z
              .object({
                name: z.literal("zupertry-webhooks"),
                links: z.object({ console: z.string(), docs: z.string(), openapi: z.string(), health: z.string() }),
              })
              .openapi("Index"),
          },
          "text/html": { schema: z.string() },
        },
      },
    },
  }),
  (c) => {
    if (c.req.header("Accept")?.includes("text/html")) {
      return c.html(INDEX_HTML, 200, {
        "Content-Security-Policy":
          "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
      }) as never;
    }
    return c.json({ name: "zupertry-webhooks" as const, links: INDEX_LINKS }, 200);
  },
);
