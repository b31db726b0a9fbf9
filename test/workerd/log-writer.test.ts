import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RESPONSE_BODY_LIMIT_MAX_BYTES } from "../../src/config";
import { LogWriter } from "../../src/delivery/log-writer";
import { encodeAttempt } from "../../src/store/attempts";
import { inflate } from "../../src/store/codec";
import {
  attemptRecord,
  attemptsOf,
  jobEvent,
  logDbOf,
  messageFor,
  receiver,
  rowsPerStatement,
  runConsumer,
  uniqueId,
} from "./helpers";

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
    expect(batch.mock.calls.map(([statements]) => rowsPerStatement(statements))).toEqual([[3], [2]]);
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

  it("takes a row twice in one write as new once, and stores the first", async () => {
    const twice = row();
    const again = row(twice.record.delivery_id);
    const writer = new LogWriter(env.DB, 10);
    const written = [writer.add(twice), writer.add(again), writer.add(row())];
    await writer.flush();
    expect(await Promise.all(written)).toEqual([
      { ok: true, fresh: true },
      { ok: true, fresh: false },
      { ok: true, fresh: true },
    ]);
    const stored = await attemptsOf(twice.record.delivery_id);
    expect(stored.map((a) => a.message_id)).toEqual([twice.record.message_id]);
  });

  it("clears next_attempt_at on the earlier attempts of the retried deliveries only, in one statement", async () => {
    const orgId = uniqueId("org");
    const pending = (deliveryId: string, attempt: number, due: number | null) =>
      attemptRecord({
        delivery_id: deliveryId,
        org_id: orgId,
        attempt,
        outcome: "failed",
        status_code: 500,
        error: "http_status",
        next_attempt_at: due,
        url_from_event: attempt === 1 ? false : null,
        request_body: attempt === 1 ? "{}" : null,
      });
    const [a, b, c] = [uniqueId("dlv"), uniqueId("dlv"), uniqueId("dlv")];
    const first = new LogWriter(env.DB, 10);
    for (const id of [a, b, c]) void first.add(encodeAttempt(pending(id, 1, Date.now() + 60_000)));
    await first.flush();
    const batch = vi.spyOn(env.DB, "batch");
    const second = new LogWriter(env.DB, 10);
    const retried = [
      second.add(encodeAttempt(pending(a, 2, Date.now() + 300_000))),
      second.add(encodeAttempt(pending(b, 2, null))),
    ];
    await second.flush();
    expect(await Promise.all(retried)).toEqual(Array(2).fill({ ok: true, fresh: true }));
    expect(batch.mock.calls[0]![0]).toHaveLength(2); // the rows, and one UPDATE for both
    const dueOf = async (id: string) => (await attemptsOf(id)).map((x) => x.next_attempt_at !== null);
    expect(await dueOf(a)).toEqual([false, true]); // only its last attempt keeps it
    expect(await dueOf(b)).toEqual([false, false]); // failed: none does
    expect(await dueOf(c)).toEqual([true]); // not retried here: left alone
  });

  it("writes rows too big for one statement in several, in one transaction, as BLOBs that read back", async () => {
    // Events that do not compress: 40 KiB of random base64 each, ~60 KB in hex.
    const events = Array.from({ length: 25 }, () => {
      const noise = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(30_000))));
      return JSON.stringify({ type: "job.completed", data: { noise } });
    });
    const rows = events.map((body) =>
      encodeAttempt(attemptRecord({ delivery_id: uniqueId("dlv"), org_id: uniqueId("org"), request_body: body })),
    );
    const batch = vi.spyOn(env.DB, "batch");
    const writer = new LogWriter(env.DB, 100);
    const written = rows.map((r) => writer.add(r));
    const duplicate = writer.add(rows[0]!); // lands in another statement than the first
    await writer.flush();
    expect(await Promise.all(written)).toEqual(Array(25).fill({ ok: true, fresh: true }));
    expect(await duplicate).toEqual({ ok: true, fresh: false });
    expect(batch).toHaveBeenCalledTimes(1); // one transaction...
    const perStatement = rowsPerStatement(batch.mock.calls[0]![0]);
    expect(perStatement.length).toBeGreaterThan(1); // ...of several statements
    expect(perStatement.reduce((a, b) => a + b)).toBe(26);
    for (const [i, r] of rows.entries()) {
      const stored = await env.DB.prepare(
        "SELECT typeof(request_body) AS type, request_body FROM attempts WHERE delivery_id = ? AND attempt = 1",
      )
        .bind(r.record.delivery_id)
        .first<{ type: string; request_body: number[] }>();
      expect(stored!.type).toBe("blob");
      expect(inflate(stored!.request_body)).toBe(events[i]);
    }
  });

  it("keeps the largest row the config allows under D1's 2 MB string limit", async () => {
    // What compresses worst: random control characters, which JSON escapes to six each
    // (\u00XX), in the stored answer; random printable ASCII in the event and headers.
    const noise = (chars: number, from: number, span: number) =>
      Array.from({ length: chars }, () => String.fromCharCode(from + Math.floor(Math.random() * span))).join("");
    const printable = (chars: number) => noise(chars, 0x21, 94);
    const headers = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`x-noise-${i}`, printable(1000)]));
    const record = attemptRecord({
      delivery_id: uniqueId("dlv"),
      org_id: uniqueId("org"),
      request_body: JSON.stringify({ data: printable(65_000) }),
      response_headers: headers,
      response_body: noise(RESPONSE_BODY_LIMIT_MAX_BYTES, 0, 32),
    });
    const batch = vi.spyOn(env.DB, "batch");
    const writer = new LogWriter(env.DB, 1);
    expect(await writer.add(encodeAttempt(record))).toEqual({ ok: true, fresh: true });
    const [insert] = batch.mock.calls[0]![0] as unknown as [{ params: [string] }];
    expect(insert.params[0].length).toBeGreaterThan(1_100_000); // the row is as big as the limits let it be...
    expect(new TextEncoder().encode(insert.params[0]).length).toBeLessThan(2_000_000); // ...and D1 takes it
    expect((await attemptsOf(record.delivery_id))[0]!.exchange!.response.body).toBe(record.response_body);
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
