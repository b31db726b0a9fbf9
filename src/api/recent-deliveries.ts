/**
 * Delivery ids this isolate enqueued in the last few minutes.
 *
 * The consumer is what guarantees one delivery per id (src/delivery/plan.ts); this is
 * only the cheap part of DESIGN's "a later event with the same id is answered
 * `duplicate: true` when the Worker can tell cheaply": a producer retrying right away
 * usually lands on the same isolate, and then the retry costs no queue operation.
 */
export class RecentDeliveries {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly capacity = 10_000,
    private readonly ttlMs = 10 * 60_000,
  ) {}

  has(id: string, now = Date.now()): boolean {
    const at = this.seen.get(id);
    return at !== undefined && now - at < this.ttlMs;
  }

  add(id: string, now = Date.now()): void {
    this.seen.delete(id);
    this.seen.set(id, now);
    if (this.seen.size > this.capacity) {
      // Maps iterate in insertion order: the first key is the oldest.
      this.seen.delete(this.seen.keys().next().value!);
    }
  }
}
