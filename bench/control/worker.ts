/**
 * The controls for the benchmark (not shipped): the same framework, runtime and queue
 * settings as the product, doing only the part of the work that no dispatcher can
 * avoid, so their rates are this machine's ceilings.
 *
 * - POST /v1/events: parse the JSON body, answer 202. No auth, validation or queue.
 * - POST /v1/events/queued: the same, plus one Queue.send of the body: what the local
 *   queue alone costs an ingest request (a queue nobody consumes).
 * - GET /fetch-ceiling?url=&n=: n POSTs from one invocation, 6 at a time (a consumer
 *   invocation's connection limit): what outbound fetch alone allows.
 * - POST /v1/events/batch + the queue consumer: put each event on a queue as it is,
 *   and POST each message's body to its webhook_url, 6 at a time (the connections a
 *   run holds in production; `wrangler dev` does not enforce it), ack on 2xx. No D1, no
 *   Durable Object, no signing, no log: what the local queue and outbound fetch allow.
 */
import { Hono } from "hono";

interface ControlMessage {
  url: string;
  body: string;
}

const app = new Hono<{ Bindings: { CONTROL_QUEUE: Queue<ControlMessage>; CONTROL_INGEST_QUEUE: Queue<unknown> } }>();

app.post("/v1/events", async (c) => {
  await c.req.json();
  return c.json({ status: "queued" }, 202);
});

app.post("/v1/events/queued", async (c) => {
  await c.env.CONTROL_INGEST_QUEUE.send(await c.req.json());
  return c.json({ status: "queued" }, 202);
});

app.get("/fetch-ceiling", async (c) => {
  const url = c.req.query("url")!;
  const n = Number(c.req.query("n"));
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (next++ < n) await (await fetch(url, { method: "POST", body: '{"data":{}}' })).arrayBuffer();
    }),
  );
  return c.json({ fetches: n, ms: Date.now() - started });
});

app.post("/v1/events/batch", async (c) => {
  const { events } = await c.req.json<{ events: Array<{ webhook_url: string }> }>();
  await c.env.CONTROL_QUEUE.sendBatch(events.map((e) => ({ body: { url: e.webhook_url, body: JSON.stringify(e) } })));
  return c.json({ status: "queued" }, 202);
});

export default {
  fetch: app.fetch,
  async queue(batch: MessageBatch<ControlMessage>) {
    let next = 0;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next < batch.messages.length) {
          const message = batch.messages[next++]!;
          const res = await fetch(message.body.url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: message.body.body,
          });
          await res.arrayBuffer();
          if (res.ok) message.ack();
          else message.retry();
        }
      }),
    );
  },
};
