import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/api/errors";
import { CONFIG_DEFAULTS, parseConfig } from "../../src/config";
import {
  BULK_LANE_QUEUE,
  FAST_LANE_QUEUE,
  laneOfQueue,
  OVERFLOW_LANE_QUEUE,
  SLOW_LANE_QUEUE,
} from "../../src/delivery/lanes";
import { SWEEP_CRON } from "../../src/delivery/sweep";
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

/** The `| \`NAME\` | \`default\` | …` rows of a configuration table ("(empty)": an empty default). */
function configRows(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const [, name, value] of text.matchAll(/^\| `([A-Z_]+)`\s*\| (?:`([^`]*)`|\(empty\))\s*\|/gm)) {
    rows.set(name!, value ?? "");
  }
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

describe("the customer doc's schedule", () => {
  it("is what the code does by default: a 10 s timeout, retries after 60 s and 5 min, 3 attempts", () => {
    const config = parseConfig(CONFIG_DEFAULTS);
    expect(config.attemptTimeoutMs).toBe(10_000);
    expect(config.retryDelaysSeconds).toEqual([60, 300]);
    expect(config.retryDelaysSeconds.length + 1).toBe(3);
    // The seed says so in these words; a changed default would have to change them too.
    const seed = read("docs/customer-webhooks.txt");
    for (const words of ["within 10 seconds", "| 1st retry | 60 seconds |", "| 2nd retry | 5 minutes |"]) {
      expect(seed).toContain(words);
    }
    expect(seed).toContain("| After 3 failures | Marked failed");
  });
});

describe("the README and wrangler.toml", () => {
  it("README's configuration table has every var with the code's default", () => {
    expect(Object.fromEntries(configRows(readme))).toEqual(CONFIG_DEFAULTS);
  });

  it("wrangler.toml sets the defaults as its [vars], and LOG_SHARDS to its D1 bindings", () => {
    const config = parse(read("wrangler.toml")) as {
      vars: Record<string, string>;
      d1_databases: Array<{ binding: string; migrations_dir: string }>;
    };
    const { LOG_SHARDS, ...vars } = config.vars;
    const { LOG_SHARDS: _, ...defaults } = CONFIG_DEFAULTS;
    expect(vars).toEqual(defaults);
    // Local dev and CI run the sharded path: at least two shards, every D1 binding one
    // of them, every shard with the one schema.
    const shards = LOG_SHARDS!.split(",");
    expect(shards.length).toBeGreaterThanOrEqual(2);
    expect(config.d1_databases.map((d) => d.binding)).toEqual(shards);
    expect(new Set(config.d1_databases.map((d) => d.migrations_dir))).toEqual(new Set(["migrations"]));
  });

  it("schedules the stall sweep every minute as the code names it, and retention as the other cron", () => {
    // The scheduled handler runs the sweep for SWEEP_CRON and retention for any other:
    // a sweep cron spelled differently here would run retention every minute, and no sweep.
    const { triggers } = parse(read("wrangler.toml")) as { triggers: { crons: string[] } };
    expect(triggers.crons).toHaveLength(2);
    expect(triggers.crons.filter((cron) => cron === SWEEP_CRON)).toHaveLength(1);
    expect(triggers.crons.find((cron) => cron !== SWEEP_CRON)).toBe("*/10 * * * *"); // retention
  });

  it("README's deploy steps create every queue wrangler.toml names, and the code reads each as a lane", () => {
    const config = parse(read("wrangler.toml")) as {
      queues: {
        producers: Array<{ binding: string; queue: string }>;
        consumers: Array<{ queue: string; dead_letter_queue?: string }>;
      };
    };
    const named = new Set([
      ...config.queues.producers.map((p) => p.queue),
      ...config.queues.consumers.flatMap((c) => [c.queue, ...(c.dead_letter_queue ? [c.dead_letter_queue] : [])]),
    ]);
    const created = [...readme.matchAll(/^npx wrangler queues create (\S+)/gm)].map((m) => m[1]);
    expect(created.sort()).toEqual([...named].sort());
    // Every lane has its consumer, and every consumer but the dead letters' is a lane (the
    // consumer refuses other queues); each producer binding sends to the lane the code means.
    const deadLetters = new Set(config.queues.consumers.map((c) => c.dead_letter_queue));
    const lanes = config.queues.consumers.map((c) => c.queue).filter((queue) => !deadLetters.has(queue));
    expect(lanes.sort()).toEqual([FAST_LANE_QUEUE, BULK_LANE_QUEUE, OVERFLOW_LANE_QUEUE, SLOW_LANE_QUEUE].sort());
    for (const queue of lanes) expect(() => laneOfQueue(queue)).not.toThrow();
    // The bulk lane is the fast lane for an org's events beyond FAST_LANE_ORG_LIMIT: the same settings.
    const { queue: _fast, ...fast } = config.queues.consumers.find((c) => c.queue === FAST_LANE_QUEUE)!;
    const { queue: _bulk, ...bulk } = config.queues.consumers.find((c) => c.queue === BULK_LANE_QUEUE)!;
    expect(bulk).toEqual(fast);
    expect(Object.fromEntries(config.queues.producers.map((p) => [p.binding, p.queue]))).toEqual({
      DELIVERIES: FAST_LANE_QUEUE,
      DELIVERIES_BULK: BULK_LANE_QUEUE,
      DELIVERIES_SLOW: SLOW_LANE_QUEUE,
      DELIVERIES_OVERFLOW: OVERFLOW_LANE_QUEUE,
    });
  });

  it("deploys with Cloudflare's SSRF guard: webhook POSTs never take a zone's private path to its origin", () => {
    // Local workerd has no zones, so only the deployed Worker shows the difference.
    const config = parse(read("wrangler.toml")) as { compatibility_flags: string[] };
    expect(config.compatibility_flags).toContain("global_fetch_strictly_public");
  });
});

describe("the D1 schema", () => {
  it("allows exactly the attempt errors the code logs", () => {
    const check = /error\s+TEXT\s+CHECK \(error IN \(([^)]*)\)\)/.exec(read("migrations/0001_initial.sql"))![1]!;
    expect([...check.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]).sort()).toEqual([...ATTEMPT_ERRORS].sort());
  });
});

describe("migrations", () => {
  /**
   * D1 records a migration as applied by its file name: an edit to one that landed never
   * reaches a database that applied it, so the schemas would drift apart. Changes are
   * new, numbered files; this list grows with each one that lands.
   */
  const LANDED: Record<string, string> = {
    "0001_initial.sql": "e6636145991b9fd0bf32589a71a445606797fb7bd443ea812968f6393a94d67b",
    "0002_error_detail_and_pending.sql": "b6e3b49fa553516adb48be3ed64d60ea51045ff4e26d129a727471cc0ead4f25",
    "0003_api_key_last_used.sql": "7fd07b7ce3a0ab10d6dc5969a1fd21aa7e94bd2f88c14b90049aeff41aec30b7",
    "0004_retention_progress.sql": "26c55be5cfe22f268d8e7aaa9c2509823952c90e7dcf6090c51507fd69aeca87",
    "0005_pending_by_org.sql": "62ea779addf98f587a09b9edce510308cb9813f9a05dc21c9ff4b2a27da895f5",
  };

  it("keeps every landed migration byte for byte", () => {
    for (const [file, sha256] of Object.entries(LANDED)) {
      expect(
        createHash("sha256")
          .update(read(`migrations/${file}`))
          .digest("hex"),
        file,
      ).toBe(sha256);
    }
  });

  it("numbers migrations in order, with no gap and no two alike", () => {
    const files = readdirSync(new URL("../../migrations/", import.meta.url)).filter((f) => f.endsWith(".sql"));
    expect(files.map((f) => Number(f.slice(0, 4)))).toEqual(files.map((_, i) => i + 1));
  });
});
