#!/usr/bin/env node
// `npm run dev`: the dispatcher on http://127.0.0.1:8787 with everything local
// (another port: `npm run dev -- --port 8799`, or PORT=8799).
//   1. .dev.vars from .dev.vars.example when missing (dev producer and operator tokens, no real secret),
//      and the tokens in effect printed;
//   2. local D1 migrations applied to every database, each log shard (idempotent);
//   3. `wrangler dev` (D1, queues and Durable Objects simulated in .wrangler/state), with
//      ALLOW_INSECURE_WEBHOOK_URLS=true so receivers on http://127.0.0.1 work, and
//      --test-scheduled: its cron triggers (the stall sweep, retention) do not fire by
//      themselves, and it prints how to run them.
// Extra arguments go to `wrangler dev`, e.g. `npm run dev -- --var RETRY_DELAYS_SECONDS:5,10`.
import { spawnSync } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { devArgs } from "./dev-args.mjs";

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("Created .dev.vars from .dev.vars.example");
} else {
  // A .dev.vars from before a token existed gets that token's dev value (never a change to one set).
  let have = readFileSync(".dev.vars", "utf8");
  for (const line of readFileSync(".dev.vars.example", "utf8").split("\n")) {
    const name = /^([A-Z_]+)=/.exec(line)?.[1];
    if (name && !new RegExp(`^${name}=`, "m").test(have)) {
      const added = `${have.endsWith("\n") ? "" : "\n"}${line}\n`;
      appendFileSync(".dev.vars", added);
      have += added; // so that a second missing token is not preceded by a blank line
      console.log(`Added ${name} to .dev.vars from .dev.vars.example`);
    }
  }
}
// On every start, not only the first: a .dev.vars of one's own may hold other tokens.
const devVars = readFileSync(".dev.vars", "utf8");
// dotenv lines: `NAME=value`, `export NAME = "value"`, with a `# comment` after an unquoted value.
const token = (name) =>
  new RegExp(`^\\s*(?:export\\s+)?${name}\\s*=\\s*(?:(["'])(.*?)\\1|([^#\\s]*))`, "m")
    .exec(devVars)
    ?.slice(2)
    .find((v) => v !== undefined) ?? "(not set)";
console.log(`Local tokens (.dev.vars): producer ${token("PRODUCER_TOKEN")}, operator ${token("OPERATOR_TOKEN")}`);

const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
const wrangler = (args, stdio = "inherit") => spawnSync("npx", ["wrangler", ...args], { stdio, env });

const parsed = devArgs(process.argv.slice(2), process.env);
if ("error" in parsed) {
  console.error(parsed.error);
  process.exit(2);
}
const { port, persistTo, rest } = parsed;

// `wrangler dev` fires no cron trigger on its schedule; with --test-scheduled,
// `/__scheduled?cron=…` runs one. (The `/cdn-cgi/handler/scheduled` it suggests without
// that flag answers "exception" for a Worker with static assets in wrangler 4.86:
// workers-sdk#9882.) One line per cron of wrangler.toml, the every-minute stall sweep among them.
const crons = parse(readFileSync("wrangler.toml", "utf8")).triggers?.crons ?? [];
if (crons.length > 0) {
  console.log("Cron triggers (the stall sweep, retention) do not fire under `wrangler dev`; to run one now:");
  for (const cron of crons) {
    console.log(`  curl "http://127.0.0.1:${port}/__scheduled?cron=${cron.replaceAll(" ", "+")}"`);
  }
}

const migrate = ["scripts/migrate.mjs", "--local", ...(persistTo ? ["--persist-to", persistTo] : [])];
const migrated = spawnSync("node", migrate, { stdio: "inherit", env });
if (migrated.status !== 0) process.exit(migrated.status ?? 1);
const dev = wrangler([
  "dev",
  "--ip",
  "127.0.0.1",
  "--port",
  port,
  "--var",
  "ALLOW_INSECURE_WEBHOOK_URLS:true",
  "--test-scheduled",
  ...rest,
]);
if (dev.error) console.error(`could not run wrangler: ${dev.error.message}`);
process.exit(dev.status ?? (dev.error ? 1 : 0));
