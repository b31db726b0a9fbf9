import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Runs the real dispatcher with `wrangler dev`, as a developer would, in a fresh
 * local state directory (D1, queues, Durable Objects), with vars overridden on the
 * command line (`--var`), never by test-only code paths. The end-to-end suite and
 * `npm run bench` both start their dispatchers with it.
 */

export interface Dispatcher {
  url: string;
  producerToken: string;
  operatorToken: string;
  /** The `wrangler dev` process (its workerd is a descendant). */
  pid: number;
  /** Where wrangler's DevTools inspector listens, when it is on (`--inspector-port`). */
  inspectorPort: number;
  stop(): Promise<void>;
  /**
   * What wrangler printed so far (its last megabyte or more), or from `since` on: a
   * `printed()` taken earlier. Throws when that part was already dropped.
   */
  output(since?: number): string;
  /** How many characters wrangler printed so far, dropped ones included: a mark for `output`. */
  printed(): number;
}

/** The repository root: the nearest folder above this file with the project's package.json. */
function findRoot(): string {
  // fileURLToPath, not `.pathname`: that keeps %20 for a space in the path.
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "wrangler.toml")) || !existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("project root not found");
    dir = up;
  }
  return dir;
}

export const root = findRoot();
const wrangler = join(root, "node_modules", ".bin", "wrangler");

export interface WranglerOptions {
  /** Another entry point than wrangler.toml's `main` (the benchmark's counting wrapper). */
  script?: string;
  /** Another config than the product's wrangler.toml (the benchmark's control Worker). */
  config?: string;
  /** Apply the D1 migrations first (the product has D1; the control does not). */
  migrate?: boolean;
  /**
   * A local state directory to use (and keep on stop): a restarted dispatcher finds its
   * D1 and Durable Objects as they were. Its queues are in memory and do not survive.
   */
  state?: string;
  /** Let `GET /__scheduled?cron=…` run the cron handler (`wrangler dev --test-scheduled`). */
  testScheduled?: boolean;
  /** The port to listen on (a restarted dispatcher keeps its address); a free one by default. */
  port?: number;
}

export async function startDispatcher(
  vars: Record<string, string> = {},
  options: WranglerOptions = {},
): Promise<Dispatcher> {
  const { script, config, migrate = true, testScheduled = false } = options;
  const state = options.state ?? mkdtempSync(join(tmpdir(), "zupertry-e2e-"));
  // A caller that restarts a dispatcher on the same state passes the same tokens.
  const producerToken = vars.PRODUCER_TOKEN ?? `e2e-${Math.random().toString(36).slice(2)}`;
  const operatorToken = vars.OPERATOR_TOKEN ?? `e2e-operator-${Math.random().toString(36).slice(2)}`;
  // Wrangler appends a debug log for every message of its inspector, four per outbound
  // fetch (~8 MB per 4,000 deliveries): it goes into the state directory (deleted by
  // `stop`, or by a caller that passed its own), not ~/.config/.wrangler/logs (4 GB there
  // after a day of runs).
  const env = {
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    NO_COLOR: "1",
    CI: "true",
    WRANGLER_LOG_PATH: join(state, "wrangler-debug.log"),
  };
  const configArgs = config ? ["--config", config] : [];
  const allVars = { PRODUCER_TOKEN: producerToken, OPERATOR_TOKEN: operatorToken, ...vars };
  const launch = async (port: number) => {
    const inspectorPort = await freePort();
    const child = spawn(
      wrangler,
      [
        "dev",
        ...(script ? [script] : []),
        ...configArgs,
        "--ip",
        "127.0.0.1",
        "--port",
        String(port),
        "--inspector-port",
        String(inspectorPort),
        "--persist-to",
        state,
        "--show-interactive-dev-session=false",
        ...(testScheduled ? ["--test-scheduled"] : []),
        ...Object.entries(allVars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      ],
      // Its own process group: stopping it stops its workerd too, even one too busy to exit.
      { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    // The last megabyte of what wrangler printed (a long run prints a line per queue batch),
    // and how much was dropped before it: a caller's mark stays an offset into everything.
    let log = "";
    let dropped = 0;
    const keep = (d: Buffer) => {
      log += d.toString();
      if (log.length > 2_000_000) {
        dropped += log.length - 1_000_000;
        log = log.slice(-1_000_000);
      }
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const output = (since?: number) => {
      if (since === undefined) return log;
      if (since < dropped) throw new Error(`wrangler's output from ${since} on was dropped (kept from ${dropped})`);
      return log.slice(since - dropped);
    };

    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    for (;;) {
      // Exited, or killed by a signal (then `exitCode` stays null).
      if (child.exitCode !== null || child.signalCode !== null) {
        await stopProcess(child); // its workerd, if one outlived it
        return { ok: false as const, log };
      }
      try {
        // Any HTTP answer means it listens (the control Worker has no /health).
        if ((await fetch(`${url}/health`)).status < 500)
          return { ok: true as const, child, url, inspectorPort, output, printed: () => dropped + log.length };
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await stopProcess(child); // its own process group: nothing may outlive the caller
        throw new Error(`wrangler dev did not start in 60 s:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  // A free port can be taken between `freePort` and workerd's bind (by any other process
  // on the machine): a launch that lost a port it chose is tried again with new ones,
  // twice at most. A port the caller asked for is never replaced.
  const lostChosenPort = (log: string) =>
    /Address already in use/.test(log) &&
    !(options.port !== undefined && log.includes(`Address already in use (127.0.0.1:${options.port})`));
  let started: Awaited<ReturnType<typeof launch>>;
  try {
    if (migrate) {
      // Every D1 database of the config: each log shard.
      await run("node", [join(root, "scripts", "migrate.mjs"), "--local", "--persist-to", state, ...configArgs], env);
    }
    started = await launch(options.port ?? (await freePort()));
    for (let retry = 0; retry < 2 && !started.ok && lostChosenPort(started.log); retry++) {
      started = await launch(options.port ?? (await freePort()));
    }
    if (!started.ok) throw new Error(`wrangler dev exited:\n${started.log}`);
  } catch (error) {
    // A failed start leaves nothing behind: `launch` stopped its processes; a state
    // directory of its own goes too.
    if (options.state === undefined) rmSync(state, { recursive: true, force: true });
    throw error;
  }
  const { child, url, inspectorPort, output, printed } = started;
  return {
    url,
    producerToken,
    operatorToken,
    pid: child.pid!,
    inspectorPort,
    output,
    printed,
    async stop() {
      await stopProcess(child);
      if (options.state === undefined) rmSync(state, { recursive: true, force: true });
    },
  };
}

/**
 * Stops a child and, when it leads a process group (spawned `detached`), everything in
 * the group: wrangler's workerd must not outlive it (an orphan keeps a core busy).
 */
export async function stopProcess(child: ChildProcess): Promise<void> {
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, name); // the group
    } catch {
      child.kill(name); // not a group leader
    }
  };
  if (child.exitCode !== null || child.signalCode !== null) {
    signal("SIGKILL"); // whatever it left behind
    return;
  }
  const exited = new Promise((r) => child.once("exit", r));
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
  signal("SIGKILL");
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} failed:\n${out}`)),
    );
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
