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

async function run(args: string[], url: string, signal?: AbortSignal) {
  const lines: string[] = [];
  const env = { ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: url };
  const code = await main(args, { env, out: (line: string) => lines.push(line), signal });
  return { code, lines };
}

function attempt(i: number, at: number) {
  return {
    id: `att_${String(i).padStart(32, "0")}_1`,
    delivery_id: `dlv_${String(i).padStart(32, "0")}`,
    job_id: `job_${i}`,
    event_type: "job.completed",
    attempt: 1,
    status_code: 200,
    response_time_ms: 5,
    attempted_at: new Date(at).toISOString(),
    outcome: "succeeded",
    error: null,
  };
}

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
