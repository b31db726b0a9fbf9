import { describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types; its JSDoc says what it takes.
import { devArgs } from "../../scripts/dev-args.mjs";

/** `npm run dev` arguments: its own port, and everything else passed on to wrangler. */

describe("npm run dev arguments", () => {
  it("takes the port from --port, --port=, PORT, or 8787, and passes the rest on once", () => {
    expect(devArgs(["--port", "8799", "--var", "A:1"], {})).toEqual({
      port: "8799",
      persistTo: null,
      rest: ["--var", "A:1"],
    });
    expect(devArgs(["--port=8800"], { PORT: "9000" })).toMatchObject({ port: "8800", rest: [] });
    expect(devArgs([], { PORT: "9000" })).toMatchObject({ port: "9000" });
    expect(devArgs([], {})).toMatchObject({ port: "8787" });
  });

  it("hands --persist-to to the migrations too, and still to wrangler", () => {
    expect(devArgs(["--persist-to", "/tmp/state"], {})).toEqual({
      port: "8787",
      persistTo: "/tmp/state",
      rest: ["--persist-to", "/tmp/state"],
    });
  });

  it.each([["--port", "eighty"], ["--port"], ["--port", "70000"]])("refuses %s %s clearly", (...args) => {
    expect(devArgs(args, {})).toEqual({ error: expect.stringContaining("Not a port") });
  });
});
