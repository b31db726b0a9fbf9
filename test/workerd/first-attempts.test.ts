import { describe, expect, it } from "vitest";
import { FirstAttemptHolds, HOLD_MS, MAX_HELD_MS, MAX_HOLDS } from "../../src/org/first-attempts";

/** The org object's holds on new deliveries' attempt 1 (src/org/first-attempts.ts). */
describe("first-attempt holds", () => {
  const at = 1_000_000;

  it("gives a delivery's attempt 1 to the first message that asks, and tells the others until when", () => {
    const holds = new FirstAttemptHolds();
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at)).toEqual({});
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m2" }], at + 1)).toEqual({
      dlv_a: { owner: "m1", until: at + HOLD_MS },
    });
    // Its holder asking again (moved, put back, retried after a crash) renews it.
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at + 10_000)).toEqual({});
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m2" }], at + 10_001)).toEqual({
      dlv_a: { owner: "m1", until: at + 10_000 + HOLD_MS },
    });
  });

  it("names the holder when one batch asks for two messages of a delivery (the run tells its own)", () => {
    const holds = new FirstAttemptHolds();
    const both = [
      { delivery_id: "dlv_a", owner: "m1" },
      { delivery_id: "dlv_a", owner: "m2" },
    ];
    expect(holds.claim(both, at)).toEqual({ dlv_a: { owner: "m1", until: at + HOLD_MS } });
  });

  it("honours a hold renewed again and again for MAX_HELD_MS at most", () => {
    const holds = new FirstAttemptHolds();
    for (let t = 0; t < MAX_HELD_MS; t += HOLD_MS / 2) holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at + t);
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m2" }], at + MAX_HELD_MS - 1)).toEqual({
      dlv_a: expect.objectContaining({ owner: "m1" }),
    });
    // Past it the other message takes it, with a fresh hold of its own.
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m2" }], at + MAX_HELD_MS)).toEqual({});
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at + MAX_HELD_MS + 1)).toEqual({
      dlv_a: { owner: "m2", until: at + MAX_HELD_MS + HOLD_MS },
    });
  });

  it.each([1, 15_001, 29_999, 150_001, 179_999])(
    "gives attempt 1 to a waiter first seen at %i ms that comes back when told, however often the holder renews",
    (firstSeen) => {
      const holds = new FirstAttemptHolds();
      holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at);
      let holderBack = at + HOLD_MS / 2;
      // The holder, moved from lane to lane, is seen every 30 s (just before the waiter) and never makes attempt 1.
      const holderUntil = (t: number) => {
        for (; holderBack <= t; holderBack += HOLD_MS / 2)
          holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], holderBack);
      };
      let waiterBack = at + firstSeen;
      for (;;) {
        holderUntil(waiterBack);
        const held = holds.claim([{ delivery_id: "dlv_a", owner: "m2" }], waiterBack).dlv_a;
        if (!held) break;
        expect(held.owner).toBe("m1");
        waiterBack = held.until;
      }
      expect(waiterBack).toBeLessThanOrEqual(at + MAX_HELD_MS + HOLD_MS);
    },
  );

  it("lets another message have it once the hold has ended (its holder is gone)", () => {
    const holds = new FirstAttemptHolds();
    holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at);
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m2" }], at + HOLD_MS)).toEqual({});
    expect(holds.claim([{ delivery_id: "dlv_a", owner: "m1" }], at + HOLD_MS + 1)).toEqual({
      dlv_a: { owner: "m2", until: at + 2 * HOLD_MS },
    });
  });

  it("forgets ended holds, and keeps at most MAX_HOLDS", () => {
    const holds = new FirstAttemptHolds();
    const many = (n: number, prefix: string) =>
      Array.from({ length: n }, (_, i) => ({ delivery_id: `${prefix}${i}`, owner: "m" }));
    holds.claim(many(1_000, "old_"), at);
    holds.claim(many(10, "new_"), at + HOLD_MS);
    expect(holds.size).toBe(10);
    holds.claim(many(MAX_HOLDS + 5, "flood_"), at + HOLD_MS);
    expect(holds.size).toBe(MAX_HOLDS);
    // Past the cap a delivery goes unheld: a second message is not made to wait for it.
    expect(holds.claim([{ delivery_id: `flood_${MAX_HOLDS + 1}`, owner: "other" }], at + HOLD_MS)).toEqual({});
  });
});
