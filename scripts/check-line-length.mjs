#!/usr/bin/env node
// Lines of code stay within 120 characters (Biome formats the code, but cannot break a
// long string, comment, HTML or SQL line). Markdown, lock files, generated types and the
// docs' own snippets (which must match the docs byte for byte) are left alone.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const LIMIT = 120;
const CODE = /\.(ts|js|mjs|cjs|css|html|sql|toml|json)$/;
const EXEMPT = [
  "worker-configuration.d.ts",
  "package-lock.json",
  "bench/results/",
  "test/e2e/receivers/express-seed.cjs",
  // Landed: a migration is never edited once deployed (test/node/contract.test.ts holds them).
  "migrations/0001_initial.sql",
  "migrations/0002_error_detail_and_pending.sql",
];
const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { encoding: "utf8" })
  .split("\n")
  .filter((f) => CODE.test(f) && !EXEMPT.some((e) => f.startsWith(e)));
const long = files.flatMap((file) =>
  readFileSync(file, "utf8")
    .split("\n")
    .flatMap((line, i) => ([...line].length > LIMIT ? [`${file}:${i + 1}: ${[...line].length} characters`] : [])),
);
if (long.length > 0) {
  console.error(`Lines over ${LIMIT} characters:\n${long.join("\n")}`);
  process.exit(1);
}
