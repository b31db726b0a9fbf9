import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort, root, stopProcess } from "../../scripts/wrangler-dev";
import { until } from "./support/client";
import { record } from "./support/summary";

/**
 * `npm run dev` as the README gives it, on a port of the user's choosing: 8787 may be
 * taken. (It used to pass `--port` to wrangler twice, which refused to start.)
 */

interface Dev {
  child: ChildProcess;
  port: number;
  /** What it printed so far: a failure shows it. */
  output: () => string;
  /** Its exit code, once it has exited. */
  exited: () => number | null;
}

async function startDev(): Promise<Dev> {
  const [port, inspector] = [await freePort(), await freePort()];
  const state = mkdtempSync(join(tmpdir(), "zupertry-dev-"));
  const child = spawn(
    "npm",
    ["run", "dev", "--", "--port", String(port), "--persist-to", state, "--inspector-port", String(inspector)],
    {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    },
  );
  const output: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk) => output.push(String(chunk)));
  let exited: number | null = null;
  child.once("exit", (code) => (exited = code ?? -1));
  return { child, port, output: () => output.join("").slice(-4000), exited: () => exited };
}

/** Its index once it answers; throws with what it printed if it exits first or never answers. */
async function indexOf(dev: Dev): Promise<{ links: Record<string, string> }> {
  try {
    return await until(async () => {
      if (dev.exited() !== null) throw new Error(`npm run dev exited with ${dev.exited()} before it answered`);
      const res = await fetch(`http://127.0.0.1:${dev.port}/`).catch(() => null);
      return res?.ok ? ((await res.json()) as { links: Record<string, string> }) : undefined;
    }, 90_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- npm run dev printed ---\n${dev.output()}`);
  }
}

describe("npm run dev", () => {
  it("starts on the port given with --port, and its index links the console, reference and OpenAPI", async () => {
    let dev = await startDev();
    try {
      let index: { links: Record<string, string> };
      try {
        index = await indexOf(dev);
      } catch (error) {
        // A port found free can be taken before wrangler binds it; only that is tried again.
        if (!/EADDRINUSE|address already in use/i.test(dev.output())) throw error;
        await stopProcess(dev.child);
        dev = await startDev();
        index = await indexOf(dev);
      }
      expect(index.links).toEqual({
        console: "/console/",
        docs: "/docs/",
        openapi: "/openapi.json",
        health: "/health",
      });
      for (const path of Object.values(index.links)) {
        expect((await fetch(`http://127.0.0.1:${dev.port}${path}`)).status, path).toBe(200);
      }
      record("setup", "npm run dev -- --port <a free port>", "up; / links console, docs, OpenAPI, health");
    } finally {
      await stopProcess(dev.child);
    }
  }, 200_000);
});
