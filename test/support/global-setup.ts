import type { TestProject } from "vitest/node";
import { Receiver } from "./receiver";

/**
 * Starts the programmable receivers for the whole workerd suite (see receiver.ts): two,
 * on two ports, because endpoint health is per origin and some tests need two endpoints.
 */
export default async function setup(project: TestProject) {
  const [first, second] = [new Receiver(), new Receiver()];
  project.provide("receiverUrl", await first.start());
  project.provide("secondReceiverUrl", await second.start());
  return async () => {
    await Promise.all([first.stop(), second.stop()]);
  };
}
