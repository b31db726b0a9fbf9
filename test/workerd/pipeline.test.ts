import { expect, it, vi } from "vitest";
import { attemptsOf, call, jobEvent, PRODUCER_TOKEN, receiver, uniqueId } from "./helpers";

// Through the real queue binding and its consumer, as in `wrangler dev`: ingest,
// queue (v8-serialised message with the body bytes), consumer, receiver, D1.

it("delivers an ingested event through the real queue to the receiver and logs it", async () => {
  const hook = receiver(uniqueId("pipeline"));
  const event = jobEvent(uniqueId("org"), uniqueId("job"), { webhook_url: hook.url });
  const res = await call("POST", "/v1/events", { token: PRODUCER_TOKEN, body: event });
  const { delivery_id } = (await res.json()) as { delivery_id: string };

  await vi.waitUntil(async () => (await attemptsOf(delivery_id)).length === 1, { timeout: 10_000, interval: 50 });
  const [request] = await hook.requests();
  expect(request!.text).toBe(JSON.stringify({ type: event.type, data: event.data }));
  expect(request!.headers["x-zupertry-delivery"]).toBe(delivery_id);
  expect(await attemptsOf(delivery_id)).toMatchObject([{ attempt: 1, status_code: 200, outcome: "succeeded" }]);
});

it("delivers a batch through the real queue, each event once", async () => {
  const hook = receiver(uniqueId("pipeline"));
  const orgId = uniqueId("org");
  const events = Array.from({ length: 25 }, () => jobEvent(orgId, uniqueId("job"), { webhook_url: hook.url }));
  const res = await call("POST", "/v1/events/batch", {
    token: PRODUCER_TOKEN,
    body: { events: [...events, events[0]] },
  });
  expect(res.status).toBe(202);

  await vi.waitUntil(async () => (await hook.requests()).length >= 25, { timeout: 15_000, interval: 100 });
  const requests = await hook.requests();
  expect(requests).toHaveLength(25);
  expect(new Set(requests.map((r) => r.headers["x-zupertry-delivery"])).size).toBe(25);
});
