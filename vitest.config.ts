import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

/**
 * Unit and integration tests, inside workerd with the real bindings of wrangler.toml
 * (D1, the queues, the OrgSettings Durable Object). The end-to-end suite against
 * `wrangler dev` has its own config: vitest.e2e.config.ts.
 */
const PRODUCER_TOKEN = "test-producer-token";
const OPERATOR_TOKEN = "test-operator-token";
// wrangler.toml requires the secrets; wrangler reads them from the environment (and warns
// once per test file when one is missing). The tests use fixed ones.
process.env.PRODUCER_TOKEN ??= PRODUCER_TOKEN;
process.env.OPERATOR_TOKEN ??= OPERATOR_TOKEN;

export default defineConfig(async () => ({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        // `exports.default.queue()` in tests (experimental, test-only flag).
        compatibilityFlags: ["service_binding_extra_handlers"],
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations("migrations"),
          PRODUCER_TOKEN,
          OPERATOR_TOKEN,
          // The test receiver is a Node server on 127.0.0.1.
          ALLOW_INSECURE_WEBHOOK_URLS: "true",
          ATTEMPT_TIMEOUT_MS: "1000",
          // Past the timeout: no hand-offs unless a test asks for them (test/workerd/lanes.test.ts).
          SLOW_ATTEMPT_MS: "5000",
        },
        // Messages sent through the real queue reach the consumer quickly.
        queueConsumers: { deliveries: { maxBatchTimeout: 0.05 }, "deliveries-bulk": { maxBatchTimeout: 0.05 } },
      },
    }),
  ],
  test: {
    include: ["test/workerd/**/*.test.ts"],
    setupFiles: ["./test/workerd/apply-migrations.ts"],
    globalSetup: ["./test/support/global-setup.ts"],
    // Property tests make hundreds of requests; CI runs files in parallel on 2 cores.
    testTimeout: 30_000,
    // The Worker logs a JSON line per batch; show logs only for failing tests, and
    // never the routine batch summaries.
    silent: "passed-only" as const,
    onConsoleLog: (log: string) => !log.includes('"event":"deliveries.batch"'),
  },
}));
