/**
 * How the log's bulky columns are stored: raw deflate (RFC 1951), as BLOBs.
 *
 * Why: `attempts` is a WITHOUT ROWID table (one b-tree, so a delivery costs two rows
 * written, not three), and such a table keeps a row inside its b-tree page only while
 * the row is under about 1,000 bytes; past that, SQLite moves the rest to an overflow
 * page of its own: 4 KiB for every row. A seed-shaped event with its headers and the
 * receiver's answer is about 1.5 KB as text and about 800 bytes compressed, so
 * compressing is the difference between ~4.7 KB and ~1.2 KB per delivery in D1.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";

/**
 * Compresses a column for writing, in hex: the writes carry the bytes as text and SQL's
 * `unhex` stores them as a BLOB (why: src/store/attempts.ts).
 *
 * Why `node:zlib` and not `CompressionStream` (the same format): the consumer compresses
 * two columns per attempt, and a stream per call costs about six times the CPU of the
 * native call (measured in workerd: 65 µs against 11 µs per seed-shaped body), which was
 * a quarter of a local queue run's time.
 */
export function deflateToHex(text: string): string {
  return deflateRawSync(text).toString("hex");
}

/**
 * A column read as `hex(column)`: D1 returns a BLOB as an array of numbers, about eight
 * bytes of memory for each byte stored once parsed, where a hex string takes two; a read
 * of many stored events selects them in hex.
 */
export function inflateHex(hex: string): string {
  return inflate(Buffer.from(hex, "hex"));
}

/** D1 returns BLOBs as arrays of numbers. */
export function inflate(stored: ArrayLike<number> | ArrayBuffer): string {
  const bytes = stored instanceof ArrayBuffer ? new Uint8Array(stored) : Uint8Array.from(stored);
  return new TextDecoder().decode(inflateRawSync(bytes));
}
