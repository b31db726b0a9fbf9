import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
// @ts-expect-error: plain ES modules checked by tsc through JSDoc (cli/tsconfig.json), no .d.ts.
import { main } from "../../cli/zupertry.mjs";

/**
 * Stand-ins for the CLI's Node tests (cli-faults, cli-sessions): a dispatcher served by a
 * handler of the test's, the CLI run in-process with its stdout and stderr kept apart,
 * and attempts and log pages shaped as the API answers them.
 */

export const KEY = "zk_q8F0cQk1gD9c2m3x8T4pVn7aLw0eRzYb5uJ6hN1sK2o";
/** The stand-ins a test started (the last one: `servers.at(-1)`); `closeServers` after each test. */
export const servers: Server[] = [];

export async function closeServers(): Promise<void> {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

export async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** `lines`: what the command printed (stdout); `notes`: what it said beside them (stderr). */
export async function run(args: string[], url: string, signal?: AbortSignal, more: Record<string, string> = {}) {
  const lines: string[] = [];
  const notes: string[] = [];
  const env = { ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: url, ...more };
  const out = (line: string) => lines.push(line);
  const code = await main(args, { env, out, err: (line: string) => notes.push(line), signal });
  return { code, lines, notes };
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done()`, or `ms` have passed. */
export async function until(done: () => boolean, ms: number) {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await sleep(50);
}

export function attempt(i: number, at: number) {
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
export function timedOut(i: number, at: number) {
  return { ...attempt(i, at), outcome: "failed", status_code: null, response_time_ms: 10_000, error: "timeout" };
}

/** A `delivery` frame of the listen protocol, for the i-th made-up delivery. */
export function deliveryFrame(i: number): string {
  return JSON.stringify({
    type: "delivery",
    delivery_id: attempt(i, 0).delivery_id,
    job_id: `job_${i}`,
    event_type: "job.completed",
    attempt: 1,
    headers: { "X-Zupertry-Delivery": attempt(i, 0).delivery_id, "Content-Type": "application/json" },
    body: "{}",
  });
}

export type Attempt = ReturnType<typeof attempt>;

/**
 * GET /v1/webhook-logs over `history` as the API answers it: newest started first, `since`
 * (inclusive), `until` (exclusive), `event_type` and `outcome`, pages of `limit` with a
 * `next_cursor` while more match.
 */
export function logPage(history: Attempt[], query: URLSearchParams) {
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

export const queryOf = (req: IncomingMessage) => new URL(req.url!, "http://x").searchParams;
