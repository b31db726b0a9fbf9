#!/usr/bin/env node
// `npm run bench`: bundles bench/run.ts for Node (it imports the project's TypeScript) and
// runs it with this process's arguments (`npm run bench -- --phases delivery`).
import { build } from "esbuild";

await build({
  entryPoints: ["bench/run.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  packages: "external",
  logLevel: "warning",
  outfile: "bench/.build/run.mjs",
});
await import("./.build/run.mjs");
