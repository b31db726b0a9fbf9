import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { insertAttempts } from "../../src/store/attempts";
import { attemptRecord, attemptsOf, jobEvent, logDbOf, messageFor, receiver, runConsumer, uniqueId } from "./helpers";

afterEach(() => {
  vi.useRealTimers();
});

const DAY = 86_400_000;

/** Delivers one event at a moment `daysAgo` in the past (to no URL at all with `url: null`). */
async function deliveredDaysAgo(
  daysAgo: number,
  orgId: string,
  replies: Array<{ status: number }> = [{ status: 200 }],
  url?: null,
) {
  vi.setSystemTime(Date.now() - daysAgo * DAY);
  const hook = receiver(uniqueId("retention"));
  await hook.script({ replies });
  const message = {
    id: uniqueId("msg"),
    body: await messageFor(jobEvent(orgId, uniqueId("job")), url === null ? null : hook.url),
  };
  await runConsumer([message]);
  vi.setSystemTime(Date.now() + daysAgo * DAY);
  return message;
}

it("deletes finished deliveries past LOG_RETENTION_DAYS, all their attempts, and keeps the rest", async () => {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  const [orgA, orgB] = [uniqueId("org"), uniqueId("org")];
  const old = await deliveredDaysAgo(31, orgA);
  const oldFailed = await deliveredDaysAgo(45, orgB, [{ status: 500 }]);
  const recent = await deliveredDaysAgo(29, orgA);
  const today = await deliveredDaysAgo(0, orgB);

  const controller = createScheduledController({ scheduledTime: Date.now(), cron: "17 3 * * *" });
  await worker.scheduled(controller, env);

  expect(await attemptsOf(old.body.delivery_id)).toHaveLength(0);
  expect(await attemptsOf(oldFailed.body.delivery_id)).toHaveLength(0);
  expect(await attemptsOf(recent.body.delivery_id)).toHaveLength(1);
  expect(await attemptsOf(today.body.delivery_id)).toHaveLength(1);
});

it("deletes old attempts whose delivery lost its attempt 1", async () => {
  const orgId = uniqueId("org");
  const deliveryId = `dlv_${"e".repeat(32)}`;
  const old = Date.now() - 40 * DAY;
  await insertAttempts(await logDbOf(orgId), [
    attemptRecord({
      delivery_id: deliveryId,
      attempt: 4,
      org_id: orgId,
      attempted_at: old,
      url_from_event: null,
      signatures: null,
      request_body: null,
    }),
  ]);
  expect(await attemptsOf(deliveryId)).toHaveLength(1);
  await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
  expect(await attemptsOf(deliveryId)).toHaveLength(0);
});

it("keeps an old delivery whose latest attempt is recent", async () => {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  const orgId = uniqueId("org");
  const message = await deliveredDaysAgo(40, orgId, [], null); // failed: no_webhook_url
  // The customer sets a URL and redelivers it today.
  const hook = receiver(uniqueId("retention"));
  await runConsumer([{ id: uniqueId("msg"), body: { ...message.body, webhook_url: hook.url, redeliver_after: 1 } }]);
  expect(await attemptsOf(message.body.delivery_id)).toHaveLength(2);

  await worker.scheduled(createScheduledController({ scheduledTime: Date.now() }), env);
  expect(await attemptsOf(message.body.delivery_id)).toHaveLength(2);
});
