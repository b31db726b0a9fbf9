import { spawn } from "node:child_process";
import type { IncomingMessage } from "node:http";
import { type AddressInfo, createServer as createTcpServer, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import {
  attempt,
  closeServers,
  deliveryFrame,
  json,
  KEY,
  logPage,
  queryOf,
  run,
  serve,
  servers,
  sleep,
  timedOut,
  until,
} from "./cli-stand-in";

/**
 * The CLI's sessions: `listen` at the org's listener limit and against a dispatcher or a
 * local receiver that holds on (slow, or answering without end), `logs` on the
 * dispatcher's clock and bookmark, and the CLI as a program whose output is piped.
 * Apart from cli-faults.test.ts so that the two files' real waits (15 s timeouts) run side by side.
 */

afterEach(closeServers);

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
    const { code, notes } = await run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url);
    sockets.close();
    expect(code).toBe(1);
    expect(notes).toEqual(["The dispatcher refused the listener: the org has 5 listeners connected"]);
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
    const { code, notes } = await running;
    sockets.close();
    expect(code).toBe(0);
    expect(notes).toEqual([
      expect.stringMatching(/^Ready/),
      "Connection lost (closed (1006)); reconnecting in 1 s…",
      "The dispatcher refused the reconnect: the org has 5 listeners connected. One of them is likely this " +
        "listener's dropped connection, which the dispatcher counts until 90 s after its last ping: " +
        "retrying for up to 2 minutes.",
      "Connection lost (HTTP 429: the org has 5 listeners connected); reconnecting in 2 s…",
      "Reconnected: what was missed while disconnected is counted in 15 s, once the attempts made meanwhile " +
        "have ended.",
      expect.stringMatching(/^Ready/),
      // Stopped before the count: what it would have read, to read it.
      expect.stringMatching(
        /^Ended before counting what was missed while disconnected: zupertry logs --since \S+Z --until \S+Z$/,
      ),
    ]);
  });
});

describe("zupertry as a program, its output piped", () => {
  const cli = fileURLToPath(new URL("../../cli/zupertry.mjs", import.meta.url));

  it("`logs --since … | slow reader` gets every line: the CLI exits once its output is written", async () => {
    const since = "2026-03-19T10:00:00.000Z";
    const history = Array.from({ length: 10_000 }, (_, i) => attempt(i + 1, Date.parse(since) + i * 100));
    const url = await serve((req, res) => json(res, 200, logPage(history, queryOf(req))));
    const child = spawn(process.execPath, [cli, "logs", "--since", since], {
      env: { ...process.env, ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: url },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const closed = new Promise((resolve) => child.once("close", resolve));
    // The reader takes nothing until the CLI has exited, or 3 s have passed: far slower
    // than the CLI writes, so most of its output waits in the pipe.
    await Promise.race([exited, sleep(3_000)]);
    let lines = 0;
    child.stdout.on("data", (chunk: Buffer) => {
      for (const byte of chunk) if (byte === 10) lines++;
    });
    child.stderr.resume();
    await closed;
    expect(await exited).toBe(0);
    expect(lines).toBe(10_000);
  }, 20_000);
});

describe("`zupertry logs` on the dispatcher's terms", () => {
  it("says a refused key on stderr, never stdout: `logs > file` holds only attempts", async () => {
    const url = await serve((_req, res) => json(res, 401, { error: { code: "unauthorized", message: "invalid" } }));
    expect(await run(["logs"], url)).toEqual({
      code: 1,
      lines: [],
      notes: ["The API key was not accepted: it is invalid or has been revoked."],
    });
  });

  it("`--follow` polls on the dispatcher's clock (its Date header), not a laptop's 90 s ahead", async () => {
    const serverNow = () => Date.now() - 90_000;
    const history = [attempt(1, serverNow() - 5_000)];
    const url = await serve((req, res) => {
      json(res, 200, logPage(history, queryOf(req)), { Date: new Date(serverNow()).toUTCString() });
    });
    setTimeout(() => history.push(attempt(2, serverNow())), 300);
    // Logged at the end of its 10 s timeout.
    setTimeout(() => history.push(timedOut(3, serverNow() - 10_000)), 1_300);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    const { code, lines } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    expect(lines.map((line) => line.match(/job_\d+/)?.[0])).toEqual(["job_1", "job_2", "job_3"]);
  });

  it("`--follow` rides out a 429 on its first poll too, the one right after the first screen", async () => {
    const history = [attempt(1, Date.now() - 5_000)];
    let requests = 0;
    const url = await serve((req, res) => {
      if (++requests === 2) {
        json(res, 429, { error: { code: "rate_limited", message: "too many requests" } }, { "Retry-After": "1" });
      } else json(res, 200, logPage(history, queryOf(req)));
    });
    setTimeout(() => history.push(attempt(2, Date.now())), 300);
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 3_000);
    const { code, lines, notes } = await run(["logs", "--follow"], url, stop.signal);
    expect(code).toBe(0);
    expect(lines.map((line) => line.match(/job_\d+/)?.[0])).toEqual(["job_1", "job_2"]);
    expect(notes).toEqual([
      "Following new attempts (Ctrl+C to stop)…",
      "The dispatcher answered HTTP 429 (the org's API rate limit); retrying in 1 s (Ctrl+C to stop)…",
      "Back: the dispatcher answers again; following.",
    ]);
  });

  it("sends back the log's bookmark, so that no page reads an older log than the one before", async () => {
    const sent: Array<string | undefined> = [];
    const url = await serve((req, res) => {
      sent.push(req.headers["x-zupertry-bookmark"] as string | undefined);
      const page =
        sent.length === 1 ? { data: [], next_cursor: "c1" } : { data: [attempt(1, Date.now())], next_cursor: null };
      json(res, 200, page, { "X-Zupertry-Bookmark": `0000000${sent.length}-00000000-00000000-${"0".repeat(32)}` });
    });
    expect(await run(["logs", "--event-type", "job.completed"], url)).toMatchObject({ code: 0, notes: [] });
    expect(sent).toEqual([undefined, `00000001-00000000-00000000-${"0".repeat(32)}`]);
  });
});

describe("`zupertry listen` against a dispatcher or a receiver that holds on", () => {
  /** A dispatcher whose listen route sends `frames` on each new session; what the sessions answer. */
  async function dispatcher(frames: (connection: number) => string[]) {
    const url = await serve((req, res) => json(res, 200, logPage([], queryOf(req))));
    const sockets = new WebSocketServer({ server: servers.at(-1)! });
    const answered: Array<{ delivery_id: string; status_code: number | null; response_time_ms: number }> = [];
    const headers: Array<string | undefined> = [];
    sockets.on("connection", (ws: WebSocket, req: IncomingMessage) => {
      headers.push(req.headers.authorization);
      ws.on("message", (data) => {
        const text = data.toString();
        if (text !== "ping") answered.push(...JSON.parse(text).results);
      });
      for (const frame of frames(headers.length)) ws.send(frame);
    });
    return { url, sockets, answered, headers };
  }

  it("takes a key with a CRLF .env's \\r, rather than crash on the WebSocket's header", async () => {
    const { url, sockets, headers } = await dispatcher(() => []);
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal, {
      ZUPERTRY_API_KEY: `${KEY}\r`,
    });
    await until(() => headers.length > 0, 5_000);
    stop.abort();
    const { code, notes } = await running;
    sockets.close();
    expect(code).toBe(0);
    expect(headers).toEqual([`Bearer ${KEY}`]);
    expect(notes).toEqual([expect.stringMatching(/^Ready: forwarding/)]);
  });

  it("says what the dispatcher skipped while it was behind, with the command that lists it", async () => {
    const skipped = {
      type: "skipped",
      count: 12,
      since: "2026-11-30T10:00:00.000Z",
      until: "2026-11-30T10:02:00.000Z",
    };
    const { url, sockets } = await dispatcher(() => [JSON.stringify(skipped), JSON.stringify({ type: "skipped" })]);
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal);
    await sleep(500);
    stop.abort();
    const { code, lines, notes } = await running;
    sockets.close();
    expect(code).toBe(0);
    expect(lines).toEqual([]);
    // One notice (a frame that does not say what was skipped is not one), on stderr.
    const said = notes.filter((note) => note.includes("not forwarded"));
    expect(said).toEqual([
      expect.stringMatching(
        /^12 deliveries were not forwarded \(\d\d:\d\d:\d\d–\d\d:\d\d:\d\d\): this listener had left 4 MiB/,
      ),
    ]);
    expect(said[0]).toContain(
      "logged when it ends): zupertry logs --since 2026-11-30T09:59:50.000Z " + "--until 2026-11-30T10:02:01.000Z",
    );
  });

  it("forwards at most 3 deliveries at once, the others after them in the order they came", async () => {
    let open = 0;
    let most = 0;
    const order: string[] = [];
    const receiver = await serve((req, res) => {
      order.push(req.headers["x-zupertry-delivery"] as string);
      most = Math.max(most, ++open);
      setTimeout(() => {
        open--;
        res.end("ok");
      }, 100);
    });
    const ids = Array.from({ length: 20 }, (_, i) => i + 1);
    const { url, sockets, answered } = await dispatcher(() => ids.map(deliveryFrame));
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", `${receiver}/hook`], url, stop.signal);
    await until(() => answered.length === 20, 10_000);
    stop.abort();
    const { code, lines } = await running;
    sockets.close();
    expect(code).toBe(0);
    expect(most).toBe(3);
    const sent = ids.map((i) => attempt(i, 0).delivery_id);
    expect([...order].sort()).toEqual([...sent].sort()); // none dropped, none twice
    // In the order they came: only the 3 under way at once may reach the receiver out of turn.
    for (const [position, id] of order.entries()) expect(Math.abs(position - sent.indexOf(id))).toBeLessThan(3);
    expect(lines.filter((line) => line.endsWith("ms") && line.includes("→ 200"))).toHaveLength(20);
  });

  it("reads 64 KiB of a local answer that never ends, cancels the rest, and forwards the next", async () => {
    const receiver = await serve((req, res) => {
      if (req.headers["x-zupertry-delivery"] === attempt(4, 0).delivery_id) return void res.end("ok");
      res.writeHead(200);
      const chunk = Buffer.alloc(16_384, "x");
      const more = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on("drain", more);
      more();
    });
    // Three endless answers would take every place for the 10 s timeout; the fourth waits for one.
    const { url, sockets, answered } = await dispatcher(() => [1, 2, 3, 4].map(deliveryFrame));
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", `${receiver}/hook`], url, stop.signal);
    await until(() => answered.length === 4, 3_000);
    stop.abort();
    await running;
    sockets.close();
    expect(answered.map((r) => [r.delivery_id, r.status_code])).toEqual(
      expect.arrayContaining([1, 2, 3, 4].map((i) => [attempt(i, 0).delivery_id, 200])),
    );
    expect(answered).toHaveLength(4);
    for (const result of answered) expect(result.response_time_ms).toBeLessThan(2_000);
  });

  it("gives up an upgrade never answered after 15 s, and tries again", async () => {
    const held: Socket[] = [];
    const server = createTcpServer((socket) => held.push(socket)); // takes the connection, says nothing
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal);
    await until(() => held.length === 2, 20_000);
    stop.abort();
    const { code, notes } = await running;
    for (const socket of held) socket.destroy();
    server.close();
    expect(code).toBe(0);
    expect(held).toHaveLength(2);
    expect(notes).toEqual([
      `Cannot reach ${url}: Opening handshake has timed out`,
      "Connection lost (closed (1006)); reconnecting in 1 s…",
    ]);
  }, 25_000);

  it("reads a refused upgrade's error only so far (an endless one) and so long (a stalled one)", async () => {
    const url = await serve(() => {});
    let upgrades = 0;
    servers.at(-1)!.on("upgrade", (_req, socket: Socket) => {
      socket.on("error", () => {});
      socket.on("end", () => socket.destroy()); // the CLI hung up: no half-open socket left for afterEach
      socket.write("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n");
      if (++upgrades === 1) {
        const endless = setInterval(() => socket.write(`{"error":{"message":"${"x".repeat(1_000)}`), 5);
        socket.on("close", () => clearInterval(endless));
      } else if (upgrades === 2)
        socket.write('{"error":'); // and nothing more
      else socket.destroy();
    });
    const stop = new AbortController();
    const running = run(["listen", "--forward-to", "http://127.0.0.1:9/hook"], url, stop.signal);
    // The endless one at once, the stalled one after 5 s, then the back-off's 2 s.
    await until(() => upgrades === 3, 12_000);
    stop.abort();
    const { code, notes } = await running;
    expect(code).toBe(0);
    expect(notes.slice(0, 2)).toEqual([
      "Connection lost (HTTP 503); reconnecting in 1 s…",
      "Connection lost (HTTP 503); reconnecting in 2 s…",
    ]);
    expect(upgrades).toBe(3);
  }, 20_000);
});
