import { describe, expect, it } from "vitest";
import { networkErrorDetail, parseRetryAfter } from "../../src/delivery/attempt";
import { MAX_RETRY_AFTER_SECONDS, retryDelayAfter } from "../../src/delivery/retry-policy";

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);

describe("parseRetryAfter", () => {
  it.each([
    ["120", 120],
    [" 0 ", 0],
    ["Sun, 29 Nov 2026 12:10:00 GMT", 600],
    ["Sun, 29 Nov 2026 11:00:00 GMT", 0], // already past
    ["-5", null],
    ["1.5", null],
    ["soon", null],
    ["2026", 2026], // delay-seconds, not a year
    ["Sunday, 29-Nov-26 12:10:00 GMT", null], // obsolete form: not read
    [null, null],
  ])("%j → %j", (value, seconds) => {
    expect(parseRetryAfter(value, NOW)).toBe(seconds);
  });
});

describe("retryDelayAfter", () => {
  const delays = [60, 300];
  it("follows the schedule, then ends it", () => {
    expect([1, 2, 3].map((n) => retryDelayAfter(n, delays))).toEqual([60, 300, null]);
  });

  it("waits the longer of the schedule and Retry-After (at most 1 h), never adding an attempt", () => {
    expect(retryDelayAfter(1, delays, 30)).toBe(60);
    expect(retryDelayAfter(1, delays, 900)).toBe(900);
    expect(retryDelayAfter(2, delays, 86_400)).toBe(MAX_RETRY_AFTER_SECONDS);
    expect(retryDelayAfter(3, delays, 10)).toBeNull();
  });
});

describe("networkErrorDetail", () => {
  it.each([
    ["Network connection lost.", "the connection was refused or dropped before an answer"],
    ["connect ECONNREFUSED 127.0.0.1:9", "the connection was refused"],
    ["TLS peer's certificate is not trusted", "the TLS handshake failed (certificate or protocol)"],
    ["DNS lookup failed for example.invalid", "the endpoint's host name did not resolve (DNS)"],
    ["internal error; reference = r6pppultvkp33pkom3fe81ie", "the request failed before an answer came"],
  ])("%j → %j (our words, never the runtime's)", (message, detail) => {
    expect(networkErrorDetail(new Error(message))).toBe(detail);
  });
});
