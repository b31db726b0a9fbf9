import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { freePort, stopProcess } from "../../../scripts/wrangler-dev";

/**
 * Customers' receivers, each started from test/e2e/receivers as its own process with
 * the org's secret in ZUPERTRY_WEBHOOK_SECRET, as a customer would run it. Each prints
 * a JSON line per request it answered.
 */
export interface ReceiverProcess {
  kind: ReceiverKind;
  url: string;
  /** One entry per request it answered, in order. */
  answers: Array<{ status: number; delivery: string | null; attempt: string | null }>;
  stop(): Promise<void>;
}

export type ReceiverKind = "express-seed" | "flask-seed" | "standardwebhooks";

const receivers = fileURLToPath(new URL("../receivers/", import.meta.url));

/**
 * Debian's python3-flask installs for the system interpreter (.ci/run installs it);
 * PYTHON points the tests at another one that has Flask.
 */
export const SYSTEM_PYTHON = process.env.PYTHON || "/usr/bin/python3";

const commands: Record<ReceiverKind, () => [string, string[]]> = {
  "express-seed": () => [process.execPath, [`${receivers}express-seed.cjs`]],
  "flask-seed": () => [SYSTEM_PYTHON, ["-u", `${receivers}flask-seed.py`]],
  standardwebhooks: () => [process.execPath, [`${receivers}standardwebhooks.mjs`]],
};

export async function startReceiver(kind: ReceiverKind, secret: string, port?: number): Promise<ReceiverProcess> {
  port ??= await freePort();
  const [command, args] = commands[kind]();
  const child = spawn(command, args, {
    env: { ...process.env, PORT: String(port), ZUPERTRY_WEBHOOK_SECRET: secret },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const answers: ReceiverProcess["answers"] = [];
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${kind} receiver exited with ${code}:\n${output}`)));
    // Answer lines are JSON objects, on stdout or stderr; anything else is the receiver's own output.
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        output += `${line}\n`;
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          return;
        }
        if (typeof parsed !== "object" || parsed === null) return;
        if ("listening" in parsed) resolve();
        else if ("status" in parsed) answers.push(parsed as ReceiverProcess["answers"][number]);
      });
    }
  });
  return { kind, url: `http://127.0.0.1:${port}/webhooks/zupertry`, answers, stop: () => stopProcess(child) };
}

/** Starts the seed's Express receiver (kept for readability at call sites). */
export const startExpressSeed = (secret: string, port?: number) => startReceiver("express-seed", secret, port);
