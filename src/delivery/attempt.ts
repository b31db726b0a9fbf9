/**
 * One HTTP attempt: POST the body, wait at most the attempt timeout for the status,
 * headers and (capped) body, and describe what happened. It never throws: every way
 * a receiver can fail becomes an `AttemptError` in the log.
 *
 * The timeout covers the whole exchange, so a receiver that answers 200 and then
 * trickles its body forever is a `timeout`, like one that never answers. Only the
 * first `responseBodyLimitBytes` of a body are read; the rest is cancelled, so a
 * 10 MB answer costs 64 KB of memory, not 10 MB.
 */

import type { AttemptError } from "../store/attempts";

export { ATTEMPT_ERRORS, type AttemptError } from "../store/attempts";

export interface AttemptResponse {
  status_code: number | null;
  /** null when the receiver answered 2xx in time. */
  error: AttemptError | null;
  /** From the start of the request to the end of the read, also on timeouts and errors. */
  response_time_ms: number;
  response_headers: Record<string, string> | null;
  response_body: string | null;
  response_truncated: boolean;
  /**
   * Why it failed, in a few words of ours (never a raw runtime message); null when it
   * succeeded, and when the endpoint itself answered 4xx or 5xx (its status says it;
   * Cloudflare's own 52x get one).
   */
  error_detail: string | null;
  /** A 429 or 503's `Retry-After`, in seconds from the answer; null otherwise. */
  retry_after_seconds: number | null;
}

export interface AttemptLimits {
  timeoutMs: number;
  responseBodyLimitBytes: number;
}

/** Stored response headers stop at this many bytes of names and values. */
const RESPONSE_HEADERS_LIMIT_BYTES = 16_384;

export async function postWebhook(
  url: string,
  headers: Record<string, string>,
  body: Uint8Array,
  limits: AttemptLimits,
): Promise<AttemptResponse> {
  const started = Date.now();
  const signal = AbortSignal.timeout(limits.timeoutMs);
  let status: number | null = null;
  let responseHeaders: Record<string, string> | null = null;
  try {
    const response = await fetch(url, { method: "POST", headers, body, redirect: "manual", signal });
    status = response.status;
    responseHeaders = headersToRecord(response.headers);
    const { text, truncated } = await readCapped(response.body, limits.responseBodyLimitBytes, signal);
    const error = status >= 200 && status < 300 ? null : status >= 300 && status < 400 ? "redirect" : "http_status";
    return {
      status_code: status,
      error,
      error_detail:
        error === "redirect"
          ? "redirects are not followed"
          : error === "http_status"
            ? edgeErrorDetail(status, response.headers)
            : null,
      response_time_ms: Date.now() - started,
      response_headers: responseHeaders,
      response_body: text,
      response_truncated: truncated,
      retry_after_seconds:
        status === 429 || status === 503 ? parseRetryAfter(response.headers.get("retry-after"), Date.now()) : null,
    };
  } catch (thrown) {
    return {
      status_code: status,
      error: signal.aborted ? "timeout" : "network_error",
      error_detail: signal.aborted
        ? status === null
          ? `no response within ${limits.timeoutMs} ms`
          : `HTTP ${status} in time, but the body did not finish within ${limits.timeoutMs} ms`
        : networkErrorDetail(thrown),
      response_time_ms: Date.now() - started,
      response_headers: responseHeaders,
      response_body: null,
      response_truncated: false,
      retry_after_seconds: null,
    };
  }
}

/** The response part of an attempt that sent nothing (no URL, refused URL, internal fault). */
export function unsentResponse(error: AttemptError, detail: string): AttemptResponse {
  return {
    status_code: null,
    error,
    error_detail: detail,
    response_time_ms: 0,
    response_headers: null,
    response_body: null,
    response_truncated: false,
    retry_after_seconds: null,
  };
}

/**
 * A network failure in a few safe words. Runtime messages vary by runtime and can carry
 * internal references, so only their kind is kept, by a few well-known words.
 */
export function networkErrorDetail(thrown: unknown): string {
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  if (/\b(tls|ssl|certificate|handshake)\b/i.test(message)) return "the TLS handshake failed (certificate or protocol)";
  if (/\b(dns|resolve|lookup|ENOTFOUND|name not)\b/i.test(message))
    return "the endpoint's host name did not resolve (DNS)";
  if (/refused/i.test(message)) return "the connection was refused";
  if (/connection (lost|reset|closed)|reset|ECONNRESET|EPIPE/i.test(message))
    return "the connection was refused or dropped before an answer";
  return "the request failed before an answer came";
}

/** Cloudflare's own answers when it cannot reach an endpoint (its 52x codes). */
const EDGE_ERRORS: Partial<Record<number, string>> = {
  521: "the endpoint's web server refused the connection",
  522: "the connection to the endpoint timed out",
  523: "the endpoint was unreachable",
  525: "the TLS handshake with the endpoint failed",
  526: "the endpoint's TLS certificate is not valid",
  530: "the endpoint's host could not be resolved or reached",
};

/** For an error status Cloudflare itself answered (it carries `cf-ray`), what it means. */
function edgeErrorDetail(status: number, headers: Headers): string | null {
  const meaning = EDGE_ERRORS[status];
  return meaning && headers.has("cf-ray") ? `${meaning} (Cloudflare ${status})` : null;
}

/**
 * `Retry-After` (RFC 9110): delay-seconds or an HTTP-date, as whole seconds from `now`
 * (never negative); null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  // An HTTP-date names its weekday and zone; `Date.parse` alone would also take "5" or "2026".
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return null;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

async function readCapped(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
  signal: AbortSignal,
): Promise<{ text: string; truncated: boolean }> {
  if (!body) return { text: "", truncated: false };
  const reader = body.getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  signal.addEventListener("abort", cancel);
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  let truncated = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (signal.aborted) throw signal.reason;
      if (done) break;
      const room = limit - size;
      text += decoder.decode(value.subarray(0, room), { stream: true });
      size += Math.min(room, value.byteLength);
      if (value.byteLength > room) {
        truncated = true;
        cancel();
        break;
      }
    }
  } finally {
    signal.removeEventListener("abort", cancel);
  }
  return { text: text + decoder.decode(), truncated };
}

function headersToRecord(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  let bytes = 0;
  for (const [name, value] of headers) {
    bytes += name.length + value.length;
    if (bytes > RESPONSE_HEADERS_LIMIT_BYTES) break;
    out[name] = value;
  }
  return out;
}
