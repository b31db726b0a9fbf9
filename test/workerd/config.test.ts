import { describe, expect, it } from "vitest";
import { CONFIG_DEFAULTS, ConfigError, parseConfig, RESPONSE_BODY_LIMIT_MAX_BYTES } from "../../src/config";

describe("RESPONSE_BODY_LIMIT_BYTES", () => {
  const withLimit = (value: string) => parseConfig({ ...CONFIG_DEFAULTS, RESPONSE_BODY_LIMIT_BYTES: value });

  it("takes up to 512 KiB: the largest log row then stays under D1's 2 MB string limit", () => {
    expect(RESPONSE_BODY_LIMIT_MAX_BYTES).toBe(524_288);
    expect(withLimit("524288").responseBodyLimitBytes).toBe(524_288);
    expect(withLimit("0").responseBodyLimitBytes).toBe(0);
  });

  it("refuses more, naming the variable and its range", () => {
    expect(() => withLimit("524289")).toThrow(ConfigError);
    expect(() => withLimit("1048576")).toThrow("RESPONSE_BODY_LIMIT_BYTES must be an integer from 0 to 524288");
  });
});

describe("STALLED_AFTER_SECONDS", () => {
  it("must outlast an attempt, or the sweep would take over attempts still running", () => {
    const vars = (stalled: string, timeout: string) =>
      parseConfig({ ...CONFIG_DEFAULTS, STALLED_AFTER_SECONDS: stalled, ATTEMPT_TIMEOUT_MS: timeout });
    expect(vars("3", "2000").stalledAfterMs).toBe(3000);
    expect(() => vars("10", "10000")).toThrow("STALLED_AFTER_SECONDS (10) must be longer than ATTEMPT_TIMEOUT_MS");
    expect(() => vars("1", "900000")).toThrow(ConfigError);
  });
});
