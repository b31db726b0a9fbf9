import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import {
  attempt,
  closeServers,
  deliveryFrame,
  json,
  logPage,
  queryOf,
  run,
  serve,
  servers,
  sleep,
  timedOut,
} from "./cli-stand-in";

/**
 * The CLI against a stand-in dispatcher that misbehaves on purpose: one that never
 * answers, answers 404, drops the connection, or holds more history than the first screen.
 * (Sessions that hold on, and the local receiver's side: cli-sessions.test.ts.)
 */

afterEach(closeServers);

describe("zupertry against a dispatcher that misbehaves", () => {
  it("stops `trigger` at Ctrl+C rather than wait out a dispatcher that never answers", async () => {
    const url = await serve(() => {}); // holds every request
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const started = Date.now();
    expect(await run(["trigger", "job.completed"], url, stop.signal)).toEqual({
      code: 130,
      lines: [],
      notes: ["Stopped."],
    });
    expect(Date.now() - started).toBeLessThan(5_000); // the call's own timeout is 15 s
  });

  it("gives up `listen` on a 404 (a wrong --api-url) with exit 1, instead of retrying forever", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(404, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "not_found", message: "no such route" } }));
    });
    const { code, notes } = await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url);
    expect(code).toBe(1);
    expect(notes).toEqual([`The dispatcher at ${url} refused the listener: HTTP 404: no such route`]);
  });

  it("`logs --follow` shows the newest 20, then only attempts newer than them", async () => {
    const now = Date.now();
    // 40 attempts in the last 40 s: the first screen shows the newest 20.
    const history = Array.from({ length: 40 }, (_, i) => attempt(i + 1, now - 40_000 + i * 1000)).reverse();
    const url = await serve((req, res) => {
      const query = new URL(req.url!, "http://x").searchParams;
      const since = query.get("since");
      const rows = since ? history.filter((a) => a.attempted_at >= since) : history.slice(0, 20);
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ data: rows, next_cursor: null }));
    });
    const stop = new AbortController();
    setTimeout(() => history.unshift(attempt(41, Date.now())), 300); // a new one
    setTimeout(() => stop.abort(), 2_500);
    const { code, lines, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    const jobs = lines.map((line) => line.match(/job_\d+/)?.[0] ?? line);
    expect(jobs).toEqual([...Array.from({ length: 20 }, (_, i) => `job_${i + 21}`), "job_41"]);
    expect(notes).toEqual(["Following new attempts (Ctrl+C to stop)…"]);
  });

  it("`logs` with a filter follows next_cursor past pages the filter left empty", async () => {
    const now = Date.now();
    const url = await serve((req, res) => {
      const cursor = new URL(req.url!, "http://x").searchParams.get("cursor");
      // The first page read its budget and found nothing; the second finds two.
      const page = cursor
        ? { data: [attempt(2, now - 1000), attempt(1, now - 2000)], next_cursor: null }
        : { data: [], next_cursor: "c1" };
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(page));
    });
    const { code, lines } = await run(["logs", "--event-type", "job.failed"], url);
    expect(code).toBe(0);
    expect(lines.map((line) => line.match(/job_\d+/)?.[0])).toEqual(["job_1", "job_2"]);
  });

  it("counts what `listen` missed once what was still running has been logged, on the dispatcher's clock", async () => {
    const forwardedTo: string[] = [];
    const receiver = await serve((req, res) => {
      forwardedTo.push(req.headers["x-zupertry-delivery"] as string);
      res.end("ok");
    });
    // The laptop's clock is 90 s ahead of the dispatcher's.
    const serverNow = () => Date.now() - 90_000;
    const delivered = attempt(1, serverNow());
    const missed = attempt(2, serverNow() + 50);
    const history = [delivered, missed];
    const asked: Array<{ since: string | null; until: string | null; bookmark?: string }> = [];
    const url = await serve((req, res) => {
      const query = queryOf(req);
      asked.push({
        since: query.get("since"),
        until: query.get("until"),
        bookmark: req.headers["x-zupertry-bookmark"] as string,
      });
      const bookmark = `0000000${asked.length}-00000000-00000000-${"0".repeat(32)}`;
      json(res, 200, logPage(history, query), {
        Date: new Date(serverNow()).toUTCString(),
        "X-Zupertry-Bookmark": bookmark,
      });
    });
    const sockets = new WebSocketServer({ server: servers.at(-1)! });
    let connections = 0;
    let reconnectedAt = 0;
    sockets.on("connection", (ws) => {
      if (++connections > 1) {
        reconnectedAt = serverNow();
        // An attempt started while the listener was away ends in its 10 s timeout, and is
        // logged only then: 3 s after the reconnect.
        const late = timedOut(3, reconnectedAt - 500);
        setTimeout(() => history.push(late), 3_000);
        return;
      }
      ws.send(JSON.stringify({ type: "hello", listeners: 1 }));
      ws.send(
        JSON.stringify({
          type: "delivery",
          delivery_id: delivered.delivery_id,
          job_id: delivered.job_id,
          event_type: delivered.event_type,
          attempt: 1,
          headers: { "X-Zupertry-Delivery": delivered.delivery_id, "Content-Type": "application/json" },
          body: "{}",
        }),
      );
      // The connection dies a while later, as a sleeping laptop's would be found dead.
      setTimeout(() => ws.terminate(), 1_500);
    });
    const stop = new AbortController();
    const heardAt = serverNow();
    const running = run(["listen", "--forward-to", `${receiver}/hook`], url, stop.signal);
    const counted = () => asked.some((a) => a.since !== null);
    const deadline = Date.now() + 25_000;
    while (!counted() && Date.now() < deadline) await sleep(50);
    await sleep(200);
    stop.abort();
    const { notes } = await running;
    sockets.close();
    expect(forwardedTo).toEqual([delivered.delivery_id]);
    expect(notes).toContain(
      "Reconnected: what was missed while disconnected is counted in 15 s, " +
        "once the attempts made meanwhile have ended.",
    );
    // The one forwarded is left out; the one logged after the reconnect is in.
    const count = notes.find((line) => line.startsWith("Reconnected. "));
    expect(count).toMatch(/^Reconnected\. While disconnected \(\S+–\S+\) 2 attempts were made and not forwarded: /);
    // On the dispatcher's clock, from the last frame heard (not when the drop was noticed
    // 1.5 s later), to the reconnect; a second wider at each end.
    const window = asked.find((a) => a.since !== null)!;
    expect(Math.abs(Date.parse(window.since!) - (heardAt - 1_000))).toBeLessThan(1_000);
    expect(Math.abs(Date.parse(window.until!) - (reconnectedAt + 1_000))).toBeLessThan(1_000);
    expect(count).toMatch(new RegExp(`: zupertry logs --since ${window.since} --until ${window.until}$`));
    // The clock was read first (the 101 carried no Date), and its bookmark sent with the count.
    expect(asked.map((a) => a.bookmark)).toEqual([undefined, `00000001-00000000-00000000-${"0".repeat(32)}`]);
  }, 30_000);

  it("tells a new session only what it forwarded for that session, not the answers of one that died", async () => {
    // The first session's delivery is still being forwarded when the second session's
    // arrives; it is answered just after, within the CLI's batching window.
    let releaseFirst = () => {};
    const receiver = await serve((req, res) => {
      if (req.headers["x-zupertry-delivery"] === attempt(1, 0).delivery_id) {
        releaseFirst = () => res.end("late");
        return;
      }
      res.end("ok");
      setTimeout(() => releaseFirst(), 50);
    });
    const url = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ data: [], next_cursor: null }));
    });
    const sockets = new WebSocketServer({ server: servers.at(-1)! });
    const answered: Array<{ delivery_id: string }> = [];
    let connections = 0;
    sockets.on("connection", (ws) => {
      ws.send(JSON.stringify({ type: "hello", listeners: 1 }));
      if (++connections === 1) {
        ws.send(deliveryFrame(1));
        setTimeout(() => ws.terminate(), 200);
        return;
      }
      ws.on("message", (data) => {
        const text = data.toString();
        if (text !== "ping")
          answered.push(...(JSON.parse(text) as { results: Array<{ delivery_id: string }> }).results);
      });
      ws.send(deliveryFrame(2));
    });
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", `${receiver}/hook`], url, stop.signal);
    const deadline = Date.now() + 10_000;
    while (answered.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    stop.abort();
    await running;
    sockets.close();
    expect(answered.map((r) => r.delivery_id)).toEqual([attempt(2, 0).delivery_id]);
  });
});

describe("`zupertry logs` in a busy org, and through outages", () => {
  it("`--follow` shows the attempt that timed out, though 250 newer ones were written before it", async () => {
    const now = Date.now();
    // 20 attempts a second: a page of 100 holds only the last 5 s.
    const history = Array.from({ length: 200 }, (_, i) => attempt(i + 1, now - 10_000 + i * 50));
    const url = await serve((req, res) => json(res, 200, logPage(history, queryOf(req))));
    setTimeout(() => {
      // Written now, when its 10 s ran out: 150 attempts have started since, and more before them.
      const t = Date.now();
      history.push(timedOut(999, t - 10_000));
      history.push(...Array.from({ length: 150 }, (_, i) => attempt(1000 + i, t - 7_500 + i * 50)));
    }, 300);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 2_500);
    const { code, lines, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    const after = lines.slice(20); // after the first screen
    expect(after.filter((line) => line.includes("✗"))).toEqual([
      expect.stringMatching(/job_999 +dlv_0+999 +#1 +✗ timeout in 10000 ms$/),
    ]);
    expect(after).toHaveLength(151); // and none of the newer ones skipped
    expect(notes).toEqual(["Following new attempts (Ctrl+C to stop)…"]);
  });

  it("`--follow` in an org too busy to read whole says so once, and how to narrow, at ~1 request/s", async () => {
    const now = Date.now();
    const history = Array.from({ length: 2_000 }, (_, i) => attempt(i + 1, now - 15_000 + i * 7));
    let requests = 0;
    const url = await serve((req, res) => {
      requests++;
      json(res, 200, logPage(history, queryOf(req)));
    });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    const { code, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    expect(notes).toEqual([
      "Following new attempts (Ctrl+C to stop)…",
      expect.stringMatching(/^\(--follow is showing only some attempts: more than 500 started/),
    ]);
    expect(notes[1]).toContain("--outcome failed");
    // The first screen, then pages of 100 capped per poll, and a wait as long as the pages read.
    expect(requests).toBeLessThanOrEqual(12);
  });

  it("`--follow` rides out a dropped connection and a 429, says so once each, and when it is back", async () => {
    const history = [attempt(1, Date.now() - 5_000)];
    const trouble: Array<"drop" | "429"> = [];
    const url = await serve((req, res) => {
      const next = trouble.shift();
      if (next === "drop") req.socket.destroy();
      else if (next === "429") {
        json(res, 429, { error: { code: "rate_limited", message: "too many requests" } }, { "Retry-After": "1" });
      } else json(res, 200, logPage(history, queryOf(req)));
    });
    setTimeout(() => trouble.push("drop", "429"), 300);
    setTimeout(() => history.push(attempt(2, Date.now())), 1_500); // made while the CLI could not ask
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 4_000);
    const { code, lines, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    expect(lines.map((line) => line.match(/job_\d+/)?.[0] ?? line)).toEqual(["job_1", "job_2"]);
    expect(notes).toEqual([
      "Following new attempts (Ctrl+C to stop)…",
      expect.stringMatching(/^Could not reach http:\/\/127\.0\.0\.1:\d+: .+; retrying in 1 s \(Ctrl\+C to stop\)…$/),
      "The dispatcher answered HTTP 429 (the org's API rate limit); retrying in 1 s (Ctrl+C to stop)…",
      "Back: the dispatcher answers again; following.",
    ]);
  });

  it("`--follow` takes an answer cut off mid-body for a passing fault, not a wrong --api-url", async () => {
    let cut = false;
    const url = await serve((req, res) => {
      if (!cut) return json(res, 200, logPage([], queryOf(req)));
      cut = false;
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "1000" });
      res.write('{"data":[');
      setTimeout(() => req.socket.destroy(), 20);
    });
    setTimeout(() => {
      cut = true;
    }, 300);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    const { code, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    expect(notes).toEqual([
      "Following new attempts (Ctrl+C to stop)…",
      expect.stringMatching(/^The answer from http:\/\/127\.0\.0\.1:\d+ was cut off: .+; retrying in 1 s/),
      "Back: the dispatcher answers again; following.",
    ]);
  });

  it("`--follow` still ends with exit 1 when the key is revoked", async () => {
    let revoked = false;
    const url = await serve((req, res) => {
      if (revoked) json(res, 401, { error: { code: "unauthorized", message: "invalid API key" } });
      else json(res, 200, logPage([], queryOf(req)));
    });
    setTimeout(() => {
      revoked = true;
    }, 300);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 5_000);
    const { code, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(1);
    expect(notes.at(-1)).toBe("The API key was not accepted: it is invalid or has been revoked.");
  });

  it("`--since` shows up to 10,000 attempts, waits out a 429, and gives the command for the rest", async () => {
    const since = "2026-03-19T10:00:00.000Z";
    const start = Date.parse(since);
    const history = Array.from({ length: 10_050 }, (_, i) => attempt(i + 1, start + i * 100));
    history.push({ ...attempt(20_000, start + 5_000), event_type: "job.failed" }); // filtered out
    let requests = 0;
    const url = await serve((req, res) => {
      if (++requests === 3) {
        json(res, 429, { error: { code: "rate_limited", message: "too many requests" } }, { "Retry-After": "1" });
      } else json(res, 200, logPage(history, queryOf(req)));
    });
    const filters = ["--event-type", "job.completed"];
    const { code, lines, notes } = await run(["logs", "--since", since, ...filters], url);
    expect(code).toBe(0);
    expect(lines).toHaveLength(10_000);
    expect(lines[0]).toContain("job_51 "); // the newest 10,000: from the 51st on
    expect(notes[0]).toBe("(The org's API rate limit: 200 attempts read so far; going on in 1 s…)");
    const oldestShown = history[50]!.attempted_at;
    const until = new Date(Date.parse(oldestShown) + 1).toISOString();
    expect(notes[1]).toBe(
      `(Shown: the newest 10,000 attempts from ${since} on, as many as one listing reads. The older ones: ` +
        `zupertry logs --event-type job.completed --since ${since} --until ${until} ` +
        `(it starts again at ${oldestShown}, the oldest shown, so that one may show twice).)`,
    );
    // Running it shows the rest, and the oldest shown again.
    const command = notes[1]!.match(/The older ones: zupertry (.+?) \(it starts again/)![1]!;
    const rest = await run(command.split(" "), url);
    expect(rest.code).toBe(0);
    expect(rest.lines).toHaveLength(51);
    expect(rest.lines[0]).toContain("job_1 ");
    expect(rest.lines.at(-1)).toBe(lines[0]);
  });

  it("says which filter the dispatcher refused, and why, as a usage error (exit 2)", async () => {
    const url = await serve((req, res) => {
      const query = queryOf(req);
      const details = [];
      if (!["succeeded", "failed", null].includes(query.get("outcome"))) {
        details.push({
          path: ["outcome"],
          code: "invalid_value",
          message: 'Invalid option: expected one of "succeeded"|"failed"',
        });
      }
      if (query.has("since") && Number.isNaN(Date.parse(query.get("since")!))) {
        details.push({ path: ["since"], code: "invalid_format", message: "Invalid ISO datetime" });
      }
      if (details.length === 0) return json(res, 200, logPage([], query));
      json(res, 400, { error: { code: "invalid_request", message: "the request does not match the schema", details } });
    });
    expect(await run(["logs", "--outcome", "failure"], url)).toEqual({
      code: 2,
      lines: [],
      notes: ['--outcome failure: Invalid option: expected one of "succeeded"|"failed"'],
    });
    expect(await run(["logs", "--since", "yesterday"], url)).toEqual({
      code: 2,
      lines: [],
      notes: ["--since yesterday: Invalid ISO datetime (an ISO 8601 time with its offset: 2026-03-19T10:00:00Z)"],
    });
  });
});

describe("zupertry pointed at the wrong --api-url", () => {
  it("says a website is not the API (exit 1), for every command, rather than crash or retry", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end("<!doctype html><title>Welcome</title>");
    });
    const said = `${url} answered with something that is not the Zupertry API: check --api-url (or ZUPERTRY_API_URL).`;
    expect(await run(["trigger", "job.completed"], url)).toEqual({ code: 1, lines: [], notes: [said] });
    expect(await run(["logs"], url)).toEqual({ code: 1, lines: [], notes: [said] });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    expect(await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal)).toEqual({
      code: 1,
      lines: [],
      notes: [said],
    });
  });

  it("says where a redirect leads (exit 1), and that https:// may be needed", async () => {
    const url = await serve((req, res) => {
      res.writeHead(301, { Location: `https://${req.headers.host}${req.url}` });
      res.end();
    });
    const said = (path: string) =>
      `${url} redirected to https://${url.slice(7)}${path}, which the Zupertry API never does: ` +
      "check --api-url (https:// may be needed).";
    expect(await run(["trigger", "job.completed"], url)).toMatchObject({ code: 1, notes: [said("/v1/webhook/test")] });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    expect(await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal)).toMatchObject({
      code: 1,
      notes: [said("/v1/listen")],
    });
  });
});
