/**
 * How the log's bulky columns are stored: deflate-raw (CompressionStream), as BLOBs.
 *
 * Why: `attempts` is a WITHOUT ROWID table (one b-tree, so a delivery costs two rows
 * written, not three), and such a table keeps a row inside its b-tree page only while
 * the row is under about 1,000 bytes; past that, SQLite moves the rest to an overflow
 * page of its own: 4 KiB for every row. A seed-shaped event with its headers and the
 * receiver's answer is about 1.5 KB as text and about 800 bytes compressed, so
 * compressing is the difference between ~4.7 KB and ~1.2 KB per delivery in D1.
 */

export async function deflate(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** D1 returns BLOBs as arrays of numbers. */
export async function inflate(stored: ArrayLike<number> | ArrayBuffer): Promise<string> {
  const bytes = stored instanceof ArrayBuffer ? new Uint8Array(stored) : Uint8Array.from(stored);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).text();
}
