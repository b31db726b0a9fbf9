import { defineConfig } from "vitest/config";

/**
 * Node-side checks that need no runtime: the documents held against the code (the
 * contract's lists, the config table) and the project's own scripts. Workerd tests are
 * in vitest.config.ts; the end-to-end suite against `wrangler dev` in vitest.e2e.config.ts.
 */
export default defineConfig({
  test: {
    include: ["test/node/**/*.test.ts"],
    environment: "node",
    // The CLI's two files mostly wait on real timeouts (15 s of them), not the CPU: two at a
    // time on a 2-core CI machine, where the default runs one file at a time. (No more: the
    // D1 preflight's wrangler runs beside them, and their timing checks need the CPU.)
    maxWorkers: 2,
  },
});
