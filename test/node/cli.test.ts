import { describe, expect, it } from "vitest";
// @ts-expect-error: plain ES modules checked by tsc through JSDoc (cli/tsconfig.json), no .d.ts.
import { credentials } from "../../cli/api.mjs";
// @ts-expect-error: as above.
import { main } from "../../cli/zupertry.mjs";
import { freePort } from "../../scripts/wrangler-dev";

/** The CLI's own rules, before it talks to a dispatcher (test/e2e/cli.test.ts runs it for real). */

const KEY = "zk_q8F0cQk1gD9c2m3x8T4pVn7aLw0eRzYb5uJ6hN1sK2o";

/** `out`: what the command printed (stdout); `err`: what it said beside it (stderr). */
async function run(args: string[], env: Record<string, string> = {}, signal?: AbortSignal) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, {
    env,
    out: (line: string) => out.push(line),
    err: (line: string) => err.push(line),
    signal,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** A usage mistake: exit 2, said on stderr, nothing on stdout. */
const usage = (said: string | RegExp) => ({
  code: 2,
  out: "",
  err: typeof said === "string" ? said : expect.stringMatching(said),
});

describe("zupertry", () => {
  it("prints its usage with --help (exit 0, stdout) and without a command (exit 2, stderr)", async () => {
    expect(await run(["--help"])).toMatchObject({ code: 0, out: expect.stringContaining("zupertry listen"), err: "" });
    expect(await run([])).toMatchObject(usage(/zupertry trigger/));
  });

  it("says what is missing, with exit code 2 on stderr, before any request", async () => {
    expect(await run(["listen", "--forward-to", "http://localhost:3000/hook"])).toEqual(
      usage("No API key: pass --api-key zk_… or set ZUPERTRY_API_KEY."),
    );
    const env = { ZUPERTRY_API_KEY: KEY };
    expect(await run(["listen"], env)).toEqual(usage(/--forward-to/));
    expect(await run(["listen", "--forward-to", "localhost:3000"], env)).toEqual(usage(/not an http:\/\/ or https:/));
    expect(await run(["trigger", "job.started"], env)).toEqual(
      usage("trigger takes job.completed or job.failed, not job.started"),
    );
    expect(await run(["deploy"], env)).toEqual(usage(/^Unknown command/));
    expect(await run(["logs", "--bogus"], env)).toEqual(usage(/bogus/));
    expect(await run(["logs", "--follow", "--until", "2026-03-19T10:00:00Z"], env)).toEqual(
      usage("logs --follow shows attempts as they come: it takes no --until."),
    );
  });

  it("says a mistyped command is unknown (exit 2) before asking for a key", async () => {
    expect(await run(["lsten", "--forward-to", "http://localhost:3000/hook"])).toEqual(
      usage(/^Unknown command: lsten\n/),
    );
  });

  it("refuses another command's option rather than ignore it", async () => {
    const env = { ZUPERTRY_API_KEY: KEY };
    expect(await run(["trigger", "--event-type", "job.failed"], env)).toEqual(
      usage("--event-type is not an option of zupertry trigger (zupertry trigger --help lists what it takes)."),
    );
    expect(await run(["logs", "--forward-to", "http://localhost:3000/hook"], env)).toEqual(
      usage(/^--forward-to is not an option of zupertry logs \(zupertry logs --help/),
    );
    expect(await run(["listen", "--forward-to", "http://localhost:3000/hook", "-f"], env)).toEqual(
      usage(/^--follow is not an option of zupertry listen/),
    );
  });

  it("refuses an argument too many rather than ignore it", async () => {
    const env = { ZUPERTRY_API_KEY: KEY };
    expect(await run(["logs", "job_abc123"], env)).toEqual(
      usage("Unexpected argument for zupertry logs: job_abc123 (zupertry logs --help lists what it takes)."),
    );
    expect(await run(["trigger", "job.failed", "job.completed"], env)).toEqual(
      usage(/^Unexpected argument for zupertry trigger: job\.completed /),
    );
    expect(await run(["listen", "http://localhost:3000/hook"], env)).toEqual(
      usage(/^Unexpected argument for zupertry listen: http:\/\/localhost:3000\/hook /),
    );
  });

  it("refuses an empty value: a filter left empty would list everything", async () => {
    const env = { ZUPERTRY_API_KEY: KEY };
    expect(await run(["logs", "--job-id="], env)).toEqual(
      usage("--job-id was given an empty value (zupertry logs --help lists what it takes)."),
    );
    expect(await run(["logs", "--outcome", " "], env)).toEqual(usage(/^--outcome was given an empty value/));
    expect(await run(["listen", "--forward-to="], env)).toEqual(usage(/^--forward-to was given an empty value/));
  });

  it("takes --forward-to only as a URL a delivery can be POSTed to, its scheme in any case", async () => {
    const env = { ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: `http://127.0.0.1:${await freePort()}` };
    // Refused at once; taken, each would run (and fail every delivery) until the signal stops it.
    const listen = (to: string) => run(["listen", "--forward-to", to], env, AbortSignal.timeout(1_000));
    for (const wrong of ["http://localhost:3000:4000/hook", "ftp://localhost/hook", "http//localhost:3000"]) {
      expect(await listen(wrong)).toEqual(usage(/^--forward-to .* should be like/));
    }
    expect(await listen("http://me:secret@localhost:3000/hook")).toEqual(
      usage(/^--forward-to takes no user:password@/),
    );
    // Accepted: it goes on to the dispatcher (unreachable here) until Ctrl+C.
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 300);
    const { code, err } = await run(["listen", "--forward-to", "HTTP://LOCALHOST:3000/hook"], env, stop.signal);
    expect(code).toBe(0);
    expect(err).toMatch(/^Cannot reach http:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/);
  });

  it("lists --until with the other filters of `logs`", async () => {
    expect((await run(["--help"])).out).toMatch(/--until <ISO time> +logs: attempts before then/);
  });

  it("takes the key and URL from flags first, then the environment", () => {
    const env = { ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: "https://hooks.example.com/" };
    expect(credentials({}, env)).toEqual({ apiKey: KEY, apiUrl: "https://hooks.example.com" });
    const other = `zk_${"A".repeat(43)}`;
    expect(credentials({ "api-key": other, "api-url": "http://127.0.0.1:8799" }, env)).toEqual({
      apiKey: other,
      apiUrl: "http://127.0.0.1:8799",
    });
    expect(credentials({}, {})).toEqual({ error: expect.stringContaining("No API key") });
    expect(credentials({ "api-key": "whsec_x" }, {})).toEqual({ error: expect.stringContaining("start with zk_") });
    expect(credentials({ "api-key": KEY, "api-url": "ftp://x" }, {})).toEqual({
      error: expect.stringContaining("Not an API URL"),
    });
    // The key travels in the clear over http://: only to this machine.
    for (const local of ["http://localhost:8787", "http://127.0.0.1:8787", "http://[::1]:8787"]) {
      expect(credentials({ "api-key": KEY, "api-url": local }, {})).toEqual({ apiKey: KEY, apiUrl: local });
    }
    for (const remote of ["http://hooks.example.com", "http://10.0.0.5:8787", "http://127.0.0.1.example.com"]) {
      expect(credentials({ "api-key": KEY, "api-url": remote }, {})).toEqual({
        error: expect.stringContaining("Refusing to send the API key over plain http://"),
      });
    }
  });

  it("trims a key and URL from a .env with CRLF line ends", () => {
    const env = { ZUPERTRY_API_KEY: `${KEY}\r`, ZUPERTRY_API_URL: "https://hooks.example.com\r" };
    expect(credentials({}, env)).toEqual({ apiKey: KEY, apiUrl: "https://hooks.example.com" });
    expect(credentials({ "api-key": `  ${KEY} ` }, {})).toMatchObject({ apiKey: KEY });
  });

  it("refuses a key that is not whole (zk_ and 43 base64url characters), exit 2, before any request", async () => {
    expect(credentials({ "api-key": KEY.slice(0, -1) }, {})).toEqual({
      error: "That is not a whole org API key: a key is zk_ and 43 letters, digits, - or _; this one has 42.",
    });
    expect(credentials({ "api-key": `${KEY.slice(0, -1)}=` }, {})).toEqual({
      error:
        "That is not a whole org API key: a key is zk_ and 43 letters, digits, - or _; " +
        "this one has another character among them.",
    });
    expect(await run(["logs"], { ZUPERTRY_API_KEY: `${KEY}x` })).toEqual(usage(/^That is not a whole org API key/));
  });

  it("an unreachable dispatcher is exit code 1 with the reason, not a stack trace", async () => {
    const url = `http://127.0.0.1:${await freePort()}`; // free: nothing listens there
    const env = { ZUPERTRY_API_KEY: KEY, ZUPERTRY_API_URL: url };
    expect(await run(["trigger", "job.completed"], env)).toEqual({
      code: 1,
      out: "",
      err: `Could not reach ${url}: ECONNREFUSED (connect ECONNREFUSED ${url.slice(7)})`,
    });
  });
});
