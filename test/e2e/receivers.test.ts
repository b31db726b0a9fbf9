import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { receiver } from "../support/receiver-client";
import { api, newOrg, producerToken, seedEvent, until } from "./support/client";
import { type ReceiverKind, type ReceiverProcess, startReceiver } from "./support/seed-receivers";
import { record } from "./support/summary";

/**
 * Customers' receivers, written by others, each verifying every delivery with the
 * org's secret: the docs' Express and Flask snippets, and a Standard Webhooks library.
 * Each must accept every real delivery and reject a forged one.
 */

const docs = readFileSync(new URL("../../docs/customer-webhooks.txt", import.meta.url), "utf8");
const normalise = (code: string) =>
  code
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .join("\n");

function seedBlock(file: string): string {
  const source = readFileSync(new URL(`./receivers/${file}`, import.meta.url), "utf8");
  return source.split(/^.*---- SEED BEGIN ----\n/m)[1]!.split(/^.*---- SEED END ----/m)[0]!;
}

describe("the seed receivers", () => {
  it("run the Express snippet exactly as the docs print it", () => {
    expect(docs).toContain(seedBlock("express-seed.cjs").trim());
  });
  it("run the Flask snippet as the docs print it (indentation restored)", () => {
    expect(normalise(docs)).toContain(normalise(seedBlock("flask-seed.py")));
  });
});

/** Events a customer's receiver gets in real life, through every producer path. */
async function sendEverything(orgId: string, key: string): Promise<string[]> {
  const post = async (path: string, token: string, body?: unknown) => {
    const res = await api("POST", path, token, body);
    expect(res.status, `${path}: ${res.status}`).toBe(202);
    return res.json() as Promise<Record<string, unknown>>;
  };
  const ids: string[] = [];
  ids.push((await post("/v1/events", producerToken(), seedEvent(orgId))).delivery_id as string);
  const failed = {
    type: "job.failed",
    data: {
      job_id: `job_f_${Date.now()}`,
      org_id: orgId,
      status: "failed",
      error: "Vertex AI returned “unexpected” output 🎨 — résumé",
      credits_consumed: 0,
      created_at: new Date().toISOString(),
    },
  };
  ids.push((await post("/v1/events", producerToken(), failed)).delivery_id as string);
  const big = seedEvent(orgId);
  ids.push(
    (await post("/v1/events", producerToken(), { ...big, data: { ...big.data, notes: 'x"y\\z '.repeat(8000) } }))
      .delivery_id as string,
  );
  const batch = (await post("/v1/events/batch", producerToken(), { events: [seedEvent(orgId), seedEvent(orgId)] })) as {
    results: Array<{ delivery_id: string }>;
  };
  ids.push(...batch.results.map((r) => r.delivery_id));
  ids.push((await post("/v1/webhook/test", key)).delivery_id as string);
  return ids;
}

for (const kind of ["express-seed", "flask-seed", "standardwebhooks"] satisfies ReceiverKind[]) {
  describe(`a ${kind} receiver`, () => {
    let org: Awaited<ReturnType<typeof newOrg>>;
    let customer: ReceiverProcess;

    beforeAll(async () => {
      org = await newOrg();
      customer = await startReceiver(kind, org.secret);
      expect((await api("PUT", "/v1/webhook", org.key, { webhook_url: customer.url })).status).toBe(200);
    });
    afterAll(() => customer?.stop());

    it("accepts every delivery at the first attempt", async () => {
      const ids = await sendEverything(org.orgId, org.key);
      const answers = await until(() => {
        const found = ids.map((id) => customer.answers.find((a) => a.delivery === id));
        return found.every(Boolean) ? found : undefined;
      });
      expect(answers.map((a) => [a!.status, a!.attempt])).toEqual(ids.map(() => [200, "1"]));
      record("receivers", `${kind} accepts real deliveries`, `${ids.length}/${ids.length}`);
    });

    it("rejects a forged event, a tampered body and a wrong signature", async () => {
      // Capture a real signed delivery, then replay it with a changed body.
      const spy = receiver(`capture-${kind}`);
      const { delivery_id } = (await (
        await api("POST", "/v1/webhook/test", org.key, { webhook_url: spy.url })
      ).json()) as { delivery_id: string };
      const [real] = await until(async () => {
        const r = await spy.requests();
        return r.length ? r : undefined;
      });
      const headers = Object.fromEntries(
        Object.entries(real!.headers).filter(
          ([k]) => k.startsWith("x-zupertry") || k.startsWith("webhook-") || k === "content-type",
        ),
      );
      const send = (body: string, extra: Record<string, string> = {}) =>
        fetch(customer.url, { method: "POST", headers: { ...headers, ...extra }, body }).then((r) => r.status);

      expect(await send(real!.text)).toBe(200); // the genuine bytes still verify (sanity)
      const tampered = real!.text.replace(/"credits_consumed":0/, '"credits_consumed":1000');
      expect(tampered).not.toBe(real!.text);
      expect(await send(tampered)).toBe(401);
      const forgedBody = JSON.stringify(seedEvent(org.orgId, "job_forged"));
      const forgedSig = createHmac("sha256", "whsec_not_the_secret").update(forgedBody).digest("hex");
      const wrongKey = Buffer.from("bm90IHRoZSBzZWNyZXQ=", "base64");
      const signed = `${delivery_id}.${headers["webhook-timestamp"]}.${forgedBody}`;
      const forgedStd = `v1,${createHmac("sha256", wrongKey).update(signed).digest("base64")}`;
      expect(await send(forgedBody, { "x-zupertry-signature": forgedSig, "webhook-signature": forgedStd })).toBe(401);
      record("receivers", `${kind} rejects forged and tampered events`, "yes");
    });
  });
}

describe("rotation and redelivery with the seed's receiver", () => {
  it("after a rotation, the receiver with the new secret accepts and the old one refuses", async () => {
    const org = await newOrg();
    const rotated = (await (await api("POST", "/v1/webhook/rotate-secret", org.key)).json()) as {
      signing_secret: string;
    };
    const stale = await startReceiver("express-seed", org.secret);
    const fresh = await startReceiver("express-seed", rotated.signing_secret);
    const library = await startReceiver("standardwebhooks", org.secret);
    try {
      for (const [customer, status] of [
        [stale, 401],
        [fresh, 200],
        [library, 200],
      ] as const) {
        const res = await api("POST", "/v1/webhook/test", org.key, { webhook_url: customer.url });
        const { delivery_id } = (await res.json()) as { delivery_id: string };
        expect(
          (await until(() => customer.answers.find((a) => a.delivery === delivery_id))).status,
          customer.kind,
        ).toBe(status);
      }
      record("rotation", "old secret still verifies webhook-signature for 24 h", "yes");
    } finally {
      await Promise.all([stale.stop(), fresh.stop(), library.stop()]);
    }
  });

  it("a delivery that failed while the receiver was down succeeds when redelivered", async () => {
    const org = await newOrg();
    const first = await startReceiver("express-seed", org.secret);
    const url = first.url;
    await first.stop(); // the customer's endpoint goes down
    await api("PUT", "/v1/webhook", org.key, { webhook_url: url });
    const { delivery_id } = (await (await api("POST", "/v1/events", producerToken(), seedEvent(org.orgId))).json()) as {
      delivery_id: string;
    };
    type Delivery = { status: string; attempt_count: number; last_error: string | null };
    const failed = await until(async () => {
      const res = await api("GET", `/v1/deliveries/${delivery_id}`, org.key);
      const d = res.status === 200 ? ((await res.json()) as Delivery) : undefined;
      return d?.status === "failed" ? d : undefined;
    }, 20_000);
    expect(failed).toMatchObject({ attempt_count: 3, last_error: "network_error" });

    const back = await startReceiver("express-seed", org.secret, Number(new URL(url).port));
    try {
      expect((await api("POST", `/v1/deliveries/${delivery_id}/redeliver`, org.key)).status).toBe(202);
      expect(await until(() => back.answers.find((a) => a.delivery === delivery_id))).toEqual({
        status: 200,
        delivery: delivery_id,
        attempt: "4",
      });
      const delivered = await until(async () => {
        const d = (await (await api("GET", `/v1/deliveries/${delivery_id}`, org.key)).json()) as Delivery;
        return d.status === "delivered" ? d : undefined;
      });
      expect(delivered.attempt_count).toBe(4);
      record("faults", "receiver down for the whole schedule, then redelivered", "delivered at attempt 4");
    } finally {
      await back.stop();
    }
  });
});
