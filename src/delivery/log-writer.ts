import { type EncodedAttempt, writeAttempts } from "../store/attempts";

/**
 * Writes a queue run's log rows while its attempts are still going on: a group commit.
 *
 * Rows wait until `chunk` of them are ready and no write is in flight, then go to D1 in
 * one transaction (`DB.batch`); `flush` writes the rest. A batch of 100 is written in at
 * most three round trips, two of them overlapping the attempts still running, instead
 * of one round trip after the last attempt (measured: ~45 ms of a ~190 ms local run).
 *
 * Each row's promise says whether it was new (the primary key decides, as in
 * `writeAttempts`), or carries its chunk's write error: the caller acts on each message
 * only once its own row is safely written.
 */
export type Written = { ok: true; fresh: boolean } | { ok: false; error: unknown };

export class LogWriter {
  private waiting: Array<{ row: EncodedAttempt; settle: (written: Promise<Written>) => void }> = [];
  private writing: Promise<unknown> = Promise.resolve();
  private inFlight = false;

  constructor(
    private readonly db: D1Database,
    private readonly chunk: number,
  ) {}

  /** Queues a row; resolves when it is written (or its write failed). */
  add(row: EncodedAttempt): Promise<Written> {
    const written = new Promise<Written>((resolve) => this.waiting.push({ row, settle: (p) => void p.then(resolve) }));
    if (!this.inFlight && this.waiting.length >= this.chunk) this.write();
    return written;
  }

  /** Writes whatever is still waiting; resolves when every write has ended. */
  async flush(): Promise<void> {
    while (this.inFlight || this.waiting.length > 0) {
      if (!this.inFlight) this.write();
      await this.writing;
    }
  }

  private write(): void {
    const rows = this.waiting;
    this.waiting = [];
    this.inFlight = true;
    const fresh = writeAttempts(
      this.db,
      rows.map((r) => r.row),
    );
    for (const [i, r] of rows.entries()) {
      r.settle(
        fresh.then(
          (f): Written => ({ ok: true, fresh: f[i]! }),
          (error: unknown): Written => ({ ok: false, error }),
        ),
      );
    }
    this.writing = fresh.then(
      () => this.done(),
      () => this.done(),
    );
  }

  private done(): void {
    this.inFlight = false;
    if (this.waiting.length >= this.chunk) this.write();
  }
}
