import { fromBase64, toBase64 } from "../encoding";

/**
 * Signing secrets: `whsec_` + base64 of 32 random bytes, the Standard Webhooks form.
 *
 * The same string is used two ways (see src/delivery/signing.ts): its UTF-8 bytes
 * key `X-Zupertry-Signature`, exactly what the seed's `createHmac('sha256', secret)`
 * and Flask's `secret.encode()` compute; its base64-decoded part keys
 * `webhook-signature`, as Standard Webhooks libraries expect.
 */

export const SIGNING_SECRET_PREFIX = "whsec_";
const SECRET_BYTES = 32;

export function generateSigningSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
  return SIGNING_SECRET_PREFIX + toBase64(bytes);
}

/** The raw key bytes of a `whsec_` secret (Standard Webhooks). */
export function signingSecretKeyBytes(secret: string): Uint8Array {
  const encoded = secret.startsWith(SIGNING_SECRET_PREFIX) ? secret.slice(SIGNING_SECRET_PREFIX.length) : secret;
  return fromBase64(encoded);
}
