import { describe, expect, it } from "vitest";
import { planMessage } from "../../src/delivery/plan";
import type { DeliveryState } from "../../src/store/attempts";
import { claimOwner, LEGACY_CLAIM_OWNER } from "../../src/store/stalled";

/**
 * What a take-over message does under each claim a delivery can be under
 * (src/delivery/plan.ts, src/store/stalled.ts): only the latest claim's take-over makes
 * the attempt, including take-overs and rows from before claims had ids.
 */
describe("a take-over's plan", () => {
  const now = 10_000_000;
  const rules = { stalledAfterMs: 300_000, attemptTimeoutMs: 10_000 };
  const claimedBy = (owner: string): DeliveryState => ({
    last_attempt: 1,
    last_message_id: owner,
    first_message_id: owner,
    next_attempt_at: now - 1_000,
  });
  const attempt2 = { kind: "attempt", attempt: 2, scheduled: true, storedEvent: true };

  it("makes the attempt under its own claim, and is dropped under a later one", () => {
    expect(planMessage("m1", { take_over: 1, claim: "c1" }, claimedBy(claimOwner("c1")), now, rules)).toEqual(attempt2);
    expect(planMessage("m1", { take_over: 1, claim: "c1" }, claimedBy(claimOwner("c2")), now, rules)).toEqual({
      kind: "drop",
      reason: "stale_take_over",
    });
  });

  it("from before claims had ids: makes the attempt under a claim of that time, dropped under a new one", () => {
    expect(planMessage("m1", { take_over: 1 }, claimedBy(LEGACY_CLAIM_OWNER), now, rules)).toEqual(attempt2);
    expect(planMessage("m1", { take_over: 1 }, claimedBy(claimOwner("c2")), now, rules)).toEqual({
      kind: "drop",
      reason: "stale_take_over",
    });
    // A claim that wrote no owner (the oldest kind): dropped; the delivery stalls again and is claimed anew.
    expect(planMessage("m1", { take_over: 1 }, claimedBy("owner_message"), now, rules)).toMatchObject({ kind: "drop" });
  });

  it("drops a lease follower under a claim, unless it follows that claim's take-over", () => {
    const lease = { attempt: 2, until: now - 1, scheduled: true };
    const state = claimedBy(claimOwner("c1"));
    expect(planMessage("owner", { lease }, state, now, rules)).toEqual({ kind: "drop", reason: "not_owner" });
    expect(planMessage("t2", { lease, take_over: 1, claim: "c2" }, state, now, rules)).toEqual({
      kind: "drop",
      reason: "not_owner",
    });
    expect(planMessage("t1", { lease, take_over: 1, claim: "c1" }, state, now, rules)).toMatchObject({
      kind: "attempt",
      attempt: 2,
    });
  });
});
