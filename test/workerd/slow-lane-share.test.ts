import { describe, expect, it } from "vitest";
import { applyReport, type EndpointReport, newEndpointHealth } from "../../src/org/endpoint-health";
import { admitToSlowLane, expectedAttemptMs } from "../../src/org/slow-lane-share";

/** An org's share of the slow lane (src/org/slow-lane-share.ts): the rules alone. */

const rules = { share: 3, slowAttemptMs: 1000, attemptTimeoutMs: 10_000 };

/** An endpoint's health after these reports, one a second. */
function healthAfter(...reports: Array<Pick<EndpointReport, "outcome" | "error" | "response_time_ms">>) {
  return reports.reduce(
    (h, r, i) =>
      applyReport(h, { origin: "https://a.example", at: 1_000_000 + i * 1000, slow: r.response_time_ms >= 1000, ...r }),
    newEndpointHealth("https://a.example"),
  );
}
const answer = (ms: number) => ({ outcome: "succeeded" as const, error: null, response_time_ms: ms });
const timeout = { outcome: "failed" as const, error: "timeout" as const, response_time_ms: 10_000 };
const inFlight = { outcome: "in_flight" as const, error: null, response_time_ms: 1000 };

describe("an org's share of the slow lane", () => {
  it("expects an attempt to take the endpoint's average response time, between SLOW_ATTEMPT_MS and the timeout", () => {
    expect(expectedAttemptMs(healthAfter(...Array(20).fill(answer(2500))), false, rules)).toBeCloseTo(2500, -1);
    const failsAtOnce = { outcome: "failed" as const, error: "http_status" as const, response_time_ms: 40 };
    expect(expectedAttemptMs(healthAfter(failsAtOnce, failsAtOnce, failsAtOnce), false, rules)).toBe(1000);
    // Answers in 200 ms and now and then takes 1.5 s: slow lane, but no hanging endpoint.
    const spiky = healthAfter(...Array(5).fill(answer(200)), answer(1500));
    expect(spiky.lane).toBe("slow");
    expect(expectedAttemptMs(spiky, false, rules)).toBe(1000);
    // Recovering after a timeout: its answers count, not the old timeout.
    const recovering = healthAfter(answer(80), timeout, answer(80), answer(80), answer(80));
    expect(expectedAttemptMs(recovering, false, rules)).toBeLessThan(2000);
  });

  it("expects the timeout from an endpoint that hangs, whatever its average says so far", () => {
    expect(expectedAttemptMs(null, false, rules)).toBe(10_000);
    const networkErrors = { outcome: "failed" as const, error: "network_error" as const, response_time_ms: 5 };
    expect(expectedAttemptMs(healthAfter(networkErrors), false, rules)).toBe(10_000);
    const healthy = [answer(80), answer(80), answer(80)];
    // The moving run saw an attempt still going: the average of its healthy past is no guide.
    expect(expectedAttemptMs(healthAfter(...healthy), true, rules)).toBe(10_000);
    // An earlier run handed one off, and it has not ended yet.
    expect(expectedAttemptMs(healthAfter(...healthy, inFlight), false, rules)).toBe(10_000);
    // Its last attempt timed out: one timeout lifts an 80 ms average only to about 2 s.
    const timedOut = healthAfter(...healthy, timeout);
    expect(timedOut.latency_ms).toBeLessThan(3000);
    expect(expectedAttemptMs(timedOut, false, rules)).toBe(10_000);
  });

  it("lets `share` hanging attempts in at once, then one more for each that would have ended", () => {
    const now = 1_000_000;
    const first = admitToSlowLane(0, [10_000, 10_000, 10_000, 10_000], now, rules);
    expect(first.admitted).toEqual([true, true, true, false]);
    expect(first.clock).toBeCloseTo(now + 10_000);
    // A third of the timeout later, one attempt's worth of the share is back.
    const later = admitToSlowLane(first.clock, [10_000, 10_000], now + 3334, rules);
    expect(later.admitted).toEqual([true, false]);
    // An idle org starts over: its clock never counts from the past.
    expect(admitToSlowLane(first.clock, [10_000, 10_000, 10_000], now + 60_000, rules).admitted).toEqual([
      true,
      true,
      true,
    ]);
  });

  it("counts a quick endpoint's attempt by its own time: ten of them fit where one hanging one does", () => {
    const now = 5_000;
    const { admitted, clock } = admitToSlowLane(0, [10_000, 10_000, ...Array(10).fill(1000), 1000], now, rules);
    expect(admitted).toEqual([true, true, ...Array(10).fill(true), false]);
    expect(clock).toBeCloseTo(now + 10_000);
    // A hanging attempt no longer fits, nor does a quick one.
    expect(admitToSlowLane(clock, [10_000, 1000], now, rules).admitted).toEqual([false, false]);
  });
});
