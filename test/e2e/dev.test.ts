import { type ChildProcess, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, root, stopProcess } from "../../scripts/wrangler-dev";
import { Receiver } from "../support/receiver";
import { until } from "./support/client";
import { record } from "./support/summary";

/**
 * `npm run dev` as the README gives it, on a port of the user's choosing: 8787 may be
 * taken. (It used to pass `--port` to wrangler twice, which refused to start.) Then the
 * README's "A first delivery" against it, as a user would: with the tokens it printed, to
 * a receiver on 127.0.0.1 that checks the signature.
 *
 * It runs in the repository, as a user does, so with the repository's .dev.vars: one that
 * is there is used as it is (`npm run dev` only adds a token it lacks), through the tokens
 * it printed; one it had to create is removed afterwards. Its state (D1, queues, Durable
 * Objects, wrangler's debug log) goes into a temporary directory, removed afterwards too.
 */

interface Dev {
  child: ChildProcess;
  port: number;
  /** Everything it printed so far. */
  output: () => string;
  /** Its exit code, once it has exited. */
  exited: () => number | null;
  /** Stops it and removes its state. */
  stop: () => Promise<void>;
}

async function startDev(): Promise<Dev> {
  const [port, inspector] = [await freePort(), await freePort()];
  const state = mkdtempSync(join(tmpdir(), "zupertry-dev-"));
  const child = spawn(
    "npm",
    ["run", "dev", "--", "--port", String(port), "--persist-to", state, "--inspector-port", String(inspector)],
    {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      // Wrangler's debug log goes with the state, as in scripts/wrangler-dev.ts: not into
      // ~/.config/.wrangler/logs.
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_LOG_PATH: join(state, "wrangler-debug.log") },
    },
  );
  const output: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk) => output.push(String(chunk)));
  let exited: number | null = null;
  child.once("exit", (code) => (exited = code ?? -1));
  return {
    child,
    port,
    output: () => output.join(""),
    exited: () => exited,
    async stop() {
      await stopProcess(child);
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/** Its index once it answers; throws with what it printed if it exits first or never answers. */
async function indexOf(dev: Dev): Promise<{ links: Record<string, string> }> {
  try {
    return await until(async () => {
      if (dev.exited() !== null) throw new Error(`npm run dev exited with ${dev.exited()} before it answered`);
      const res = await fetch(`http://127.0.0.1:${dev.port}/`).catch(() => null);
      return res?.ok ? ((await res.json()) as { links: Record<string, string> }) : undefined;
    }, 90_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- npm run dev printed ---\n${dev.output().slice(-4000)}`);
  }
}

const devVars = join(root, ".dev.vars");
let createdDevVars = false;
let dev: Dev | undefined;
let index: { links: Record<string, string> };
const receiver = new Receiver();
let receiverUrl: string;

beforeAll(async () => {
  receiverUrl = await receiver.start();
  createdDevVars = !existsSync(devVars);
  dev = await startDev();
  try {
    index = await indexOf(dev);
  } catch (error) {
    // A port found free can be taken before wrangler binds it; only that is tried again.
    if (!/EADDRINUSE|address already in use/i.test(dev.output())) throw error;
    await dev.stop();
    dev = await startDev();
    index = await indexOf(dev);
  }
}, 200_000);

afterAll(async () => {
  await dev?.stop();
  await receiver.stop();
  if (createdDevVars) rmSync(devVars, { force: true });
});

describe("npm run dev", () => {
  it("starts on the port given with --port, and its index links the console, reference and OpenAPI", async () => {
    expect(index.links).toEqual({
      console: "/console/",
      docs: "/docs/",
      openapi: "/openapi.json",
      health: "/health",
    });
    for (const path of Object.values(index.links)) {
      expect((await fetch(`http://127.0.0.1:${dev!.port}${path}`)).status, path).toBe(200);
    }
    record("setup", "npm run dev -- --port <a free port>", "up; / links console, docs, OpenAPI, health");
  });

  it("makes the README's first delivery: a POST to 127.0.0.1 signed with the org's secret, once", async () => {
    const tokens = /^Local tokens \(\.dev\.vars\): producer (\S+), operator (\S+)$/m.exec(dev!.output());
    expect(tokens, "npm run dev prints the tokens in effect").not.toBeNull();
    const [, producer, operator] = tokens!;
    // A fresh clone's (CI's): the README's tokens.
    if (createdDevVars) expect([producer, operator]).toEqual(["dev-producer-token", "dev-operator-token"]);
    const call = (method: string, path: string, token: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${dev!.port}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

    // An org API key from the operator token (the README's curl sends no body), and the
    // org's signing secret, created on first read.
    const created = await call("POST", "/v1/orgs/org_demo/api-keys", operator!);
    expect(created.status).toBe(201);
    const { key } = (await created.json()) as { key: string };
    const settings = await call("GET", "/v1/webhook", key);
    expect(settings.status).toBe(200);
    const { signing_secret: secret } = (await settings.json()) as { signing_secret: string };
    const url = `${receiverUrl}/hook/first-delivery`;
    expect((await call("PUT", "/v1/webhook", key, { webhook_url: url })).status).toBe(200);

    // The job service reports a finished job, with the producer token.
    const event = {
      type: "job.completed",
      data: {
        job_id: "job_abc123",
        org_id: "org_demo",
        status: "completed",
        output_url: "https://storage.googleapis.com/zupertry-outputs/x.png",
        credits_consumed: 1,
      },
    };
    const sent = await call("POST", "/v1/events", producer!, event);
    expect(sent.status).toBe(202);
    const answer = (await sent.json()) as { delivery_id: string; status: string };
    expect(answer).toEqual({ delivery_id: expect.stringMatching(/^dlv_/), status: "queued" });

    const [request] = await until(() => {
      const requests = receiver.requests("first-delivery");
      return requests.length > 0 ? requests : undefined;
    }, 30_000);
    const body = Buffer.from(request!.body, "base64");
    expect(request!.method).toBe("POST");
    // What the docs' Node snippet checks: lowercase hex HMAC-SHA256 of the raw body.
    expect(request!.headers["x-zupertry-signature"]).toBe(createHmac("sha256", secret).update(body).digest("hex"));
    expect(request!.headers).toMatchObject({
      "x-zupertry-event": "job.completed",
      "x-zupertry-delivery": answer.delivery_id,
      "x-zupertry-attempt": "1",
    });
    expect(JSON.parse(body.toString("utf8"))).toEqual(event);

    // Sent again: the same delivery, said to be a duplicate, and nothing more arrives.
    const again = await call("POST", "/v1/events", producer!, event);
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ delivery_id: answer.delivery_id, status: "queued", duplicate: true });
    await new Promise((r) => setTimeout(r, 2000));
    expect(receiver.requests("first-delivery")).toHaveLength(1);
    record("setup", "README's first delivery on npm run dev", "signed POST verified; re-sent: duplicate, nothing sent");
  });

  it("prints how to run its crons, which wrangler dev does not fire, and each runs", async () => {
    const commands = [...dev!.output().matchAll(/^ {2}curl "(http:\/\/127\.0\.0\.1:\d+\/__scheduled\?cron=\S+)"$/gm)];
    // wrangler.toml's two: the every-minute stall sweep and retention.
    expect(commands.map(([, url]) => new URL(url!).searchParams.get("cron"))).toEqual(["* * * * *", "*/10 * * * *"]);
    for (const [, url] of commands) {
      const res = await fetch(url!);
      // A failure shows why in what it printed.
      expect(`${res.status} ${await res.text()}`, `${url}\n${dev!.output().slice(-3000)}`).toBe(
        "200 Ran scheduled event",
      );
    }
    // Retention says what it did on each shard; neither cron logged a shard it failed on.
    await until(() => (/"event":"retention\.swept"/.test(dev!.output()) ? true : undefined));
    expect(dev!.output()).not.toMatch(/"event":"(deliveries\.sweep_failed|retention\.failed)"/);
  });
});
