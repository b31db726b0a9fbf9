/**
 * Runs one queue run's attempts within its connections.
 *
 * A Worker invocation holds at most `connections` (6) open connections; further fetches
 * wait in the runtime for one, with their timeout already running. So at most that many
 * attempts run at once, each timed from the moment it can actually connect.
 *
 * With `handOffAfterMs` (the fast lane), the pool also stops waiting for an attempt
 * that is still running after that long: the attempt is *handed off* (its promise is
 * returned, still pending), its connection stays counted until it really ends, and its
 * endpoint counts as slow for the rest of the run: that endpoint's attempts not started
 * yet are *moved* (not started here). When every connection is held by handed-off
 * attempts, the attempts left are *released* rather than left to wait for one.
 *
 * Tasks must not reject: an attempt describes its own failure.
 */

export interface PoolTask<R> {
  /** Names the endpoint the attempt goes to (its org's and origin's, as health is kept). */
  endpoint: string;
  start: () => Promise<R>;
}

export type PoolResult<R> =
  | { kind: "done"; value: R }
  | { kind: "handed_off"; value: Promise<R> }
  | { kind: "moved" }
  | { kind: "released" };

export interface PoolOptions {
  connections: number;
  /** Null: wait for every attempt to end (the slow lane). */
  handOffAfterMs: number | null;
}

export async function runPool<R>(tasks: readonly PoolTask<R>[], options: PoolOptions): Promise<PoolResult<R>[]> {
  const results = new Array<PoolResult<R>>(tasks.length);
  const slow = new Set<string>();
  let running = 0; // started, still awaited by the run
  let handedOff = 0; // started, handed off, still holding a connection
  let next = 0;
  let wake: () => void = () => {};

  const start = (i: number) => {
    const task = tasks[i]!;
    const promise = task.start();
    let gone = false;
    running++;
    const timer =
      options.handOffAfterMs === null
        ? null
        : setTimeout(() => {
            gone = true;
            running--;
            handedOff++;
            slow.add(task.endpoint);
            results[i] = { kind: "handed_off", value: promise };
            wake();
          }, options.handOffAfterMs);
    void promise.then((value) => {
      if (timer !== null) clearTimeout(timer);
      if (gone) handedOff--;
      else {
        running--;
        results[i] = { kind: "done", value };
      }
      wake();
    });
  };

  for (;;) {
    while (next < tasks.length) {
      if (slow.has(tasks[next]!.endpoint)) results[next++] = { kind: "moved" };
      else if (running + handedOff < options.connections) start(next++);
      else break;
    }
    if (next < tasks.length && running === 0) {
      // Every connection is held by attempts the run no longer waits for.
      for (; next < tasks.length; next++) results[next] = slow.has(tasks[next]!.endpoint) ? { kind: "moved" } : { kind: "released" };
    }
    if (running === 0 && next >= tasks.length) return results;
    await new Promise<void>((resolve) => (wake = resolve));
  }
}
