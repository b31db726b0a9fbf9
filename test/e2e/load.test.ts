import { describe, expect, it } from "vitest";
import { receiver } from "../support/receiver-client";
import { api, newOrg, producerToken, seedEvent, until } from "./support/client";
import { record } from "./support/summary";

/**
 * Load with nothing lost: a burst of distinct events through /v1/events/batch while the
 * receiver fails a random 30% of first attempts, and 50 producers racing on one job.
 */

const EVENTS = 2000;
const BATCH = 100;

type Summary = { id: string; delivery_id: string; attempt: number; outcome: string };

async function pageAll<T>(path: string, key: string): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | null = null;
  do {
    const res = await api("GET", `${path}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, key);
    expect(res.status).toBe(200);
    const page = (await res.json()) as { data: T[]; next_cursor: string | null };
    rows.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return rows;
}

describe("load", () => {
  it(`delivers a burst of ${EVENTS} events with 30% of first attempts failing, losing none`, async () => {
    const org = await newOrg();
    const hook = receiver(`load-${Date.now()}`);
    await hook.script({ failFirstAttempts: 0.3 });
    const started = Date.now();

    const ids: string[] = [];
    const batches = Array.from({ length: EVENTS / BATCH }, (_, b) =>
      Array.from({ length: BATCH }, (_, i) => ({
        ...seedEvent(org.orgId, `job_load_${b}_${i}`),
        webhook_url: hook.url,
      })),
    );
    for (let i = 0; i < batches.length; i += 5) {
      const answers = await Promise.all(
        batches.slice(i, i + 5).map((events) => api("POST", "/v1/events/batch", producerToken(), { events })),
      );
      for (const res of answers) {
        expect(res.status).toBe(202);
        const { results } = (await res.json()) as { results: Array<{ delivery_id: string }> };
        ids.push(...results.map((r) => r.delivery_id));
      }
    }
    const ingestMs = Date.now() - started;
    expect(new Set(ids).size).toBe(EVENTS);

    // Every delivery id reaches the receiver with a 200.
    const requests = await until(async () => {
      const all = await hook.requests();
      const ok = new Set(all.filter((r) => r.status === 200).map((r) => r.headers["x-zupertry-delivery"]));
      return ok.size >= EVENTS ? all : undefined;
    }, 300_000);
    const wallMs = Date.now() - started;

    // The log settles on every delivery delivered...
    const deliveries = await until(async () => {
      const rows = await pageAll<{ id: string; status: string }>("/v1/deliveries", org.key);
      return rows.length === EVENTS && rows.every((d) => d.status === "delivered") ? rows : undefined;
    }, 60_000);
    // ...and pages through exactly the attempts that happened, each once.
    const logged = await pageAll<Summary>("/v1/webhook-logs", org.key);
    const loggedKeys = logged.map((a) => `${a.delivery_id}#${a.attempt}`);
    const duplicateRows = loggedKeys.length - new Set(loggedKeys).size;
    const sentKeys = new Set(
      requests.map((r) => `${r.headers["x-zupertry-delivery"]}#${r.headers["x-zupertry-attempt"]}`),
    );
    const delivered = new Set(deliveries.map((d) => d.id));
    const lost = ids.filter((id) => !delivered.has(id)).length;
    const retried = logged.filter((a) => a.attempt > 1).length;

    const table = [
      ["events sent", EVENTS],
      ["delivered", delivered.size],
      ["lost", lost],
      ["attempts logged", logged.length],
      ["first attempts failed (30% chaos)", retried],
      ["duplicate attempt rows", duplicateRows],
      ["ingest time", `${(ingestMs / 1000).toFixed(1)} s`],
      ["wall time, first send to last delivery", `${(wallMs / 1000).toFixed(1)} s`],
    ] as const;
    console.log(
      `\nLoad: ${EVENTS} events through /v1/events/batch\n` +
        `${table.map(([k, v]) => `  ${k.padEnd(40)} ${v}`).join("\n")}\n`,
    );
    record(
      "load",
      `${EVENTS} events, 30% first attempts failing`,
      `${delivered.size} delivered, ${lost} lost, ${duplicateRows} duplicate rows, ${(wallMs / 1000).toFixed(1)} s`,
    );

    expect(lost).toBe(0);
    expect(duplicateRows).toBe(0);
    expect(new Set(loggedKeys)).toEqual(sentKeys);
    expect(retried).toBeGreaterThan(EVENTS * 0.2);
  }, 420_000); // its waits: up to 300 s for the deliveries and 60 s for the log, and the sending and paging

  it("50 concurrent producers posting the same job make one delivery", async () => {
    const org = await newOrg();
    const hook = receiver(`race-${Date.now()}`);
    const event = { ...seedEvent(org.orgId, "job_raced"), webhook_url: hook.url };
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => api("POST", "/v1/events", producerToken(), event)),
    );
    const ids = new Set<string>();
    for (const res of answers) {
      expect(res.status).toBe(202);
      ids.add(((await res.json()) as { delivery_id: string }).delivery_id);
    }
    expect(ids.size).toBe(1);
    const [deliveryId] = [...ids];
    await until(async () => ((await hook.requests()).length > 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 3000)); // let any straggler message be consumed
    expect(await hook.requests()).toHaveLength(1);
    const { data } = (await (await api("GET", `/v1/webhook-logs?delivery_id=${deliveryId}`, org.key)).json()) as {
      data: Summary[];
    };
    expect(data.map((a) => a.attempt)).toEqual([1]);
    record("load", "50 producers post the same job at once", "1 delivery, 1 request");
  });
});
