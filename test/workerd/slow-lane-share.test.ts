import { describe, expect, it } from "vitest";
import { admitToSlowLane, expectedAttemptMs } from "../../src/org/slow-lane-share";

/** An org's share of the slow lane (src/org/slow-lane-share.ts): the rules alone. */

const rules = { share: 3, slowAttemptMs: 1000, attemptTimeoutMs: 10_000 };

describe("an org's share of the slow lane", () => {
  it("expects an attempt to take the endpoint's response time, between SLOW_ATTEMPT_MS and the timeout", () => {
    const answering = (latency_ms: number) => ({ latency_ms, lane_reason: "slow" as const });
    expect(expectedAttemptMs(answering(2500), false, rules)).toBe(2500);
    expect(expectedAttemptMs({ latency_ms: 40, lane_reason: "failing" }, false, rules)).toBe(1000);
    expect(expectedAttemptMs(answering(60_000), false, rules)).toBe(10_000);
  });

  it("expects the timeout from an endpoint that hangs, whatever its average says so far", () => {
    expect(expectedAttemptMs(null, false, rules)).toBe(10_000);
    expect(expectedAttemptMs({ latency_ms: null, lane_reason: null }, false, rules)).toBe(10_000);
    // An attempt of the moving run is still going: the average of its healthy past is no guide.
    expect(expectedAttemptMs({ latency_ms: 80, lane_reason: null }, true, rules)).toBe(10_000);
    // One timeout lifts an 80 ms average to about 2 s; it is still a hanging endpoint.
    expect(expectedAttemptMs({ latency_ms: 2064, lane_reason: "timeout" }, false, rules)).toBe(10_000);
    // Slow, by an attempt still running when last reported: the average has not seen it.
    expect(expectedAttemptMs({ latency_ms: 80, lane_reason: "slow" }, false, rules)).toBe(10_000);
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
