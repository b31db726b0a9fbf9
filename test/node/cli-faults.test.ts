import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
// @ts-expect-error: plain ES modules checked by tsc through JSDoc (cli/tsconfig.json), no .d.ts.
import { main } from "../../cli/zupertry.mjs";

/**
 * The CLI against a stand-in dispatcher that misbehaves on purpose: one that never
 * answers, answers 404, drops the connection, or holds more history than the first screen.
 */

const KEY = "zk_abcdefghijklmnopqrstuvwxyz";
const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** `lines`: what the command printed (stdout); `notes`: what it said beside them (stderr). */
async function run(args: string[], url: string, signal?: AbortSignal) {
  const lines: string[] = [];
  const notes: string[] = [];
  const env = { ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: url };
  const out = (line: string) => lines.push(line);
  const code = await main(args, { env, out, err: (line: string) => notes.push(line), signal });
  return { code, lines, notes };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function attempt(i: number, at: number) {
  return {
    id: `att_${String(i).padStart(32, "0")}_1`,
    delivery_id: `dlv_${String(i).padStart(32, "0")}`,
    job_id: `job_${i}`,
    event_type: "job.completed",
    attempt: 1,
    status_code: 200 as number | null,
    response_time_ms: 5,
    attempted_at: new Date(at).toISOString(),
    outcome: "succeeded",
    error: null as string | null,
  };
}

/** An attempt that got no answer in the 10 s timeout: its row is written 10 s after it started. */
function timedOut(i: number, at: number) {
  return { ...attempt(i, at), outcome: "failed", status_code: null, response_time_ms: 10_000, error: "timeout" };
}

type Attempt = ReturnType<typeof attempt>;

/**
 * GET /v1/webhook-logs over `history` as the API answers it: newest started first, `since`
 * (inclusive), `until` (exclusive), `event_type` and `outcome`, pages of `limit` with a
 * `next_cursor` while more match.
 */
function logPage(history: Attempt[], query: URLSearchParams) {
  const [since, until] = [query.get("since"), query.get("until")];
  const rows = history
    .filter((a) => (!since || a.attempted_at >= since) && (!until || a.attempted_at < until))
    .filter((a) => [a.event_type, null].includes(query.get("event_type")))
    .filter((a) => [a.outcome, null].includes(query.get("outcome")))
    .sort((a, b) => b.attempted_at.localeCompare(a.attempted_at) || b.id.localeCompare(a.id));
  const from = Number(query.get("cursor") ?? 0);
  const to = from + Number(query.get("limit") ?? 100);
  return { data: rows.slice(from, to), next_cursor: to < rows.length ? String(to) : null };
}

const queryOf = (req: IncomingMessage) => new URL(req.url!, "http://x").searchParams;

describe("zupertry against a dispatcher that misbehaves", () => {
  it("stops `trigger` at Ctrl+C rather than wait out a dispatcher that never answers", async () => {
    const url = await serve(() => {}); // holds every request
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const started = Date.now();
    const { code, lines } = await run(["trigger", "job.completed"], url, stop.signal);
    expect(code).toBe(130);
    expect(lines).toEqual(["Stopped."]);
    expect(Date.now() - started).toBeLessThan(5_000); // the call's own timeout is 15 s
  });

  it("gives up `listen` on a 404 (a wrong --api-url) with exit 1, instead of retrying forever", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(404, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "not_found", message: "no such route" } }));
    });
    const { code, lines } = await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url);
    expect(code).toBe(1);
    expect(lines).toEqual([`The dispatcher at ${url} refused the listener: HTTP 404: no such route`]);
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
    const { code, lines } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    const jobs = lines.map((line) => line.match(/job_\d+/)?.[0] ?? line);
    expect(jobs).toEqual([
      ...Array.from({ length: 20 }, (_, i) => `job_${i + 21}`),
      "Following new attempts (Ctrl+C to stop)…",
      "job_41",
    ]);
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

  it("counts what `listen` missed from the last frame it heard, leaving out what it forwarded", async () => {
    const forwardedTo: string[] = [];
    const receiver = await serve((req, res) => {
      forwardedTo.push(req.headers["x-zupertry-delivery"] as string);
      res.end("ok");
    });
    const delivered = attempt(1, Date.now());
    const missed = attempt(2, Date.now() + 50);
    let logsSince: string | null = null;
    const url = await serve((req, res) => {
      logsSince = new URL(req.url!, "http://x").searchParams.get("since");
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ data: [missed, delivered], next_cursor: null }));
    });
    const server = servers.at(-1)!;
    const sockets = new WebSocketServer({ server });
    let connections = 0;
    sockets.on("connection", (ws) => {
      if (++connections > 1) return;
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
    const heardAt = Date.now();
    const running = run(["listen", "--forward-to", `${receiver}/hook`], url, stop.signal);
    const deadline = Date.now() + 10_000;
    while (logsSince === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200));
    stop.abort();
    const { lines } = await running;
    sockets.close();
    expect(forwardedTo).toEqual([delivered.delivery_id]);
    // The window starts at the last frame heard, not when the drop was noticed 1.5 s later.
    expect(Date.parse(logsSince!) - heardAt).toBeLessThan(1_000);
    expect(lines.find((line) => line.startsWith("Reconnected."))).toMatch(/\) 1 attempt was made and not forwarded/);
  });
  it("tells a new session only what it forwarded for that session, not the answers of one that died", async () => {
    const frame = (i: number) =>
      JSON.stringify({
        type: "delivery",
        delivery_id: attempt(i, 0).delivery_id,
        job_id: `job_${i}`,
        event_type: "job.completed",
        attempt: 1,
        headers: { "X-Zupertry-Delivery": attempt(i, 0).delivery_id, "Content-Type": "application/json" },
        body: "{}",
      });
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
        ws.send(frame(1));
        setTimeout(() => ws.terminate(), 200);
        return;
      }
      ws.on("message", (data) => {
        const text = data.toString();
        if (text !== "ping")
          answered.push(...(JSON.parse(text) as { results: Array<{ delivery_id: string }> }).results);
      });
      ws.send(frame(2));
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
    const after = lines.slice(lines.indexOf("Following new attempts (Ctrl+C to stop)…") + 1);
    expect(after.filter((line) => line.includes("✗"))).toEqual([
      expect.stringMatching(/job_999 +dlv_0+999 +#1 +✗ timeout in 10000 ms$/),
    ]);
    expect(after).toHaveLength(151); // and none of the newer ones skipped
    expect(notes).toEqual([]);
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
    expect(notes).toEqual([expect.stringMatching(/^\(--follow is showing only some attempts: more than 500 started/)]);
    expect(notes[0]).toContain("--outcome failed");
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
    expect(lines.map((line) => line.match(/job_\d+/)?.[0] ?? line)).toEqual([
      "job_1",
      "Following new attempts (Ctrl+C to stop)…",
      "job_2",
    ]);
    expect(notes).toEqual([
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
    const { code, lines } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(1);
    expect(lines.at(-1)).toBe("The API key was not accepted: it is invalid or has been revoked.");
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
      lines: ['--outcome failure: Invalid option: expected one of "succeeded"|"failed"'],
      notes: [],
    });
    expect(await run(["logs", "--since", "yesterday"], url)).toEqual({
      code: 2,
      lines: ["--since yesterday: Invalid ISO datetime (an ISO 8601 time with its offset: 2026-03-19T10:00:00Z)"],
      notes: [],
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
    expect(await run(["trigger", "job.completed"], url)).toMatchObject({ code: 1, lines: [said] });
    expect(await run(["logs"], url)).toMatchObject({ code: 1, lines: [said] });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    expect(await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal)).toMatchObject({
      code: 1,
      lines: [said],
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
    expect(await run(["trigger", "job.completed"], url)).toMatchObject({ code: 1, lines: [said("/v1/webhook/test")] });
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    expect(await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal)).toMatchObject({
      code: 1,
      lines: [said("/v1/listen")],
    });
  });
});

describe("`zupertry listen` at the org's limit of 5 listeners", () => {
  /** A dispatcher whose listen route refuses the upgrades `refuse` says yes to, as the org's limit does. */
  async function dispatcher(refuse: (connection: number) => boolean) {
    const url = await serve((req, res) => json(res, 200, logPage([], queryOf(req))));
    const sockets = new WebSocketServer({ noServer: true });
    let connection = 0;
    servers.at(-1)!.on("upgrade", (req, socket, head) => {
      if (refuse(++connection)) {
        const body = JSON.stringify({ error: { code: "rate_limited", message: "the org has 5 listeners connected" } });
        socket.end(
          "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n" +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        return;
      }
      sockets.handleUpgrade(req, socket, head, (ws) => sockets.emit("connection", ws, req));
    });
    return { url, sockets, connections: () => connection };
  }

  it("refuses a first connection at once (exit 1): the other sessions will not go away", async () => {
    const { url, sockets } = await dispatcher(() => true);
    const { code, lines } = await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url);
    sockets.close();
    expect(code).toBe(1);
    expect(lines).toEqual(["The dispatcher refused the listener: the org has 5 listeners connected"]);
  });

  it("keeps reconnecting when its own dropped session still counts, and says why", async () => {
    // The first session drops; the dispatcher still counts it, and refuses the reconnect once.
    const { url, sockets, connections } = await dispatcher((n) => n === 2);
    sockets.on("connection", (ws) => {
      if (connections() === 1) setTimeout(() => ws.terminate(), 200);
    });
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal);
    const deadline = Date.now() + 10_000;
    while (connections() < 3 && Date.now() < deadline) await sleep(50);
    await sleep(300);
    stop.abort();
    const { code, lines } = await running;
    sockets.close();
    expect(code).toBe(0);
    expect(lines).toEqual([
      expect.stringMatching(/^Ready/),
      "Connection lost (closed (1006)); reconnecting in 1 s…",
      "The dispatcher refused the reconnect: the org has 5 listeners connected. One of them is likely this " +
        "listener's dropped connection, which the dispatcher counts until 90 s after its last ping: " +
        "retrying for up to 2 minutes.",
      "Connection lost (HTTP 429: the org has 5 listeners connected); reconnecting in 2 s…",
      expect.stringMatching(/^Reconnected\. While disconnected .* 0 attempts were made and not forwarded\.$/),
      expect.stringMatching(/^Ready/),
    ]);
  });
});
