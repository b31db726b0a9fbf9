import type { TestProject } from "vitest/node";
import { Receiver } from "./receiver";

/** Starts one programmable receiver for the whole workerd suite (see receiver.ts). */
export default async function setup(project: TestProject) {
  const receiver = new Receiver();
  project.provide("receiverUrl", await receiver.start());
  return () => receiver.stop();
}
