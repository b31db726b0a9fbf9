import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { LogWriter } from "../../src/delivery/log-writer";
import { encodeAttempt } from "../../src/store/attempts";
import { attemptRecord, attemptsOf, jobEvent, logDbOf, messageFor, receiver, runConsumer, uniqueId } from "./helpers";

/** The group commit of a run's log rows (src/delivery/log-writer.ts). */

afterEach(() => vi.restoreAllMocks());

function row(deliveryId = `dlv_${crypto.randomUUID().replaceAll("-", "")}`): ReturnType<typeof encodeAttempt> {
  return encodeAttempt(attemptRecord({ delivery_id: deliveryId, org_id: uniqueId("org") }));
}

describe("LogWriter", () => {
  it("writes a chunk as soon as it is full and the rest on flush, one transaction each", async () => {
    const batch = vi.spyOn(env.DB, "batch");
    const writer = new LogWriter(env.DB, 3);
    const first = [writer.add(row()), writer.add(row())];
    expect(batch).not.toHaveBeenCalled();
    first.push(writer.add(row())); // the third fills the chunk
    expect(batch).toHaveBeenCalledTimes(1);
    const rest = [writer.add(row()), writer.add(row())];
    await writer.flush();
    expect(batch.mock.calls.map(([statements]) => statements.length)).toEqual([3, 2]);
    expect(await Promise.all([...first, ...rest])).toEqual(Array(5).fill({ ok: true, fresh: true }));
  });

  it("says which rows were already logged", async () => {
    const again = row();
    const earlier = new LogWriter(env.DB, 10);
    const logged = earlier.add(again);
    await earlier.flush();
    expect(await logged).toEqual({ ok: true, fresh: true });
    const writer = new LogWriter(env.DB, 10);
    const [dup, fresh] = [writer.add(row(again.record.delivery_id)), writer.add(row())];
    await writer.flush();
    expect(await dup).toEqual({ ok: true, fresh: false });
    expect(await fresh).toEqual({ ok: true, fresh: true });
  });

  it("reports a failed chunk's error on its own rows only", async () => {
    vi.spyOn(env.DB, "batch").mockRejectedValueOnce(new Error("D1_ERROR: simulated outage"));
    const writer = new LogWriter(env.DB, 2);
    const failed = [writer.add(row()), writer.add(row())];
    const written = writer.add(row());
    await writer.flush();
    expect(await Promise.all(failed)).toEqual([
      { ok: false, error: expect.any(Error) },
      { ok: false, error: expect.any(Error) },
    ]);
    expect(await written).toEqual({ ok: true, fresh: true });
  });
});

describe("a run whose log write fails part-way", () => {
  it("acts on the messages whose rows were written and gives the others back, losing nothing", async () => {
    const orgId = uniqueId("org");
    const hook = receiver(uniqueId("hook"));
    const messages = await Promise.all(
      Array.from({ length: 30 }, async () => ({
        id: uniqueId("msg"),
        body: await messageFor(jobEvent(orgId, uniqueId("job")), hook.url),
      })),
    );
    vi.spyOn(await logDbOf(orgId), "batch").mockRejectedValueOnce(new Error("D1_ERROR: simulated outage"));
    const run = await runConsumer(messages);
    const logged = await Promise.all(messages.map(async (m) => (await attemptsOf(m.body.delivery_id)).length));
    const unlogged = messages.filter((_, i) => logged[i] === 0);
    expect(unlogged.length).toBeGreaterThan(0); // the first chunk failed
    expect(unlogged.length).toBeLessThan(30); // the others were written
    expect(run.acked.sort()).toEqual(
      messages
        .filter((_, i) => logged[i] === 1)
        .map((m) => m.id)
        .sort(),
    );
    expect([...run.retried.keys()].sort()).toEqual(unlogged.map((m) => m.id).sort());

    // They come back and are logged once; the receiver saw them twice (at least once).
    await runConsumer(unlogged.map((m) => ({ ...m, attempts: 2 })));
    for (const m of messages) expect(await attemptsOf(m.body.delivery_id)).toHaveLength(1);
  });
});
