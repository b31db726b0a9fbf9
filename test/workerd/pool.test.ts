import { describe, expect, it } from "vitest";
import { AttemptPool, type PoolTask, runPool } from "../../src/delivery/pool";

/** The attempt pool of one queue run, with tasks that take a scripted time. */

function tasks(spec: Array<[endpoint: string, ms: number]>) {
  let running = 0;
  let peak = 0;
  const started: string[] = [];
  const list: PoolTask<string>[] = spec.map(([endpoint, ms], i) => ({
    endpoint,
    // "A x" is endpoint x of org A; a bare name is an org of its own.
    org: endpoint.split(" ")[0]!,
    start: async () => {
      started.push(`${endpoint}${i}`);
      peak = Math.max(peak, ++running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return `${endpoint}${i}`;
    },
  }));
  return { list, started, peak: () => peak };
}

/** A run with the consumer's shares (3 connections an endpoint, 4 an org) that hands off after 100 ms. */
const sharedPool = { connections: 6, perEndpoint: 3, perOrg: 4, handOffAfterMs: 100, busyAfterMs: null };

/** A run that starts no attempt of an endpoint, or an org, 250 ms after its first. */
const busyPool = { connections: 6, perEndpoint: 3, perOrg: 6, handOffAfterMs: null, busyAfterMs: 250 };

describe("runPool", () => {
  it("runs every task, at most `connections` at once, and waits for all without a hand-off budget", async () => {
    const t = tasks(Array.from({ length: 9 }, (_, i) => [`e${i % 3}`, 30] as [string, number]));
    const results = await runPool(t.list, {
      connections: 6,
      perEndpoint: 6,
      perOrg: 6,
      handOffAfterMs: null,
      busyAfterMs: null,
    });
    expect(t.peak()).toBe(6);
    expect(results.map((r) => r.kind)).toEqual(Array(9).fill("done"));
    expect(results.map((r) => (r.kind === "done" ? r.value : null))).toEqual(t.list.map((_, i) => `e${i % 3}${i}`));
  });

  it("hands off a task past the budget, moves its endpoint's waiting tasks, and goes on", async () => {
    // h0 hangs; two waves of quicker tasks (each under the 300 ms budget, together over
    // it) keep the other five connections busy until h11's turn comes, after h0 was
    // handed off. The order of timers decides it, not how fast this machine is.
    const quick = (name: string, ms: number) => Array.from({ length: 5 }, () => [name, ms] as [string, number]);
    const t = tasks([["h", 1200], ...quick("a", 150), ...quick("b", 250), ["h", 10], ["c", 10]]);
    const results = await runPool(t.list, {
      connections: 6,
      perEndpoint: 6,
      perOrg: 6,
      handOffAfterMs: 300,
      busyAfterMs: null,
    });
    expect(results.map((r) => r.kind)).toEqual(["handed_off", ...Array(10).fill("done"), "moved", "done"]);
    expect(t.started).not.toContain("h11");
    const first = results[0]!;
    expect(first.kind === "handed_off" && (await first.value)).toBe("h0");
  });

  it("moves an endpoint's waiting tasks once it has kept the run past its budget; others go on", async () => {
    // 30 attempts of 100 ms to "a" (each far under any hand-off), beside 3 to "b": with a
    // 250 ms budget, "a" starts waves at 0, 100 and 200 ms (15 attempts), and the rest of
    // it moves.
    const t = tasks([
      ...Array.from({ length: 30 }, () => ["a", 100] as [string, number]),
      ["b", 100],
      ["b", 100],
      ["b", 100],
    ]);
    const results = await runPool(t.list, busyPool);
    const ofA = results.slice(0, 30);
    expect(results.slice(30).map((r) => r.kind)).toEqual(["done", "done", "done"]);
    const moved = ofA.filter((r) => r.kind === "moved");
    expect(moved.length).toBeGreaterThanOrEqual(8);
    expect(moved).toEqual(Array(moved.length).fill({ kind: "moved", reason: "busy" }));
    expect(ofA.slice(0, 30 - moved.length).map((r) => r.kind)).toEqual(Array(30 - moved.length).fill("done"));
  });

  it("moves an org's waiting tasks too once it is busy past the limit, however many endpoints it uses", async () => {
    // One org's 30 attempts of 100 ms, each to an endpoint of its own: no endpoint is busy
    // for long, the org is.
    const t = tasks(Array.from({ length: 30 }, (_, i) => [`o e${i}`, 100] as [string, number]));
    const results = await runPool(t.list, busyPool);
    const moved = results.filter((r) => r.kind === "moved");
    expect(moved.length).toBeGreaterThanOrEqual(8);
    expect(moved).toEqual(Array(moved.length).fill({ kind: "moved", reason: "busy" }));
  });

  it("releases the tasks left when every connection is held by handed-off attempts", async () => {
    const t = tasks([
      ["h1", 500],
      ["h2", 500],
      ["a", 10],
      ["b", 10],
    ]);
    const results = await runPool(t.list, {
      connections: 2,
      perEndpoint: 2,
      perOrg: 6,
      handOffAfterMs: 50,
      busyAfterMs: null,
    });
    expect(results.map((r) => r.kind)).toEqual(["handed_off", "handed_off", "released", "released"]);
    expect(t.started).toEqual(["h10", "h21"]);
  });

  it("gives an endpoint its share while others wait, and every connection otherwise", async () => {
    const t = tasks([
      ["h", 300],
      ["h", 300],
      ["h", 300],
      ["h", 300],
      ["a", 10],
      ["a", 10],
    ]);
    await runPool(t.list, { connections: 4, perEndpoint: 2, perOrg: 6, handOffAfterMs: null, busyAfterMs: null });
    // h2 and h3 waited while a's tasks could use a connection: a went first.
    expect(t.started.slice(0, 4)).toEqual(["h0", "h1", "a4", "a5"]);
    const alone = tasks([
      ["h", 20],
      ["h", 20],
      ["h", 20],
      ["h", 20],
    ]);
    await runPool(alone.list, { connections: 4, perEndpoint: 2, perOrg: 6, handOffAfterMs: null, busyAfterMs: null });
    expect(alone.peak()).toBe(4);
  });

  it("gives an org at most its share while other orgs wait, however many endpoints it uses", async () => {
    // Org A's events go to six endpoints that all hang; org B's three quick ones still run.
    const hanging = Array.from({ length: 6 }, (_, i) => [`A h${i}`, 400] as [string, number]);
    const t = tasks([...hanging, ["B ok", 10], ["B ok", 10], ["B ok", 10]]);
    const results = await runPool(t.list, sharedPool);
    expect(results.slice(6).map((r) => r.kind)).toEqual(["done", "done", "done"]);
    expect(t.started.slice(0, 6)).toEqual(["A h00", "A h11", "A h22", "A h33", "B ok6", "B ok7"]);
    // With nothing else waiting, A's last two take the free connections after all.
    expect(results.slice(0, 6).map((r) => r.kind)).toEqual(Array(6).fill("handed_off"));
  });

  it("keeps an endpoint's share when one org's attempts fill the org's share", async () => {
    // One org: eight attempts to a hanging endpoint first, then eight to a healthy one.
    const t = tasks([
      ...Array.from({ length: 8 }, () => ["A hang", 400] as [string, number]),
      ...Array.from({ length: 8 }, () => ["A ok", 10] as [string, number]),
    ]);
    const results = await runPool(t.list, sharedPool);
    expect(results.slice(8).map((r) => r.kind)).toEqual(Array(8).fill("done"));
    // The hanging endpoint kept to its 3 until every healthy attempt had started.
    expect(t.started.slice(0, 11).filter((name) => name.startsWith("A hang"))).toHaveLength(3);
  });

  it("keeps a handed-off attempt's connection counted until it really ends", async () => {
    const t = tasks([
      ["h", 200],
      ["a", 150],
      ["b", 150],
      ["c", 150],
    ]);
    await runPool(t.list, { connections: 2, perEndpoint: 2, perOrg: 6, handOffAfterMs: 50, busyAfterMs: null });
    // h holds one connection for its whole 200 ms: the other three ran one at a time beside it.
    expect(t.peak()).toBe(2);
  });
});

describe("AttemptPool, taking tasks as each org's are ready", () => {
  it("gives the first org no more than its shares until the pool is closed, then all it may", async () => {
    const pool = new AttemptPool<string>(sharedPool);
    // Org A's six tasks to one endpoint come first; others may still come.
    const a = tasks(Array.from({ length: 6 }, () => ["A x", 50] as [string, number]));
    pool.add(a.list);
    await new Promise((r) => setTimeout(r, 20));
    expect(a.started).toHaveLength(3);
    // Another org's come while they run: they take connections of their own at once.
    const b = tasks([["B y", 50]]);
    pool.add(b.list);
    await new Promise((r) => setTimeout(r, 5));
    expect(b.started).toHaveLength(1);
    expect(a.started).toHaveLength(3);
    pool.close();
    const results = await pool.results;
    expect(results.map((r) => r.kind)).toEqual(Array(7).fill("done"));
    expect(results.map((r) => (r.kind === "done" ? r.value : null))).toEqual([
      ...a.list.map((_, i) => `A x${i}`),
      "B y0",
    ]);
  });

  it("holds an org with many endpoints to its org share until the pool is closed", async () => {
    const pool = new AttemptPool<string>(sharedPool);
    const a = tasks([
      ...Array.from({ length: 3 }, () => ["A x", 50] as [string, number]),
      ...Array.from({ length: 3 }, () => ["A y", 50] as [string, number]),
    ]);
    pool.add(a.list);
    await new Promise((r) => setTimeout(r, 20));
    expect(a.started).toHaveLength(4);
    pool.close();
    expect((await pool.results).map((r) => r.kind)).toEqual(Array(6).fill("done"));
  });

  it("releases tasks added when handed-off attempts hold every connection, once closed", async () => {
    const pool = new AttemptPool<string>(sharedPool);
    const hanging = tasks([
      ["A x", 1000],
      ["A x", 1000],
      ["A x", 1000],
      ["B y", 1000],
      ["B y", 1000],
      ["B y", 1000],
    ]);
    pool.add(hanging.list);
    await new Promise((r) => setTimeout(r, 150)); // past the 100 ms hand-off
    const late = tasks([["C z", 10]]);
    pool.add(late.list);
    pool.close();
    const results = await pool.results;
    expect(results.map((r) => r.kind)).toEqual([...Array(6).fill("handed_off"), "released"]);
    expect(late.started).toEqual([]);
  });
});
