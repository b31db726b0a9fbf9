import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/api/errors";
import { CONFIG_DEFAULTS } from "../../src/config";
import { ATTEMPT_ERRORS } from "../../src/store/attempts";

/**
 * The lists that can drift, held against the code: docs/DESIGN.md (the contract), the
 * README, wrangler.toml and the schema say what the code does, or this fails.
 */

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");
const design = read("docs/DESIGN.md");
const readme = read("README.md");

/** The backticked words of the first paragraph that starts with `lead`. */
function listAfter(text: string, lead: string): string[] {
  const start = text.indexOf(lead);
  expect(start, `"${lead}" in the document`).toBeGreaterThan(-1);
  const paragraph = text.slice(start + lead.length).split(/\n\n|;\n/)[0]!;
  return [...paragraph.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
}

/** The `| \`NAME\` | \`default\` | …` rows of a configuration table. */
function configRows(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const [, name, value] of text.matchAll(/^\| `([A-Z_]+)`\s*\| `([^`]*)`\s*\|/gm)) rows.set(name!, value!);
  return rows;
}

describe("docs/DESIGN.md, the contract", () => {
  it("lists every error code the API answers, and no other", () => {
    expect(listAfter(design, "Error codes:").sort()).toEqual([...ERROR_CODES].sort());
  });

  it("lists every attempt error the log stores, and no other", () => {
    expect(listAfter(design, "`error` is one of").sort()).toEqual([...ATTEMPT_ERRORS].sort());
  });

  it("has the configuration table of the code: every var, its default", () => {
    expect(Object.fromEntries(configRows(design))).toEqual(CONFIG_DEFAULTS);
  });
});

describe("the README and wrangler.toml", () => {
  it("README's configuration table has every var with the code's default", () => {
    expect(Object.fromEntries(configRows(readme))).toEqual(CONFIG_DEFAULTS);
  });

  it("wrangler.toml sets exactly the defaults as its [vars]", () => {
    expect((parse(read("wrangler.toml")) as { vars: Record<string, string> }).vars).toEqual(CONFIG_DEFAULTS);
  });
});

describe("the D1 schema", () => {
  it("allows exactly the attempt errors the code logs", () => {
    const check = /error\s+TEXT\s+CHECK \(error IN \(([^)]*)\)\)/.exec(read("migrations/0001_initial.sql"))![1]!;
    expect([...check.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]).sort()).toEqual([...ATTEMPT_ERRORS].sort());
  });
});
