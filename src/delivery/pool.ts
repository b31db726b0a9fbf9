/**
 * Runs one queue run's attempts within its connections.
 *
 * A Worker invocation holds at most `connections` (6) open connections; further fetches
 * wait in the runtime for one, with their timeout already running. So at most that many
 * attempts run at once, each timed from the moment it can actually connect.
 *
 * One endpoint gets at most `perEndpoint` of the connections, and one org at most
 * `perOrg`, while attempts to another endpoint or of another org wait for one, and all of
 * them when nothing else waits (and nothing else may still be added: `AttemptPool`): an
 * endpoint that hangs, or an org whose events go to many hanging endpoints, cannot hold
 * every connection of a run that has other work.
 *
 * With `handOffAfterMs` (the fast and bulk lanes), the pool also stops waiting for an attempt
 * that is still running after that long: the attempt is *handed off* (its promise is
 * returned, still pending), its connection stays counted until it really ends, and its
 * endpoint counts as slow for the rest of the run: that endpoint's attempts not started
 * yet are *moved* (not started here). When every connection is held by handed-off
 * attempts, the attempts left are *released* rather than left to wait for one.
 *
 * With `busyAfterMs` (the fast and bulk lanes), an endpoint, and an org, also start no attempt that
 * long after their first one in the run: their attempts not started by then are *moved*
 * too (reason `busy`). An org flooding an endpoint that answers in 900 ms, under the
 * hand-off, would otherwise hold a run of 100 for 15 s (100 attempts over 6 connections),
 * and the queue's runs with it, while every other org's events waited behind; by org too,
 * as its events may name many such endpoints through their own URLs.
 *
 * Tasks must not reject: an attempt describes its own failure.
 */

export interface PoolTask<R> {
  /** Names the endpoint the attempt goes to (its org's and origin's, as health is kept). */
  endpoint: string;
  /** The org the attempt is made for. */
  org: string;
  start: () => Promise<R>;
}

export type PoolResult<R> =
  | { kind: "done"; value: R }
  | { kind: "handed_off"; value: Promise<R> }
  | { kind: "moved"; reason: "slow" | "busy" }
  | { kind: "released" };

export interface PoolOptions<R> {
  connections: number;
  /** Connections one endpoint may hold while others have attempts waiting. */
  perEndpoint: number;
  /** Connections one org's attempts may hold while other orgs' attempts wait. */
  perOrg: number;
  /** Null: wait for every attempt to end (the slow and overflow lanes). */
  handOffAfterMs: number | null;
  /** How long after its first attempt an endpoint, or an org, starts no more; null: no limit. */
  busyAfterMs: number | null;
  /** Called as each task ends while the run still waits for it (not for handed-off ones). */
  onDone?: (value: R, index: number) => void;
}

/** Runs `tasks` in a pool that takes no others (see `AttemptPool`). */
export function runPool<R>(tasks: readonly PoolTask<R>[], options: PoolOptions<R>): Promise<PoolResult<R>[]> {
  const pool = new AttemptPool(options);
  pool.add(tasks);
  pool.close();
  return pool.results;
}

/**
 * The pool, taking tasks as they become ready: a run adds each org's attempts once its
 * settings and its shard's log state are in, so an org whose Durable Object (or a shard
 * that) answers slowly holds up its own attempts only. `results` resolves, one per task
 * in the order added, once `close` was called and every task is done, handed off,
 * moved or released.
 */
export class AttemptPool<R> {
  readonly results: Promise<PoolResult<R>[]>;
  private readonly tasks: PoolTask<R>[] = [];
  private pending: number[] = []; // not started yet, in order
  private closed = false;
  private wake: () => void = () => {};

  constructor(private readonly options: PoolOptions<R>) {
    this.results = this.run();
  }

  /** More tasks; their results follow those of the tasks added before. */
  add(tasks: readonly PoolTask<R>[]): void {
    if (this.closed) throw new Error("AttemptPool: add after close");
    for (const task of tasks) this.pending.push(this.tasks.push(task) - 1);
    this.wake();
  }

  /** No more tasks will be added. */
  close(): void {
    this.closed = true;
    this.wake();
  }

  private async run(): Promise<PoolResult<R>[]> {
    const { options, tasks } = this;
    const results: PoolResult<R>[] = [];
    const slow = new Set<string>();
    const firstStarted = new Map<string, number>(); // endpoint, or org key → its first attempt's start
    const held = new Map<string, number>(); // connections per endpoint and per org, handed-off ones included
    let running = 0; // started, still awaited by the run
    let handedOff = 0; // started, handed off, still holding a connection
    const hold = (task: PoolTask<R>, n: number) => {
      held.set(task.endpoint, (held.get(task.endpoint) ?? 0) + n);
      held.set(orgKey(task.org), (held.get(orgKey(task.org)) ?? 0) + n);
    };
    const withinEndpointShare = (task: PoolTask<R>) => (held.get(task.endpoint) ?? 0) < options.perEndpoint;
    const withinShares = (task: PoolTask<R>) =>
      withinEndpointShare(task) && (held.get(orgKey(task.org)) ?? 0) < options.perOrg;

    const start = (i: number) => {
      const task = tasks[i]!;
      for (const key of [task.endpoint, orgKey(task.org)])
        if (!firstStarted.has(key)) firstStarted.set(key, Date.now());
      const promise = task.start();
      let gone = false;
      running++;
      hold(task, 1);
      const timer =
        options.handOffAfterMs === null
          ? null
          : setTimeout(() => {
              gone = true;
              running--;
              handedOff++;
              slow.add(task.endpoint);
              results[i] = { kind: "handed_off", value: promise };
              this.wake();
            }, options.handOffAfterMs);
      void promise.then((value) => {
        if (timer !== null) clearTimeout(timer);
        hold(task, -1);
        if (gone) handedOff--;
        else {
          running--;
          results[i] = { kind: "done", value };
          options.onDone?.(value, i);
        }
        this.wake();
      });
    };

    for (;;) {
      const now = Date.now();
      const busy = (key: string) =>
        options.busyAfterMs !== null && now - (firstStarted.get(key) ?? now) >= options.busyAfterMs;
      this.pending = this.pending.filter((i) => {
        const { endpoint, org } = tasks[i]!;
        if (slow.has(endpoint)) results[i] = { kind: "moved", reason: "slow" };
        else if (busy(endpoint) || busy(orgKey(org))) results[i] = { kind: "moved", reason: "busy" };
        else return true;
        return false;
      });
      const { pending } = this;
      while (pending.length > 0 && running + handedOff < options.connections) {
        // Within both shares if any waits so; else within its endpoint's (only this org's
        // attempts wait); else the first (only this endpoint's do). Until the pool is
        // closed, other orgs' attempts may still come: only within both shares.
        let next = pending.findIndex((i) => withinShares(tasks[i]!));
        if (next === -1 && !this.closed) break;
        if (next === -1) next = pending.findIndex((i) => withinEndpointShare(tasks[i]!));
        const [i] = pending.splice(next === -1 ? 0 : next, 1);
        start(i!);
      }
      if (pending.length > 0 && running === 0 && handedOff >= options.connections) {
        // Every connection is held by attempts the run no longer waits for.
        for (const i of pending.splice(0)) results[i] = { kind: "released" };
      }
      if (running === 0 && pending.length === 0 && this.closed) return results;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

/** An org's key in the connection counts, apart from any endpoint's (`org origin`). */
function orgKey(org: string): string {
  return `org:${org}`;
}
