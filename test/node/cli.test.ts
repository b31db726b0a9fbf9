import { describe, expect, it } from "vitest";
// @ts-expect-error: plain ES modules checked by tsc through JSDoc (cli/tsconfig.json), no .d.ts.
import { credentials } from "../../cli/api.mjs";
// @ts-expect-error: as above.
import { main } from "../../cli/zupertry.mjs";
import { freePort } from "../../scripts/wrangler-dev";

/** The CLI's own rules, before it talks to a dispatcher (test/e2e/cli.test.ts runs it for real). */

async function run(args: string[], env: Record<string, string> = {}) {
  const lines: string[] = [];
  const code = await main(args, { env, out: (line: string) => lines.push(line) });
  return { code, text: lines.join("\n") };
}

describe("zupertry", () => {
  it("prints its usage with --help (exit 0) and without a command (exit 2)", async () => {
    expect(await run(["--help"])).toMatchObject({ code: 0, text: expect.stringContaining("zupertry listen") });
    expect(await run([])).toMatchObject({ code: 2, text: expect.stringContaining("zupertry trigger") });
  });

  it("says what is missing, with exit code 2, before any request", async () => {
    expect(await run(["listen", "--forward-to", "http://localhost:3000/hook"])).toEqual({
      code: 2,
      text: "No API key: pass --api-key zk_… or set ZUPERTRY_API_KEY.",
    });
    const env = { ZUPERTRY_API_KEY: "zk_abcdefghijklmnopqrstuvwxyz" };
    expect(await run(["listen"], env)).toMatchObject({ code: 2, text: expect.stringContaining("--forward-to") });
    expect(await run(["listen", "--forward-to", "localhost:3000"], env)).toMatchObject({ code: 2 });
    expect(await run(["trigger", "job.started"], env)).toMatchObject({
      code: 2,
      text: "trigger takes job.completed or job.failed, not job.started",
    });
    expect(await run(["deploy"], env)).toMatchObject({ code: 2, text: expect.stringContaining("Unknown command") });
    expect(await run(["logs", "--bogus"], env)).toMatchObject({ code: 2, text: expect.stringContaining("bogus") });
    expect(await run(["logs", "--follow", "--until", "2026-03-19T10:00:00Z"], env)).toEqual({
      code: 2,
      text: "logs --follow shows attempts as they come: it takes no --until.",
    });
  });

  it("says a mistyped command is unknown (exit 2) before asking for a key", async () => {
    expect(await run(["lsten", "--forward-to", "http://localhost:3000/hook"])).toMatchObject({
      code: 2,
      text: expect.stringMatching(/^Unknown command: lsten\n/),
    });
  });

  it("lists --until with the other filters of `logs`", async () => {
    expect((await run(["--help"])).text).toMatch(/--until <ISO time> +logs: attempts before then/);
  });

  it("takes the key and URL from flags first, then the environment", () => {
    const env = { ZUPERTRY_API_KEY: "zk_env", ZUPERTRY_API_URL: "https://hooks.example.com/" };
    expect(credentials({}, env)).toEqual({ apiKey: "zk_env", apiUrl: "https://hooks.example.com" });
    expect(credentials({ "api-key": "zk_flag", "api-url": "http://127.0.0.1:8799" }, env)).toEqual({
      apiKey: "zk_flag",
      apiUrl: "http://127.0.0.1:8799",
    });
    expect(credentials({}, {})).toEqual({ error: expect.stringContaining("No API key") });
    expect(credentials({ "api-key": "whsec_x" }, {})).toEqual({ error: expect.stringContaining("start with zk_") });
    expect(credentials({ "api-key": "zk_x", "api-url": "ftp://x" }, {})).toEqual({
      error: expect.stringContaining("Not an API URL"),
    });
    // The key travels in the clear over http://: only to this machine.
    for (const local of ["http://localhost:8787", "http://127.0.0.1:8787", "http://[::1]:8787"]) {
      expect(credentials({ "api-key": "zk_x", "api-url": local }, {})).toEqual({ apiKey: "zk_x", apiUrl: local });
    }
    for (const remote of ["http://hooks.example.com", "http://10.0.0.5:8787", "http://127.0.0.1.example.com"]) {
      expect(credentials({ "api-key": "zk_x", "api-url": remote }, {})).toEqual({
        error: expect.stringContaining("Refusing to send the API key over plain http://"),
      });
    }
  });

  it("an unreachable dispatcher is exit code 1 with the reason, not a stack trace", async () => {
    const url = `http://127.0.0.1:${await freePort()}`; // free: nothing listens there
    const env = { ZUPERTRY_API_KEY: "zk_abcdefghijklmnopqrstuvwxyz", ZUPERTRY_API_URL: url };
    const { code, text } = await run(["trigger", "job.completed"], env);
    expect(code).toBe(1);
    expect(text).toBe(`Could not reach ${url}: ECONNREFUSED (connect ECONNREFUSED ${url.slice(7)})`);
  });
});
