import { describe, expect, it } from "vitest";
import { admitToSlowLane, expectedAttemptMs } from "../../src/org/slow-lane-share";

/** An org's share of the slow lane (src/org/slow-lane-share.ts): the rules alone. */

const rules = { share: 3, slowAttemptMs: 1000, attemptTimeoutMs: 10_000 };

describe("an org's share of the slow lane", () => {
  it("expects an attempt to take the endpoint's response time, between SLOW_ATTEMPT_MS and the timeout", () => {
    expect(expectedAttemptMs(null, rules)).toBe(10_000);
    expect(expectedAttemptMs(2500, rules)).toBe(2500);
    expect(expectedAttemptMs(40, rules)).toBe(1000);
    expect(expectedAttemptMs(60_000, rules)).toBe(10_000);
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
