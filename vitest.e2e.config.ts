import { defineConfig } from "vitest/config";

/**
 * End-to-end: the real `wrangler dev` (started once by the global setup), real
 * receivers, real HTTP, driven from Node like a producer and customers would.
 */
export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    environment: "node",
    globalSetup: ["./test/e2e/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One dispatcher serves every file; files run one at a time so timings stay honest.
    fileParallelism: false,
  },
});
