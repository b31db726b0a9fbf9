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
const COMMON_OPTIONS = ["api-key", "api-url", "help"];
/**
 * The options of each command, besides the common ones, and how many arguments it takes.
 * Another command's option, or an argument too many, is a usage error: taken silently it
 * would answer a question not asked (`trigger --event-type job.failed` sending
 * job.completed, `logs job_abc123` listing everything).
 * @type {Record<string, { options: string[], args: number }>}
 */
const COMMANDS = {
  listen: { options: ["forward-to"], args: 0 },
  trigger: { options: [], args: 1 },
  logs: { options: ["follow", "job-id", "delivery-id", "event-type", "outcome", "since", "until"], args: 0 },
};

/**
 * @param {string[]} argv
 * @param {{ env?: Record<string, string | undefined>, out?: (line: string) => void,
 *   err?: (line: string) => void, signal?: AbortSignal }} [io] `out`: the output alone (attempts,
 *   deliveries forwarded, what `trigger` queued, the usage asked for), so that `logs > file` holds
 *   only attempts; `err`: everything said beside it (usage mistakes, errors, how a session goes)
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
        follow: { type: "boolean", short: "f" },
        "job-id": { type: "string" },
        "delivery-id": { type: "string" },
        "event-type": { type: "string" },
        outcome: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    err(`${error instanceof Error ? error.message : error}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help) {
    out(USAGE);
    return 0;
  }
  if (!command) {
    err(USAGE);
    return 2;
  }
  // A typo in the command is said as such, not as the key it did not get to.
  if (!Object.hasOwn(COMMANDS, command)) {
    err(`Unknown command: ${command}\n\n${USAGE}`);
    return 2;
  }
  const mistake = misuse(command, values, rest);
  if (mistake) {
    err(mistake);
    return 2;
  }
  if (values.follow && values.until) {
    err("logs --follow shows attempts as they come: it takes no --until.");
    return 2;
  }
  const creds = credentials(values, env);
  if ("error" in creds) {
    err(creds.error);
    return 2;
  }
  try {
    switch (command) {
      case "listen": {
        const forwardTo = receiverUrl(values["forward-to"]);
        if ("error" in forwardTo) {
          err(forwardTo.error);
          return 2;
        }
        return await listen(creds, { forwardTo: forwardTo.href, out, note: err, signal });
      }
      case "trigger": {
        const type = rest[0] ?? "job.completed";
        if (!EVENT_TYPES.includes(type)) {
          err(`trigger takes ${EVENT_TYPES.join(" or ")}, not ${type}`);
          return 2;
        }
        const queued = await call(creds, "POST", "/v1/webhook/test", { body: { event_type: type }, signal });
        if (typeof queued?.delivery_id !== "string") throw notTheApi(creds.apiUrl);
        out(`Triggered ${type}: delivery ${queued.delivery_id}, job ${queued.job_id}.`);
        return 0;
      }
      default: // logs
        return await logs(creds, {
          follow: values.follow ?? false,
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
    }
  } catch (error) {
    if (error instanceof ApiError) {
      err(error.message);
      // Ctrl+C: the shell's code for a stop by SIGINT.
      if (error.code === "aborted") return 130;
      return error.usage ? 2 : 1;
    }
    throw error;
  }
}

/**
 * What is wrong with a command line that parses, if anything: an option of another
 * command, an argument too many, an option given an empty value (`--job-id=` from a
 * script whose variable was unset would otherwise list every job's attempts).
 * @param {string} command one of COMMANDS
 * @param {Record<string, string | boolean | undefined>} values the options given
 * @param {string[]} args the arguments after the command
 * @returns {string | null}
 */
function misuse(command, values, args) {
  const { options, args: most } = COMMANDS[command];
  const help = `(zupertry ${command} --help lists what it takes)`;
  for (const [name, value] of Object.entries(values)) {
    if (!COMMON_OPTIONS.includes(name) && !options.includes(name))
      return `--${name} is not an option of zupertry ${command} ${help}.`;
    if (typeof value === "string" && value.trim() === "") return `--${name} was given an empty value ${help}.`;
  }
  if (args.length > most) return `Unexpected argument for zupertry ${command}: ${args.slice(most).join(" ")} ${help}.`;
  return null;
}

/**
 * The local receiver's URL, parsed as fetch will parse it: a mistake in it (a port given
 * twice, no scheme) is said now, not as a failure of every delivery.
 * @param {string | undefined} value --forward-to
 * @returns {{ href: string } | { error: string }}
 */
function receiverUrl(value) {
  const example = "http://localhost:3000/your/webhook/path";
  if (value === undefined) return { error: `listen needs --forward-to ${example}` };
  let url;
  try {
    url = new URL(value);
  } catch {
    return { error: `--forward-to ${value} is not a URL: it should be like ${example}` };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return { error: `--forward-to ${value} is not an http:// or https:// URL: it should be like ${example}` };
  // fetch refuses a URL with credentials in it: every delivery would fail.
  if (url.username || url.password) return { error: `--forward-to takes no user:password@ (${example})` };
  return { href: url.href };
}

// Run as a program (not imported by a test).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  process.once("SIGTERM", () => controller.abort());
  // Not process.exit(): it would cut off what is still on its way to a pipe (`logs | wc -l`
  // would lose most of 10,000 lines). Node exits once the command has stopped its timers
  // and sockets, and stdout and stderr are written out.
  main(process.argv.slice(2), { signal: controller.signal }).then((code) => {
    process.exitCode = code;
  });
}
