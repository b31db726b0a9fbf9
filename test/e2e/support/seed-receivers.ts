import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { freePort, stopProcess } from "./dispatcher";

/** A customer's receiver, started from test/e2e/receivers as its own process. */
export interface SeedReceiver {
  url: string;
  /** One entry per request it answered, in order. */
  answers: Array<{ status: number; delivery: string | null; attempt: string | null }>;
  stop(): Promise<void>;
}

const receivers = new URL("../receivers/", import.meta.url).pathname;

export async function startExpressSeed(secret: string, port?: number): Promise<SeedReceiver> {
  port ??= await freePort();
  const child = spawn(process.execPath, [`${receivers}express-seed.cjs`], {
    env: { ...process.env, PORT: String(port), ZUPERTRY_WEBHOOK_SECRET: secret },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const answers: SeedReceiver["answers"] = [];
  const ready = new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`express receiver exited with ${code}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if ("listening" in parsed) resolve();
      else answers.push(parsed as SeedReceiver["answers"][number]);
    });
  });
  await ready;
  return { url: `http://127.0.0.1:${port}/webhooks/zupertry`, answers, stop: () => stopProcess(child) };
}
