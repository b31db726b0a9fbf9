// The benchmark's receiver, as its own process (so its event loop does not compete with
// the load generator's):
//   /hook   answers 200 at once and keeps what the benchmark needs: distinct events (by
//           data.job_id, which the control's deliveries carry too) and ingest-to-arrival
//           latency from data.sent_at (set by the benchmark when it posts);
//   /other  answers 200 at once and keeps nothing (load that is not being measured);
//   /hang   never answers (a customer endpoint that hangs); keeps nothing.
import { createServer } from "node:http";

const seen = new Set();
const latencies = [];
let first = 0;
let last = 0;
let requests = 0;

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/stats") {
    const sorted = [...latencies].sort((a, b) => a - b);
    const pct = (p) =>
      sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : null;
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ requests, distinct: seen.size, firstAt: first, lastAt: last, p50: pct(50), p99: pct(99) }));
    return;
  }
  if (req.method === "POST" && req.url === "/reset") {
    seen.clear();
    latencies.length = 0;
    first = last = requests = 0;
    res.writeHead(204).end();
    return;
  }
  if (req.url === "/hang") {
    req.resume();
    return;
  }
  if (req.url === "/other") {
    req.resume();
    req.on("end", () => res.writeHead(200).end('{"received":true}'));
    return;
  }
  const parts = [];
  req.on("data", (p) => parts.push(p));
  req.on("end", () => {
    const now = Date.now();
    res.writeHead(200, { "content-type": "application/json" }).end('{"received":true}');
    requests++;
    let data;
    try {
      data = JSON.parse(Buffer.concat(parts).toString("utf8")).data;
    } catch {
      return;
    }
    if (!data || seen.has(data.job_id)) return;
    seen.add(data.job_id);
    if (typeof data.sent_at === "number") latencies.push(now - data.sent_at);
    first ||= now;
    last = now;
  });
});
server.keepAliveTimeout = 5000;
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () =>
  console.log(JSON.stringify({ listening: server.address().port })),
);
