import { readConfig } from "../config";
import { allLogShards } from "../store/shards";
import { claimStalledDeliveries } from "../store/stalled";
import { enqueueDeliveries } from "./enqueue";
import { resumeDeliveryMessage } from "./message";

/**
 * The stall sweep: nothing may stay silently stuck in `pending`.
 *
 * A delivery's schedule lives in a queue message; if that message is lost (a runtime
 * crash, an operator purging a queue, a bug), its delivery would wait forever with
 * `next_attempt_at` in the past. Every minute, the deliveries overdue by more than
 * STALLED_AFTER_SECONDS are claimed in every log shard (src/store/stalled.ts) and each
 * gets a new message that takes it over (`take_over`) and goes on with its schedule from
 * the next attempt, with the event as stored. The claim gives the delivery an owner no
 * message has, so the old message, late rather than lost (a crash back-off, a backed-up
 * lane), is dropped if it turns up, before or after the take-over's attempt, instead of
 * sending that attempt too; so is an older take-over of the same delivery, once a later
 * sweep claimed it again. The primary key keeps any attempt from being logged twice.
 * The orgs with overdue deliveries share a sweep: one with a big backlog takes its
 * share, not the sweep.
 */

/** wrangler.toml `[triggers]`: the sweep runs every minute; the other cron is retention. */
export const SWEEP_CRON = "* * * * *";
/** Deliveries one sweep takes up per shard (the rest wait a minute: no flood into a lagging queue). */
export const SWEEP_LIMIT = 200;

export async function sweepStalledDeliveries(env: Env, now: number): Promise<{ requeued: number }> {
  const overdueBefore = now - readConfig(env).stalledAfterMs;
  // Every shard on its own: one that is down is skipped (and found again next minute).
  const swept = await Promise.all(
    allLogShards(env).map(async ({ name, db }) => {
      try {
        const { stalled, abandoned, claim } = await claimStalledDeliveries(db, overdueBefore, now, SWEEP_LIMIT);
        if (abandoned.length > 0) {
          // Their event is gone (see ABANDON in src/store/stalled.ts): they end as failed.
          console.error(
            JSON.stringify({ event: "deliveries.sweep_abandoned", shard: name, deliveries: abandoned.slice(0, 20) }),
          );
        }
        const messages = stalled.map((s) => resumeDeliveryMessage(s, { take_over: s.attempt, claim }));
        // If this fails, the claimed deliveries are due "now" and the sweep finds them again
        // once they are overdue: nothing is lost, only late.
        await enqueueDeliveries(env.DELIVERIES, messages);
        return { name, messages };
      } catch (error) {
        console.error(
          JSON.stringify({ event: "deliveries.sweep_failed", shard: name, error: String(error).slice(0, 200) }),
        );
        return { name, messages: [] };
      }
    }),
  );
  const requeued = swept.reduce((n, s) => n + s.messages.length, 0);
  if (requeued > 0) {
    console.log(
      JSON.stringify({
        event: "deliveries.swept",
        requeued,
        shards: Object.fromEntries(swept.map((s) => [s.name, s.messages.length])),
        deliveries: swept.flatMap((s) => s.messages.map((m) => m.delivery_id)).slice(0, 20),
      }),
    );
  }
  return { requeued };
}
