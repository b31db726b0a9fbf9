import { spawn } from "node:child_process";
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

describe("npm run dev", () => {
  it("starts on the port given with --port, and its index links the console, reference and OpenAPI", async () => {
    const [port, inspector] = [await freePort(), await freePort()];
    const state = mkdtempSync(join(tmpdir(), "zupertry-dev-"));
    const child = spawn(
      "npm",
      ["run", "dev", "--", "--port", String(port), "--persist-to", state, "--inspector-port", String(inspector)],
      { cwd: root, detached: true, stdio: "ignore", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
    );
    try {
      const index = await until(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/`).catch(() => null);
        return res?.ok ? ((await res.json()) as { links: Record<string, string> }) : undefined;
      }, 90_000);
      expect(index.links).toEqual({
        console: "/console/",
        docs: "/docs/",
        openapi: "/openapi.json",
        health: "/health",
      });
      for (const path of Object.values(index.links)) {
        expect((await fetch(`http://127.0.0.1:${port}${path}`)).status, path).toBe(200);
      }
      record("setup", "npm run dev -- --port <a free port>", "up; / links console, docs, OpenAPI, health");
    } finally {
      await stopProcess(child);
    }
  }, 120_000);
});
