import { beforeAll, describe, expect, it } from "vitest";
import { receiver } from "../support/receiver-client";
import { api, newOrg, producerToken, seedEvent, until } from "./support/client";
import { record } from "./support/summary";

/**
 * The seed's schedule and timeout, observed from a receiver's side of the wire, with
 * the dispatcher's vars at RETRY_DELAYS_SECONDS=1,2 and ATTEMPT_TIMEOUT_MS=2000.
 */

type Org = Awaited<ReturnType<typeof newOrg>>;
type Attempt = {
  attempt: number;
  status_code: number | null;
  error: string | null;
  outcome: string;
  response_time_ms: number;
  id: string;
};
type Delivery = { status: string; attempt_count: number };

let org: Org;
beforeAll(async () => {
  org = await newOrg();
});

/** Sends one event to a scripted receiver endpoint; returns its delivery id and the endpoint. */
async function deliverTo(name: string, replies: Parameters<ReturnType<typeof receiver>["script"]>[0]["replies"]) {
  const hook = receiver(`${name}-${Math.random().toString(36).slice(2, 8)}`);
  await hook.script({ replies });
  const res = await api("POST", "/v1/events", producerToken(), { ...seedEvent(org.orgId), webhook_url: hook.url });
  expect(res.status).toBe(202);
  const { delivery_id } = (await res.json()) as { delivery_id: string };
  return { hook, deliveryId: delivery_id };
}

async function finished(deliveryId: string, timeoutMs = 20_000): Promise<Delivery> {
  return until(async () => {
    const res = await api("GET", `/v1/deliveries/${deliveryId}`, org.key);
    const d = res.status === 200 ? ((await res.json()) as Delivery) : undefined;
    return d && d.status !== "pending" ? d : undefined;
  }, timeoutMs);
}

async function attempts(deliveryId: string): Promise<Attempt[]> {
  const { data } = (await (await api("GET", `/v1/webhook-logs?delivery_id=${deliveryId}`, org.key)).json()) as {
    data: Attempt[];
  };
  return data.reverse();
}

describe("the retry schedule", () => {
  it("retries 500, 500, 200 after the configured delays, with the same bytes and signature", async () => {
    const { hook, deliveryId } = await deliverTo("schedule", [{ status: 500 }, { status: 500 }, { status: 200 }]);
    expect(await finished(deliveryId, 45_000)).toMatchObject({ status: "delivered", attempt_count: 3 });
    const arrivals = await hook.requests();
    expect(arrivals.map((r) => r.headers["x-zupertry-attempt"])).toEqual(["1", "2", "3"]);
    const gaps = [
      arrivals[1]!.received_at - arrivals[0]!.received_at,
      arrivals[2]!.received_at - arrivals[1]!.received_at,
    ];
    // Never before its delay. After it, the batch wait (1 s) and the run itself, about a
    // second here and more on a busy machine: the upper bound only catches a retry that lost
    // the configured delay, and came on the queue's retry_delay (30 s) or the default (60 s).
    expect(gaps[0]).toBeGreaterThanOrEqual(1000);
    expect(gaps[0]).toBeLessThan(1000 + 10_000);
    expect(gaps[1]).toBeGreaterThanOrEqual(2000);
    expect(gaps[1]).toBeLessThan(2000 + 10_000);
    expect(new Set(arrivals.map((r) => r.body)).size).toBe(1);
    expect(new Set(arrivals.map((r) => r.headers["x-zupertry-signature"])).size).toBe(1);
    expect(new Set(arrivals.map((r) => r.headers["webhook-id"]))).toEqual(new Set([deliveryId]));
    record(
      "schedule",
      "gaps between attempts (configured 1 s, 2 s)",
      `${(gaps[0]! / 1000).toFixed(2)} s, ${(gaps[1]! / 1000).toFixed(2)} s`,
    );
  });

  it("ends as failed after three failures, and never makes a fourth attempt", async () => {
    const { hook, deliveryId } = await deliverTo("always-500", [{ status: 500 }]);
    expect(await finished(deliveryId)).toMatchObject({ status: "failed", attempt_count: 3 });
    await new Promise((r) => setTimeout(r, 4000)); // longer than any delay left
    expect(await hook.requests()).toHaveLength(3);
    expect((await attempts(deliveryId)).map((a) => [a.attempt, a.status_code, a.error])).toEqual([
      [1, 500, "http_status"],
      [2, 500, "http_status"],
      [3, 500, "http_status"],
    ]);
    record("schedule", "always-500 receiver", "failed after 3 attempts, no 4th");
  });
});

describe.concurrent("receivers that misbehave", () => {
  it("a receiver that hangs before sending headers ends as timeout", async () => {
    const { deliveryId } = await deliverTo("hang", [{ delayMs: 30_000 }]);
    await finished(deliveryId, 30_000);
    const logged = await attempts(deliveryId);
    expect(logged.map((a) => a.error)).toEqual(["timeout", "timeout", "timeout"]);
    for (const a of logged) {
      expect(a.status_code).toBeNull();
      expect(a.response_time_ms).toBeGreaterThanOrEqual(1900);
      expect(a.response_time_ms).toBeLessThan(5000);
    }
    record("faults", "receiver hangs before headers", "timeout ×3, failed");
  });

  it("a receiver that trickles its body past the timeout ends as timeout", async () => {
    const { deliveryId } = await deliverTo("trickle", [
      { status: 200, body: "x".repeat(200), trickleMs: 400, chunks: 10 },
    ]);
    await finished(deliveryId, 30_000);
    expect((await attempts(deliveryId)).map((a) => [a.status_code, a.error])).toEqual([
      [200, "timeout"],
      [200, "timeout"],
      [200, "timeout"],
    ]);
    record("faults", "receiver trickles its body past the timeout", "timeout ×3, failed");
  });

  it("a 10 MB response body is stored truncated, and the consumer carries on", async () => {
    const { deliveryId } = await deliverTo("huge", [{ status: 200, bodyBytes: 10_000_000 }]);
    expect(await finished(deliveryId)).toMatchObject({ status: "delivered", attempt_count: 1 });
    const [attempt] = await attempts(deliveryId);
    const detail = (await (await api("GET", `/v1/webhook-logs/${attempt!.id}`, org.key)).json()) as {
      response: { body: string; truncated: boolean };
    };
    expect(detail.response.truncated).toBe(true);
    expect(detail.response.body).toHaveLength(65_536);
    const next = await deliverTo("after-huge", [{ status: 200 }]);
    expect(await finished(next.deliveryId)).toMatchObject({ status: "delivered" });
    record("faults", "10 MB response body", "stored 64 KiB, truncated; next delivery fine");
  });

  it("a redirect is not followed and counts as a failure", async () => {
    const target = receiver(`target-${Math.random().toString(36).slice(2, 8)}`);
    const { deliveryId } = await deliverTo("redirect", [{ status: 302, headers: { location: target.url } }]);
    expect(await finished(deliveryId)).toMatchObject({ status: "failed", attempt_count: 3 });
    expect((await attempts(deliveryId)).map((a) => [a.status_code, a.error])).toEqual([
      [302, "redirect"],
      [302, "redirect"],
      [302, "redirect"],
    ]);
    expect(await target.requests()).toHaveLength(0);
    record("faults", "302 redirect", "not followed, failed");
  });
});
