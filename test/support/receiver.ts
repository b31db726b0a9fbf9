import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ReceivedRequest, Reply, Scenario } from "./receiver-types";

export type { ReceivedRequest, Reply, Scenario };

/**
 * A programmable webhook receiver: a real Node HTTP server on 127.0.0.1 that records
 * every request it gets and answers as a test scripted it. The workerd tests reach it
 * over HTTP (its URL comes from `inject("receiverUrl")`); the e2e tests use it
 * in-process.
 *
 * Control API (JSON):
 *   PUT    /_scenario/<name>   a Scenario for requests to /hook/<name>
 *   GET    /_requests/<name>   the requests /hook/<name> received, oldest first
 */

export class Receiver {
  private server: Server | undefined;
  private readonly scenarios = new Map<string, Scenario>();
  private readonly received = new Map<string, ReceivedRequest[]>();
  private readonly inFlight = new Map<string, number>();

  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  setScenario(name: string, scenario: Scenario): void {
    this.scenarios.set(name, scenario);
  }

  requests(name: string): ReceivedRequest[] {
    return this.received.get(name) ?? [];
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://receiver");
    const body = await readBody(req);
    const [, kind, name = ""] = url.pathname.split("/");
    if (kind === "_scenario" && req.method === "PUT") {
      this.setScenario(name, JSON.parse(body.toString("utf8")) as Scenario);
      return json(res, 204);
    }
    if (kind === "_requests" && req.method === "GET") return json(res, 200, this.requests(name));
    if (kind !== "hook") return json(res, 404, { error: "unknown path" });

    const log = this.received.get(name) ?? [];
    this.received.set(name, log);
    const inFlight = (this.inFlight.get(name) ?? 0) + 1;
    this.inFlight.set(name, inFlight);
    log.push({
      method: req.method ?? "",
      path: url.pathname,
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
      body: body.toString("base64"),
      received_at: Date.now(),
      in_flight: inFlight,
      status: 0,
    });
    const record = log[log.length - 1]!;
    const scenario = this.scenarios.get(name) ?? {};
    const replies = scenario.replies ?? [{}];
    let reply = replies[Math.min(log.length - 1, replies.length - 1)] ?? {};
    if (
      scenario.failFirstAttempts &&
      req.headers["x-zupertry-attempt"] === "1" &&
      Math.random() < scenario.failFirstAttempts
    ) {
      reply = { status: 500, body: "chaos" };
    }
    record.status = reply.status ?? 200;
    try {
      await respond(res, reply);
    } finally {
      this.inFlight.set(name, (this.inFlight.get(name) ?? 1) - 1);
    }
  }
}

async function respond(res: ServerResponse, reply: Reply): Promise<void> {
  if (reply.delayMs) await sleep(reply.delayMs);
  if (res.destroyed) return;
  if (reply.reset) {
    res.socket?.resetAndDestroy();
    return;
  }
  const payload =
    reply.bodyBytes !== undefined ? Buffer.alloc(reply.bodyBytes, "x") : Buffer.from(reply.body ?? '{"received":true}');
  res.writeHead(reply.status ?? 200, { "content-type": "application/json", ...reply.headers });
  if (!reply.trickleMs) {
    res.end(payload);
    return;
  }
  const chunks = reply.chunks ?? 10;
  const size = Math.ceil(payload.length / chunks);
  res.flushHeaders();
  for (let i = 0; i < chunks && !res.destroyed; i++) {
    res.write(payload.subarray(i * size, (i + 1) * size));
    await sleep(reply.trickleMs);
  }
  res.end();
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (part: Buffer) => parts.push(part));
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });
}

function json(res: ServerResponse, status: number, value?: unknown): void {
  res.writeHead(status, value === undefined ? {} : { "content-type": "application/json" });
  res.end(value === undefined ? undefined : JSON.stringify(value));
}

/** A pause that does not keep the process alive (a hanging reply must not block shutdown). */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());
