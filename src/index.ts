import { app } from "./api/app";
import { readConfig } from "./config";
import { deliverBatch } from "./delivery/consumer";
import { DEAD_LETTER_QUEUE, failDeadLetters } from "./delivery/dead-letter";
import type { DeliveryMessage } from "./delivery/message";
import { SWEEP_CRON, sweepStalledDeliveries } from "./delivery/sweep";
import { deleteExpiredDeliveries, RETENTION_STATEMENTS_PER_RUN, retentionCutoff } from "./store/retention";
import { allLogShards } from "./store/shards";

export { OrgSettings } from "./org/org-settings";

export default {
  fetch: app.fetch,

  async queue(batch, env, ctx) {
    if (batch.queue === DEAD_LETTER_QUEUE) await failDeadLetters(batch, env);
    else await deliverBatch(batch, env, ctx);
  },

  async scheduled(controller, env) {
    if (controller.cron === SWEEP_CRON) {
      await sweepStalledDeliveries(env, controller.scheduledTime);
      return;
    }
    const cutoff = retentionCutoff(controller.scheduledTime, readConfig(env).logRetentionDays);
    // Every shard on its own, with its share of the run's statements: one that fails is
    // logged and the others are swept.
    const shards = allLogShards(env);
    const budget = Math.floor(RETENTION_STATEMENTS_PER_RUN / shards.length);
    await Promise.all(
      shards.map(async ({ name, db }) => {
        try {
          const deleted = await deleteExpiredDeliveries(db, cutoff, budget);
          console.log(
            JSON.stringify({
              event: "retention.swept",
              shard: name,
              cutoff: new Date(cutoff).toISOString(),
              ...deleted,
            }),
          );
        } catch (error) {
          console.error(JSON.stringify({ event: "retention.failed", shard: name, error: String(error).slice(0, 200) }));
        }
      }),
    );
  },
} satisfies ExportedHandler<Env, DeliveryMessage>;
