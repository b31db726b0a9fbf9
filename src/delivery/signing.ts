import { toBase64, toHex } from "../encoding";
import { signingSecretKeyBytes } from "../org/signing-secret";
import type { AttemptSignatures } from "../store/attempts";

/**
 * Signs one attempt, two ways, with Web Crypto HMAC-SHA256:
 *
 * - `X-Zupertry-Signature`: lowercase hex of HMAC(key = UTF-8 bytes of the whole secret
 *   string, message = the raw body). This is byte for byte what the seed's Node and
 *   Flask snippets compute, so their `timingSafeEqual`/`compare_digest` accept it.
 * - `webhook-signature` (Standard Webhooks v1): `v1,<base64 HMAC(key = base64-decoded
 *   secret, message = "<id>.<timestamp>.<body>")>`, one entry per valid secret, so
 *   receivers get replay protection and can ride out a rotation.
 *
 * Keys are imported once per batch and org (a `Signer`), not once per attempt.
 */

const encoder = new TextEncoder();

export class Signer {
  private constructor(
    private readonly bodyKey: CryptoKey,
    private readonly standardKeys: readonly CryptoKey[],
  ) {}

  /** `secrets[0]` is the current secret; later ones are still-valid previous secrets. */
  static async create(secrets: readonly string[]): Promise<Signer> {
    const [current] = secrets;
    if (!current) throw new Error("Signer needs at least one signing secret");
    const [bodyKey, ...standardKeys] = await Promise.all([
      hmacKey(encoder.encode(current)),
      ...secrets.map((secret) => hmacKey(signingSecretKeyBytes(secret))),
    ]);
    return new Signer(bodyKey!, standardKeys);
  }

  async sign(deliveryId: string, timestampSeconds: number, body: Uint8Array): Promise<AttemptSignatures> {
    const prefix = encoder.encode(`${deliveryId}.${timestampSeconds}.`);
    const standardContent = new Uint8Array(prefix.byteLength + body.byteLength);
    standardContent.set(prefix);
    standardContent.set(body, prefix.byteLength);
    const [bodyMac, ...standardMacs] = await Promise.all([
      crypto.subtle.sign("HMAC", this.bodyKey, body),
      ...this.standardKeys.map((key) => crypto.subtle.sign("HMAC", key, standardContent)),
    ]);
    return {
      zupertry: toHex(new Uint8Array(bodyMac!)),
      standard: standardMacs.map((mac) => `v1,${toBase64(new Uint8Array(mac))}`).join(" "),
    };
  }
}

function hmacKey(raw: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}
