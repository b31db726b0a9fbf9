// The SQL this Worker needs beyond what every SQLite has, tried on a D1 database before
// `npm run deploy` migrates it: `unhex` (SQLite 3.41+), which the consumer's log writes
// use to store BLOBs sent as hex (src/store/attempts.ts). workerd's SQLite, which local
// runs and the tests use, has it. A database without it would fail every log write, and
// every delivery would wait in the queue, so the deploy stops before anything changes.
import { spawnSync } from "node:child_process";

const PROBE = "SELECT hex(unhex('00ff')) AS h";

/**
 * Null when `binding` runs the SQL the Worker needs; else why not, in a sentence.
 *
 * @param {string} binding a `[[d1_databases]]` binding of `config`
 * @param {{ mode: "--local" | "--remote", config: string, persistTo?: string, env?: NodeJS.ProcessEnv }} options
 * @returns {string | null}
 */
export function sqlPreflight(binding, { mode, config, persistTo, env = process.env }) {
  const args = ["wrangler", "d1", "execute", binding, mode, "--config", config, "--json", "--command", PROBE];
  if (persistTo) args.push("--persist-to", persistTo);
  const result = spawnSync("npx", args, { encoding: "utf8", env });
  let answer = null;
  try {
    answer = JSON.parse(result.stdout);
  } catch {
    // not JSON: wrangler failed before it ran anything
  }
  if (result.status === 0 && answer?.[0]?.results?.[0]?.h === "00FF") return null;
  const said =
    answer?.error?.text ??
    result.error?.message ??
    (result.stderr || result.stdout || "").trim().split("\n").slice(-3).join(" ");
  return `${binding}: "${PROBE}" did not answer 00FF, so this database cannot take the log's writes: ${said}`;
}
