// A receiver written the way the Standard Webhooks docs suggest: the `standardwebhooks`
// npm library verifies webhook-id, webhook-timestamp (5-minute tolerance) and
// webhook-signature against the org's whsec_ secret.
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.ZUPERTRY_WEBHOOK_SECRET);
const server = createServer((req, res) => {
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    let status = 200;
    try {
      webhook.verify(Buffer.concat(parts).toString("utf8"), req.headers);
    } catch {
      status = 401;
    }
    res
      .writeHead(status, { "content-type": "application/json" })
      .end(JSON.stringify(status === 200 ? { received: true } : { error: "Invalid signature" }));
    console.log(
      JSON.stringify({
        status,
        delivery: req.headers["webhook-id"] ?? null,
        attempt: req.headers["x-zupertry-attempt"] ?? null,
      }),
    );
  });
});
server.listen(Number(process.env.PORT), "127.0.0.1", () =>
  console.log(JSON.stringify({ listening: server.address().port })),
);
