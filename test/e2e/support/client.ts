import { inject } from "vitest";
import { sampleJobCompleted } from "../../../src/api/sample-event";

/** A thin HTTP client for the dispatcher under test, as a producer or an org. */
export const dispatcherUrl = () => inject("dispatcherUrl");
export const producerToken = () => inject("producerToken");
export const operatorToken = () => inject("operatorToken");

export async function api(method: string, path: string, token: string, body?: unknown): Promise<Response> {
  return fetch(`${dispatcherUrl()}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** A new org with an API key, as an operator would set one up. */
export async function newOrg(): Promise<{ orgId: string; key: string; secret: string }> {
  const orgId = `org_${Math.random().toString(36).slice(2, 10)}`;
  const created = await api("POST", `/v1/orgs/${orgId}/api-keys`, operatorToken(), { name: "e2e" });
  if (created.status !== 201) throw new Error(`api key: ${created.status} ${await created.text()}`);
  const { key } = (await created.json()) as { key: string };
  const { signing_secret } = (await (await api("GET", "/v1/webhook", key)).json()) as { signing_secret: string };
  return { orgId, key, secret: signing_secret };
}

/** A seed-shaped `job.completed` event (src/api/sample-event.ts). */
export function seedEvent(orgId: string, jobId = `job_${Math.random().toString(36).slice(2, 10)}`) {
  return sampleJobCompleted(orgId, jobId);
}

export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

declare module "vitest" {
  export interface ProvidedContext {
    dispatcherUrl: string;
    producerToken: string;
    operatorToken: string;
  }
}
