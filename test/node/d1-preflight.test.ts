import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types; its JSDoc says what it takes.
import { sqlPreflight } from "../../scripts/d1-preflight.mjs";

/** What `npm run deploy` asks of each D1 database before migrating it (scripts/migrate.mjs). */

const persistTo = mkdtempSync(join(tmpdir(), "d1-preflight-"));
afterAll(() => rmSync(persistTo, { recursive: true, force: true }));
const local = { mode: "--local", config: "wrangler.toml", persistTo };

describe("the D1 preflight", () => {
  it("passes a database that runs unhex, as workerd's SQLite does", () => {
    expect(sqlPreflight("DB", local)).toBeNull();
  }, 60_000);

  it("says which database failed, and wrangler's reason", () => {
    expect(sqlPreflight("DB_NOPE", local)).toMatch(/^DB_NOPE: .* did not answer 00FF.*Couldn't find a D1 DB/);
  }, 60_000);
});
