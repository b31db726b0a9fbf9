import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, newOrg, producerToken, seedEvent, until } from "./support/client";
import { startExpressSeed, type SeedReceiver } from "./support/seed-receivers";

// A customer who copied the seed's Express snippet gets every delivery, verified.

const docs = readFileSync(new URL("../../docs/customer-webhooks.txt", import.meta.url), "utf8");

describe("the seed's Express receiver", () => {
  let org: Awaited<ReturnType<typeof newOrg>>;
  let express: SeedReceiver;

  beforeAll(async () => {
    org = await newOrg();
    express = await startExpressSeed(org.secret);
    const put = await api("PUT", "/v1/webhook", org.key, { webhook_url: express.url });
    expect(put.status).toBe(200);
  });
  afterAll(() => express?.stop());

  it("runs the snippet exactly as the docs print it", () => {
    const source = readFileSync(new URL("./receivers/express-seed.cjs", import.meta.url), "utf8");
    const snippet = source.split("// ---- SEED BEGIN ----\n")[1]!.split("// ---- SEED END ----")[0]!.trim();
    expect(docs).toContain(snippet);
  });

  it("answers 200 to a real delivery to the org default URL", async () => {
    const res = await api("POST", "/v1/events", producerToken(), seedEvent(org.orgId));
    expect(res.status).toBe(202);
    const { delivery_id } = (await res.json()) as { delivery_id: string };
    const answer = await until(() => express.answers.find((a) => a.delivery === delivery_id));
    expect(answer).toEqual({ status: 200, delivery: delivery_id, attempt: "1" });
  });

  it("answers 200 to a job.failed delivery with non-ASCII text", async () => {
    const event = { type: "job.failed", data: { job_id: "job_unicode_1", org_id: org.orgId, status: "failed", error: "Vertex AI returned “unexpected” output 🎨", credits_consumed: 0, created_at: "2026-03-19T10:00:00.000Z" } };
    const res = await api("POST", "/v1/events", producerToken(), event);
    const { delivery_id } = (await res.json()) as { delivery_id: string };
    expect((await until(() => express.answers.find((a) => a.delivery === delivery_id))).status).toBe(200);
  });

  it("accepts the test event sent from the API", async () => {
    const res = await api("POST", "/v1/webhook/test", org.key);
    expect(res.status).toBe(202);
    const { delivery_id, job_id } = (await res.json()) as { delivery_id: string; job_id: string };
    expect(job_id).toMatch(/^job_test_/);
    expect((await until(() => express.answers.find((a) => a.delivery === delivery_id))).status).toBe(200);
  });

  it("rejects a forged event with 401", async () => {
    const body = JSON.stringify(seedEvent(org.orgId, "job_forged"));
    const forged = createHmac("sha256", "whsec_not_the_secret").update(body).digest("hex");
    const res = await fetch(express.url, { method: "POST", headers: { "Content-Type": "application/json", "X-Zupertry-Signature": forged }, body });
    expect(res.status).toBe(401);
  });
});

describe("rotation and redelivery with the seed's receiver", () => {
  it("after a rotation, the receiver with the new secret accepts and the old one refuses", async () => {
    const org = await newOrg();
    const rotated = (await (await api("POST", "/v1/webhook/rotate-secret", org.key)).json()) as { signing_secret: string };
    const stale = await startExpressSeed(org.secret);
    const fresh = await startExpressSeed(rotated.signing_secret);
    try {
      for (const [receiver, status] of [[stale, 401], [fresh, 200]] as const) {
        const res = await api("POST", "/v1/webhook/test", org.key, { webhook_url: receiver.url });
        const { delivery_id } = (await res.json()) as { delivery_id: string };
        expect((await until(() => receiver.answers.find((a) => a.delivery === delivery_id))).status).toBe(status);
      }
    } finally {
      await stale.stop();
      await fresh.stop();
    }
  });

  it("a delivery that failed while the receiver was down succeeds when redelivered", async () => {
    const org = await newOrg();
    const express = await startExpressSeed(org.secret);
    const url = express.url;
    await express.stop(); // the customer's endpoint is down
    await api("PUT", "/v1/webhook", org.key, { webhook_url: url });
    const { delivery_id } = (await (await api("POST", "/v1/events", producerToken(), seedEvent(org.orgId))).json()) as { delivery_id: string };
    type Delivery = { status: string; attempt_count: number; last_error: string | null };
    const failed = await until(async () => {
      const res = await api("GET", `/v1/deliveries/${delivery_id}`, org.key);
      const d = res.status === 200 ? ((await res.json()) as Delivery) : undefined;
      return d?.status === "failed" ? d : undefined;
    }, 20_000);
    expect(failed).toMatchObject({ attempt_count: 3, last_error: "network_error" });

    const port = Number(new URL(url).port);
    const back = await startExpressSeed(org.secret, port);
    try {
      expect((await api("POST", `/v1/deliveries/${delivery_id}/redeliver`, org.key)).status).toBe(202);
      const answer = await until(() => back.answers.find((a) => a.delivery === delivery_id));
      expect(answer).toEqual({ status: 200, delivery: delivery_id, attempt: "4" });
      const delivered = await until(async () => {
        const d = (await (await api("GET", `/v1/deliveries/${delivery_id}`, org.key)).json()) as Delivery;
        return d.status === "delivered" ? d : undefined;
      });
      expect(delivered.attempt_count).toBe(4);
    } finally {
      await back.stop();
    }
  });
});
