import { appendFileSync, readFileSync } from "node:fs";
import { inject } from "vitest";

/**
 * The reliability summary: test files record what they proved (as they run, in
 * separate workers), and the global teardown prints it once at the end of the suite.
 */

export type Fact = { area: string; check: string; result: string };

export function record(area: string, check: string, result: string | number): void {
  appendFileSync(inject("summaryFile"), `${JSON.stringify({ area, check, result: String(result) } satisfies Fact)}\n`);
}

export function formatSummary(file: string): string {
  let facts: Fact[] = [];
  try {
    facts = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Fact);
  } catch {
    return "";
  }
  if (facts.length === 0) return "";
  const order = [
    "setup",
    "receivers",
    "schedule",
    "faults",
    "isolation",
    "rotation",
    "shards",
    "load",
    "hostile input",
    "console",
    "listen",
  ];
  facts.sort((x, y) => order.indexOf(x.area) - order.indexOf(y.area));
  const width = (k: keyof Fact) => Math.max(k.length, ...facts.map((f) => f[k].length));
  const [a, c, r] = [width("area"), width("check"), width("result")];
  const row = (f: Fact) => `| ${f.area.padEnd(a)} | ${f.check.padEnd(c)} | ${f.result.padEnd(r)} |`;
  return [
    `Reliability summary (${new Date().toISOString().slice(0, 10)}, wrangler dev, schedule 1 s/2 s, timeout 2 s)`,
    row({ area: "area", check: "check", result: "result" }),
    `| ${"-".repeat(a)} | ${"-".repeat(c)} | ${"-".repeat(r)} |`,
    ...facts.map(row),
  ].join("\n");
}

declare module "vitest" {
  export interface ProvidedContext {
    summaryFile: string;
  }
}
