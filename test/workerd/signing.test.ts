import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { encodeEventBody } from "../../src/delivery/message";
import { Signer } from "../../src/delivery/signing";
import { generateSigningSecret } from "../../src/org/signing-secret";

// Vectors computed with node:crypto exactly as the seed's Node snippet does:
//   crypto.createHmac('sha256', secret).update(rawBody).digest('hex')
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SEED_BODY =
  '{"type":"job.completed","data":{"job_id":"job_abc123","workspace_id":"ws_xyz","org_id":"org_def456",' +
  '"status":"completed","output_url":"https://storage.googleapis.com/zupertry-outputs/x.png","credits_consumed":1,' +
  '"created_at":"2026-03-19T10:00:00.000Z","completed_at":"2026-03-19T10:00:05.231Z"}}';
const SEED_SIGNATURE = "a2f2e4887db82d209475a4aee3acd4c6ee794e27f84f76f3f263ffa7c8c4c2d8";
const UNICODE_BODY = '{"type":"job.failed","data":{"job_id":"job_é","org_id":"org_1","error":"résumé ✓ 🎉"}}';
const UNICODE_SIGNATURE = "c6e1bd9e85ab507bdff0e6193fc86065a55a9ea744631768baf35330252c08a0";
// base64 HMAC(key = base64-decoded secret, "dlv_test.1773914405.<seed body>")
const STANDARD_SIGNATURE = "v1,pApkJuqgfZJFasSVlhpzIgCfv4xG9NQ5ZyWS/ug9Xj0=";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("X-Zupertry-Signature", () => {
  it("is what the seed's Node snippet computes for the same body and secret", async () => {
    const signer = await Signer.create([SECRET]);
    expect((await signer.sign("dlv_test", 1773914405, bytes(SEED_BODY))).zupertry).toBe(SEED_SIGNATURE);
  });

  it("signs the UTF-8 bytes of non-ASCII bodies", async () => {
    const signer = await Signer.create([SECRET]);
    expect((await signer.sign("dlv_test", 1, bytes(UNICODE_BODY))).zupertry).toBe(UNICODE_SIGNATURE);
  });

  it("serialises the body as {type, data} with data's keys in the order sent", () => {
    const data = {
      job_id: "job_abc123",
      workspace_id: "ws_xyz",
      org_id: "org_def456",
      status: "completed",
      output_url: "https://storage.googleapis.com/zupertry-outputs/x.png",
      credits_consumed: 1,
      created_at: "2026-03-19T10:00:00.000Z",
      completed_at: "2026-03-19T10:00:05.231Z",
    };
    expect(new TextDecoder().decode(encodeEventBody("job.completed", data))).toBe(SEED_BODY);
  });
});

describe("webhook-signature (Standard Webhooks)", () => {
  it("matches a vector computed with node:crypto", async () => {
    const signer = await Signer.create([SECRET]);
    expect((await signer.sign("dlv_test", 1773914405, bytes(SEED_BODY))).standard).toBe(STANDARD_SIGNATURE);
  });

  it("verifies with the standardwebhooks library, for every secret of a rotation", async () => {
    const [current, previous] = [generateSigningSecret(), generateSigningSecret()];
    const timestamp = Math.floor(Date.now() / 1000);
    const signatures = await (await Signer.create([current, previous])).sign("dlv_abc", timestamp, bytes(SEED_BODY));
    expect(signatures.standard.split(" ")).toHaveLength(2);
    const headers = {
      "webhook-id": "dlv_abc",
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signatures.standard,
    };
    for (const secret of [current, previous]) {
      expect(new Webhook(secret).verify(SEED_BODY, headers)).toEqual(JSON.parse(SEED_BODY));
    }
    expect(() => new Webhook(generateSigningSecret()).verify(SEED_BODY, headers)).toThrow();
    expect(() => new Webhook(current).verify(SEED_BODY.replace("job_abc123", "job_forged"), headers)).toThrow();
  });
});

describe("signing secrets", () => {
  it("are whsec_ + base64 of 32 random bytes", () => {
    const secret = generateSigningSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(atob(secret.slice(6))).toHaveLength(32);
    expect(generateSigningSecret()).not.toBe(secret);
  });
});
