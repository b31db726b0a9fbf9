/**
 * Which queue message makes a delivery's attempt 1, when two could.
 *
 * A producer that retries (after a timeout, or a batch's 500 that had queued some of
 * its events) queues a delivery a second time, with the same id. The log decides
 * between the two messages once attempt 1 is logged (src/delivery/plan.ts), but two
 * consumer runs that both read the log before that both make attempt 1, and the
 * receiver gets it twice. In production runs go on side by side, so a retry queued a
 * moment after the first message is likely to meet it.
 *
 * The org's object sees every run's messages of the org first (the settings call, once
 * per org per batch), so it keeps a short hold per delivery: the first message it sees
 * that may make attempt 1 holds it for HOLD_MS, renewed whenever a run sees that message
 * again as a new queue message (moved to another lane, put back). A retry of it (after a
 * crash, say) neither renews nor asks: the consumer cannot tell it from the owner's retry
 * for attempt 2 before reading the log, so its hold lapses after HOLD_MS. Another message
 * of the same delivery waits out the hold instead of attempting; by then attempt 1 is
 * logged and the log drops it, or the holder is gone and it makes attempt 1 itself.
 *
 * Holds live in the object's memory only: writing one per delivery would cost a row
 * written each, more than the rest of a delivery's Durable Object work. An object that
 * leaves memory (after 10 s without a call, or a deploy) forgets them, and then the log's
 * primary key is what remains, as before: one row logged, the attempt perhaps made
 * twice, which the seed tells receivers to expect. So does a hold past MAX_HELD_MS, or
 * one never taken past MAX_HOLDS, and a holder that made attempt 1 but could not log it
 * (the other makes it again).
 */

/** Longer than an attempt (10 s) and its write; a holder that waits in a queue renews it each time a run sees it. */
export const HOLD_MS = 60_000;

/**
 * How long a hold is honoured however often it is renewed: a holder that keeps coming
 * back without making attempt 1 (moved from lane to lane) must not keep the delivery
 * waiting on it. Past it, a waiting message makes attempt 1 too.
 */
export const MAX_HELD_MS = 3 * HOLD_MS;

/** Most holds one object keeps (a few MB): past it, new deliveries go unheld (the primary key alone). */
export const MAX_HOLDS = 20_000;

/** A message that may make a delivery's attempt 1: its delivery and the owner it logs as. */
export interface FirstAttemptClaim {
  delivery_id: string;
  owner: string;
}

/** Who holds a delivery's attempt 1 (the owner it logs as), and until when (unix ms). */
export interface FirstAttemptHold {
  owner: string;
  until: number;
}

export class FirstAttemptHolds {
  /** Delivery id → its hold and when it was first taken, the oldest renewal first. */
  private readonly holds = new Map<string, FirstAttemptHold & { since: number }>();

  /**
   * Holds each delivery for its message, unless another message holds it: those are
   * returned, each with its holder and when the hold ends. (The holder may be in the same
   * batch: the run tells, and picks one message of a delivery itself.)
   */
  claim(claims: readonly FirstAttemptClaim[], now: number): Record<string, FirstAttemptHold> {
    this.prune(now);
    const heldElsewhere: Record<string, FirstAttemptHold> = {};
    for (const { delivery_id, owner } of claims) {
      const hold = this.holds.get(delivery_id);
      const held = hold !== undefined && hold.until > now;
      // Past MAX_HELD_MS its holder no longer renews it, nor takes it again once it lapsed,
      // until its waiters, told to come back when it ends, have had their turn (or a holder
      // seen more often than HOLD_MS would keep them waiting for ever), and another message
      // takes it.
      const capped = hold !== undefined && now - hold.since >= MAX_HELD_MS;
      if (capped && hold.owner === owner && isKept(hold, now)) continue;
      const live = held && !capped;
      if (live && hold.owner !== owner) {
        heldElsewhere[delivery_id] = { owner: hold.owner, until: hold.until };
        continue;
      }
      // Deleted first, so that the map stays in order of renewal (prune reads it from the front).
      this.holds.delete(delivery_id);
      if (this.holds.size < MAX_HOLDS) {
        this.holds.set(delivery_id, { owner, until: now + HOLD_MS, since: live ? hold.since : now });
      }
    }
    return heldElsewhere;
  }

  get size(): number {
    return this.holds.size;
  }

  /** Drops the holds that ended, from the front (the oldest renewal first), but those kept past their cap. */
  private prune(now: number): void {
    for (const [id, hold] of this.holds) {
      if (hold.until > now) return;
      if (!isKept(hold, now)) this.holds.delete(id);
    }
  }
}

/**
 * Whether an ended hold is still remembered: one that reached MAX_HELD_MS is, for a
 * HOLD_MS more (the latest its waiters come back), so that its holder does not take it
 * afresh and start the cap again.
 */
function isKept(hold: FirstAttemptHold & { since: number }, now: number): boolean {
  return hold.until > now || (hold.until - hold.since >= MAX_HELD_MS && now < hold.since + MAX_HELD_MS + HOLD_MS);
}
