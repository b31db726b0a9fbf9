import { describe, expect, it } from "vitest";
import {
  applyReport,
  type EndpointHealth,
  type EndpointReport,
  endpointOf,
  newEndpointHealth,
  RECENT_LENGTH,
  summarizeHealth,
} from "../../src/org/endpoint-health";

/** The health rules on their own: which outcomes move an endpoint between lanes. */

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 10, 29, 12);

const ok = (at: number, ms = 50): EndpointReport => ({
  origin: "https://a.example",
  at,
  outcome: "succeeded",
  error: null,
  response_time_ms: ms,
  slow: false,
});
const slowOk = (at: number): EndpointReport => ({ ...ok(at, 3000), slow: true });
const fail = (at: number, error: EndpointReport["error"] = "http_status"): EndpointReport => ({
  ...ok(at),
  outcome: "failed",
  error,
  ...(error === "timeout" ? { response_time_ms: 10_000, slow: true } : {}),
});
const inFlight = (at: number): EndpointReport => ({ ...ok(at, 2000), outcome: "in_flight", slow: true });

function run(
  reports: EndpointReport[],
  start: EndpointHealth = newEndpointHealth("https://a.example"),
): EndpointHealth {
  return reports.reduce(applyReport, start);
}

describe("an endpoint goes to the slow lane", () => {
  it("after one timeout", () => {
    expect(run([ok(T0), fail(T0 + 1, "timeout")])).toMatchObject({
      lane: "slow",
      lane_reason: "timeout",
      lane_changed_at: T0 + 1,
    });
  });

  it("while an attempt is still running past SLOW_ATTEMPT_MS, without counting an attempt", () => {
    const h = run([inFlight(T0)]);
    expect(h).toMatchObject({ lane: "slow", lane_reason: "slow", recent: "", last_attempt_at: null });
    expect(summarizeHealth(h, T0).attempts_24h).toBe(0);
  });

  it("after an answer that took SLOW_ATTEMPT_MS or longer, even a 2xx", () => {
    expect(run([slowOk(T0)])).toMatchObject({ lane: "slow", lane_reason: "slow", last_success_at: T0 });
  });

  it("after three failures in a row, not two, and not when a success comes between", () => {
    expect(run([fail(T0), fail(T0 + 1)]).lane).toBe("fast");
    expect(run([fail(T0), fail(T0 + 1), ok(T0 + 2), fail(T0 + 3), fail(T0 + 4)]).lane).toBe("fast");
    expect(run([fail(T0), fail(T0 + 1, "network_error"), fail(T0 + 2)])).toMatchObject({
      lane: "slow",
      lane_reason: "failing",
      consecutive_failures: 3,
    });
  });
});

describe("an endpoint comes back to the fast lane", () => {
  it("after three good answers in a row", () => {
    const slow = run([fail(T0, "timeout")]);
    expect(run([ok(T0 + 1), ok(T0 + 2)], slow).lane).toBe("slow");
    expect(run([ok(T0 + 1), ok(T0 + 2), ok(T0 + 3)], slow)).toMatchObject({
      lane: "fast",
      lane_reason: null,
      lane_changed_at: T0 + 3,
    });
  });

  it("not on slow answers: a 2xx after SLOW_ATTEMPT_MS restarts the streak", () => {
    const slow = run([fail(T0, "timeout")]);
    expect(run([ok(T0 + 1), ok(T0 + 2), slowOk(T0 + 3), ok(T0 + 4), ok(T0 + 5)], slow).lane).toBe("slow");
  });

  it("after a longer streak each time it flips back the same day, so a flapping endpoint stays aside", () => {
    const goods = (from: number, n: number) => Array.from({ length: n }, (_, i) => ok(from + i));
    let h = run([fail(T0, "timeout"), ...goods(T0 + 1, 3)]);
    expect(h.lane).toBe("fast");
    h = run([fail(T0 + 10, "timeout"), ...goods(T0 + 11, 5)], h);
    expect(h).toMatchObject({ lane: "slow", demotions: 2 });
    h = run(goods(T0 + 20, 1), h);
    expect(h.lane).toBe("fast"); // 6 in a row: the second time needs twice the streak
    h = run([fail(T0 + 30, "timeout"), ...goods(T0 + 31, 11)], h);
    expect(h).toMatchObject({ lane: "slow", demotions: 3 });
    // A day later the count starts over.
    h = run([ok(T0 + 50)], h);
    h = run([fail(T0 + 25 * HOUR, "timeout"), ...goods(T0 + 25 * HOUR + 1, 3)], h);
    expect(h).toMatchObject({ lane: "fast", demotions: 1 });
  });

  it("counts flapping from its moves to the slow lane: down an hour a night is not flapping", () => {
    const goods = (from: number, n: number) => Array.from({ length: n }, (_, i) => ok(from + i));
    let h = newEndpointHealth("https://a.example");
    // Down at 02:00 each night, back at 03:00: each move aside comes 24 h after the last
    // one, though only 23 h after the endpoint came back.
    for (let night = 0; night < 5; night++) {
      const down = T0 + night * 24 * HOUR;
      h = run([fail(down, "timeout"), ...goods(down + HOUR, 3)], h);
      expect(h).toMatchObject({ lane: "fast", demotions: 1, demoted_at: down });
    }
  });
});

describe("what an org sees", () => {
  it("the success rate, attempts and timeouts of the last 24 hours only", () => {
    const h = run([fail(T0 - 30 * HOUR), ok(T0 - 2 * HOUR), ok(T0 - HOUR), fail(T0 - HOUR + 1, "timeout"), ok(T0)]);
    expect(summarizeHealth(h, T0)).toMatchObject({
      endpoint: "https://a.example",
      success_rate_24h: 0.75,
      attempts_24h: 4,
      timeouts_24h: 1,
      lane: "slow",
      lane_reason: "timeout",
      lane_since: new Date(T0 - HOUR + 1).toISOString(),
      last_success_at: new Date(T0).toISOString(),
      last_failure_at: new Date(T0 - HOUR + 1).toISOString(),
      consecutive_failures: 0,
    });
    expect(h.hours.length).toBeLessThanOrEqual(24);
    expect(summarizeHealth(newEndpointHealth("https://b.example"), T0)).toMatchObject({
      success_rate_24h: null,
      attempts_24h: 0,
      recent: [],
    });
  });

  it("an hour-by-hour chart of the last 24 hours, empty hours included, the current hour last", () => {
    const h = run([fail(T0 - 30 * HOUR), ok(T0 - 2 * HOUR), ok(T0 - HOUR), fail(T0 - HOUR + 1, "timeout"), ok(T0 + 5)]);
    const { hourly } = summarizeHealth(h, T0 + 10);
    expect(hourly).toHaveLength(24);
    expect(hourly[0]!.hour).toBe(new Date(T0 - 23 * HOUR).toISOString());
    expect(hourly.slice(-3)).toEqual([
      { hour: new Date(T0 - 2 * HOUR).toISOString(), succeeded: 1, failed: 0, timeouts: 0 },
      { hour: new Date(T0 - HOUR).toISOString(), succeeded: 1, failed: 1, timeouts: 1 },
      { hour: new Date(T0).toISOString(), succeeded: 1, failed: 0, timeouts: 0 },
    ]);
    // The failure 30 hours ago is in no hour of the chart.
    expect(hourly.reduce((n, b) => n + b.succeeded + b.failed, 0)).toBe(4);
  });

  it("the last outcomes, oldest first, at most 20", () => {
    const h = run([fail(T0, "network_error"), slowOk(T0 + 1), fail(T0 + 2, "timeout"), ok(T0 + 3)]);
    expect(summarizeHealth(h, T0).recent).toEqual(["network_error", "slow_ok", "timeout", "ok"]);
    const many = run(Array.from({ length: 30 }, (_, i) => ok(T0 + i)));
    expect(summarizeHealth(many, T0).recent).toHaveLength(RECENT_LENGTH);
  });

  it("a moving average of response times, network errors left out", () => {
    const h = run([ok(T0, 100), ok(T0 + 1, 200), fail(T0 + 2, "network_error")]);
    expect(h.latency_ms).toBe(120);
  });
});

describe("endpointOf", () => {
  it.each([
    ["https://Your-App.com/webhooks/zupertry?x=1", "https://your-app.com"],
    ["https://your-app.com:443/a", "https://your-app.com"],
    ["https://your-app.com:8443/a", "https://your-app.com:8443"],
    ["http://127.0.0.1:3000/hook", "http://127.0.0.1:3000"],
    ["not a url", null],
  ])("%s → %s", (url, origin) => {
    expect(endpointOf(url)).toBe(origin);
  });
});
