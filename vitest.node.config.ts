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
  },
});
