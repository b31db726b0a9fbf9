#!/usr/bin/env node
// @ts-check
// zupertry: the Zupertry webhooks CLI for customers building a receiver.
//
//   zupertry listen --forward-to http://localhost:3000/webhooks/zupertry
//   zupertry trigger job.completed|job.failed
//   zupertry logs [--follow] [--job-id ID] [--delivery-id ID] [--event-type T] [--outcome O]
//                 [--since ISO] [--until ISO]
//
// Every command takes --api-key (or ZUPERTRY_API_KEY) and --api-url (or ZUPERTRY_API_URL,
// default http://127.0.0.1:8787).

import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ApiError, call, credentials, notTheApi } from "./api.mjs";
import { listen } from "./listen.mjs";
import { logs } from "./logs.mjs";

const USAGE = `zupertry: your Zupertry webhooks on your laptop

  zupertry listen --forward-to <url>   forward this org's deliveries to a local receiver
  zupertry trigger <event type>         send a test job.completed or job.failed
  zupertry logs [--follow]              the org's delivery attempts, oldest first

Options:
  --api-key <zk_…>     the org API key (default: $ZUPERTRY_API_KEY)
  --api-url <url>      the dispatcher (default: $ZUPERTRY_API_URL or http://127.0.0.1:8787)
  --forward-to <url>   listen: where to POST each delivery
  --follow, -f         logs: keep printing new attempts
  --job-id, --delivery-id, --event-type, --outcome   logs: filters, as the API takes them
  --since <ISO time>   logs: attempts from then on (2026-03-19T10:00:00Z), up to 10,000
  --until <ISO time>   logs: attempts before then (not with --follow)
  --help, -h           this text`;

const EVENT_TYPES = ["job.completed", "job.failed"];
const COMMANDS = ["listen", "trigger", "logs"];

/**
 * @param {string[]} argv
 * @param {{ env?: Record<string, string | undefined>, out?: (line: string) => void,
 *   err?: (line: string) => void, signal?: AbortSignal }} [io] `err`: notes beside the output
 *   (`logs` prints attempts to `out`, and what it says about them here)
 * @returns {Promise<number>} the exit code: 0, 1 (the dispatcher refused or failed), 2 (a usage
 *   mistake: the command line's own, or a flag value the API refused), 130 (Ctrl+C)
 */
export async function main(argv, { env = process.env, out = console.log, err = console.error, signal } = {}) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        "api-key": { type: "string" },
        "api-url": { type: "string" },
        "forward-to": { type: "string" },
        follow: { type: "boolean", short: "f", default: false },
        "job-id": { type: "string" },
        "delivery-id": { type: "string" },
        "event-type": { type: "string" },
        outcome: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    out(`${error instanceof Error ? error.message : error}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    out(USAGE);
    return values.help ? 0 : 2;
  }
  // A typo in the command is said as such, not as the key it did not get to.
  if (!COMMANDS.includes(command)) {
    out(`Unknown command: ${command}\n\n${USAGE}`);
    return 2;
  }
  if (values.follow && values.until) {
    out("logs --follow shows attempts as they come: it takes no --until.");
    return 2;
  }
  const creds = credentials(values, env);
  if ("error" in creds) {
    out(creds.error);
    return 2;
  }
  try {
    switch (command) {
      case "listen": {
        const forwardTo = values["forward-to"];
        if (!forwardTo || !/^https?:\/\//.test(forwardTo)) {
          out("listen needs --forward-to http://localhost:3000/your/webhook/path");
          return 2;
        }
        return await listen(creds, { forwardTo, out, signal });
      }
      case "trigger": {
        const type = rest[0] ?? "job.completed";
        if (!EVENT_TYPES.includes(type)) {
          out(`trigger takes ${EVENT_TYPES.join(" or ")}, not ${type}`);
          return 2;
        }
        const queued = await call(creds, "POST", "/v1/webhook/test", { event_type: type }, signal);
        if (typeof queued?.delivery_id !== "string") throw notTheApi(creds.apiUrl);
        out(`Triggered ${type}: delivery ${queued.delivery_id}, job ${queued.job_id}.`);
        return 0;
      }
      case "logs":
        return await logs(creds, {
          follow: values.follow,
          since: values.since,
          until: values.until,
          filters: {
            job_id: values["job-id"],
            delivery_id: values["delivery-id"],
            event_type: values["event-type"],
            outcome: values.outcome,
          },
          out,
          note: err,
          signal,
        });
      default:
        out(`Unknown command: ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof ApiError) {
      out(error.message);
      // Ctrl+C: the shell's code for a stop by SIGINT.
      if (error.code === "aborted") return 130;
      return error.usage ? 2 : 1;
    }
    throw error;
  }
}

// Run as a program (not imported by a test).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  process.once("SIGTERM", () => controller.abort());
  main(process.argv.slice(2), { signal: controller.signal }).then((code) => process.exit(code));
}
