#!/usr/bin/env node
// `npm run dev`: the dispatcher on http://127.0.0.1:8787 with everything local.
//   1. .dev.vars from .dev.vars.example when missing (a dev producer token, no real secret);
//   2. local D1 migrations applied to every database, each log shard (idempotent);
//   3. `wrangler dev` (D1, queues and Durable Objects simulated in .wrangler/state), with
//      ALLOW_INSECURE_WEBHOOK_URLS=true so receivers on http://127.0.0.1 work.
// Extra arguments go to `wrangler dev`, e.g. `npm run dev -- --var RETRY_DELAYS_SECONDS:5,10`.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("Created .dev.vars from .dev.vars.example (producer token: dev-producer-token)");
}
const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const wrangler = (args, stdio = "inherit") => spawnSync("npx", ["wrangler", ...args], { stdio, env });

const migrated = spawnSync("node", ["scripts/migrate.mjs", "--local"], { stdio: "inherit", env });
if (migrated.status !== 0) process.exit(migrated.status ?? 1);
const dev = wrangler([
  "dev",
  "--ip",
  "127.0.0.1",
  "--port",
  "8787",
  "--var",
  "ALLOW_INSECURE_WEBHOOK_URLS:true",
  ...process.argv.slice(2),
]);
process.exit(dev.status ?? 0);
