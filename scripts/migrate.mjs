#!/usr/bin/env node
// `npm run migrate -- --local` (or `--remote`): applies migrations/ to every D1 database of
// the Worker's config: every log shard, DB (which also holds the API keys) among them.
// All of them have one schema (src/store/README.md), so a new shard gets every migration
// the first time this runs, and the others only what they have not applied yet.
//
//   node scripts/migrate.mjs --local|--remote [--config FILE] [--persist-to DIR]
//
// `npm run dev` runs it with --local, `npm run deploy` with --remote; remotely it first
// checks that every database runs the SQL the Worker needs (scripts/d1-preflight.mjs).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parse } from "smol-toml";
import { sqlPreflight } from "./d1-preflight.mjs";

const { values } = parseArgs({
  options: {
    local: { type: "boolean", default: false },
    remote: { type: "boolean", default: false },
    config: { type: "string", default: "wrangler.toml" },
    "persist-to": { type: "string" },
  },
});
if (values.local === values.remote) {
  console.error("usage: migrate.mjs --local|--remote [--config FILE] [--persist-to DIR]");
  process.exit(2);
}
const databases = parse(readFileSync(values.config, "utf8")).d1_databases ?? [];
const env = { ...process.env, WRANGLER_SEND_METRICS: "false" };
if (values.remote) {
  // Before anything changes: every database must run the SQL the Worker needs.
  const refused = databases.map(({ binding }) =>
    sqlPreflight(binding, { mode: "--remote", config: values.config, env }),
  );
  for (const why of refused.filter((w) => w !== null)) console.error(why);
  if (refused.some((w) => w !== null)) process.exit(1);
}
for (const { binding } of databases) {
  const args = ["wrangler", "d1", "migrations", "apply", binding, values.local ? "--local" : "--remote"];
  args.push("--config", values.config);
  if (values["persist-to"]) args.push("--persist-to", values["persist-to"]);
  // Locally without a terminal on stdin, wrangler applies without asking; remotely it
  // asks the operator, once per database.
  const stdin = values.local ? "ignore" : "inherit";
  const result = spawnSync("npx", args, { stdio: [stdin, "inherit", "inherit"], env });
  if (result.status !== 0) {
    // `error` when npx could not be run at all (then there is no status either).
    console.error(`migrations failed on ${binding}${result.error ? `: ${result.error.message}` : ""}`);
    process.exit(result.status ?? 1);
  }
}
console.log(`migrations applied to ${databases.map((d) => d.binding).join(", ")}`);
