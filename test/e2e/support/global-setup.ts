import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { type Dispatcher, startDispatcher } from "../../../scripts/wrangler-dev";
import { Receiver } from "../../support/receiver";
import { formatSummary } from "./summary";

/**
 * One `wrangler dev` for the e2e suite, with the schedule and timeout shortened by
 * `--var` (1 s and 2 s instead of 60 s and 300 s), one programmable receiver, and the
 * reliability summary printed at the end.
 */
export const E2E_VARS = {
  RETRY_DELAYS_SECONDS: "1,2",
  ATTEMPT_TIMEOUT_MS: "2000",
  ALLOW_INSECURE_WEBHOOK_URLS: "true",
};

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), "zupertry-e2e-summary-"));
  const summaryFile = join(dir, "facts.jsonl");
  project.provide("summaryFile", summaryFile);
  const receiver = new Receiver();
  project.provide("receiverUrl", await receiver.start());
  let dispatcher: Dispatcher;
  try {
    dispatcher = await startDispatcher(E2E_VARS);
  } catch (error) {
    // No teardown runs after a failed setup: what it started goes now.
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  project.provide("dispatcherUrl", dispatcher.url);
  project.provide("producerToken", dispatcher.producerToken);
  project.provide("operatorToken", dispatcher.operatorToken);
  return async () => {
    await dispatcher.stop();
    await receiver.stop();
    const summary = formatSummary(summaryFile);
    if (summary) console.log(`\n${summary}\n`);
    rmSync(dir, { recursive: true, force: true });
  };
}
