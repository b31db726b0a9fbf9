/**
 * JSON that arrives as it was sent.
 *
 * `data` is delivered as the producer sent it, so ingest must not change it silently:
 * `12345678901234567890` would leave as `12345678901234567000` and `1e400` as `null`
 * (a JS number is a 64-bit double). Such numbers are refused, naming the field, and the
 * producer can send them as strings. `JSON.parse`'s reviver sees each number's source
 * text (`context.source`), so the check is exact: a number passes when the double it
 * parses to, written back out, has the same decimal value (`1.0` and `1` do; `1e2`
 * and `100` do; `0.1` does).
 *
 * Depth is limited too: nothing stored may nest so deep that reading it back (or
 * serialising it) runs out of stack.
 */

/** How deep `data` may nest (objects and arrays), including `data` itself. */
export const MAX_DATA_DEPTH = 32;

export type JsonPath = Array<string | number>;

/** A number that would not arrive as sent. */
export interface InexactNumber {
  path: JsonPath;
  literal: string;
}

const INEXACT = Symbol("inexact number");

/**
 * Sixteen digits or more (a double keeps 15 for sure; a decimal point may split them, as
 * in `12345678.123456789`), or exponents large enough: a number that might lose its value.
 */
const MIGHT_BE_INEXACT = /(?:\d\.?){16}|[eE][+-]?\d{3}/;

/** Valid JSON that nests too deep to be read through (thousands of levels). */
export class TooDeepJson extends Error {
  override name = "TooDeepJson";
}

/**
 * Parses like `JSON.parse` (throws `SyntaxError` the same way, or `TooDeepJson`) and lists the numbers
 * whose value would change, with where they are. Bodies without 16 digits in a row (a
 * decimal point among them allowed) or a 3-digit exponent cannot hold one and skip the
 * reviver (the hot path).
 */
export function parseExactJson(text: string): { value: unknown; inexact: InexactNumber[] } {
  if (!MIGHT_BE_INEXACT.test(text)) return { value: JSON.parse(text), inexact: [] };
  const literals = new Map<object, string>();
  let value: unknown;
  try {
    value = JSON.parse(text, (_key, v: unknown, context?: { source?: string }) => {
      if (typeof v !== "number" || context?.source === undefined || sameNumber(context.source, v)) return v;
      const mark = { [INEXACT]: true };
      literals.set(mark, context.source);
      return mark;
    });
  } catch (error) {
    // The parser is iterative but the reviver pass recurses: thousands of levels overflow
    // the stack. Such a body is valid JSON, far deeper than any route takes, and its
    // numbers went unchecked: it is refused whole, for its depth, not called "not JSON".
    if (error instanceof RangeError) throw new TooDeepJson();
    throw error;
  }
  if (literals.size === 0) return { value, inexact: [] };
  const inexact: InexactNumber[] = [];
  for (const [node, path] of walk(value)) {
    const literal = typeof node === "object" && node !== null ? literals.get(node) : undefined;
    if (literal !== undefined) inexact.push({ path, literal });
  }
  return { value, inexact };
}

/** Objects and arrays nest deeper than `limit` (iterative: no recursion to overflow). */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    if (depth > limit) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/** Every value with its path, depth first (iterative). */
function* walk(value: unknown): Generator<[unknown, JsonPath]> {
  const stack: Array<[unknown, JsonPath]> = [[value, []]];
  while (stack.length > 0) {
    const [node, path] = stack.pop()!;
    yield [node, path];
    if (typeof node !== "object" || node === null || INEXACT in node) continue;
    if (Array.isArray(node)) for (const [i, child] of node.entries()) stack.push([child, [...path, i]]);
    else for (const [key, child] of Object.entries(node)) stack.push([child, [...path, key]]);
  }
}

/** Whether the JSON number literal `source` and the double `value` are the same number. */
export function sameNumber(source: string, value: number): boolean {
  if (!Number.isFinite(value)) return false;
  const a = decimal(source);
  const b = decimal(String(value));
  return (
    a !== null &&
    b !== null &&
    a.digits === b.digits &&
    a.exponent === b.exponent &&
    (a.digits === "" || a.negative === b.negative)
  );
}

/** A decimal literal as sign, significant digits and exponent: value = digits × 10^exponent. */
function decimal(text: string): { negative: boolean; digits: string; exponent: number } | null {
  const match = /^(-)?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return null;
  const [, sign, whole, fraction = "", exp = "0"] = match;
  let digits = (whole! + fraction).replace(/^0+/, "");
  let exponent = Number(exp) - fraction.length;
  const trailing = digits.length - digits.replace(/0+$/, "").length;
  digits = digits.slice(0, digits.length - trailing);
  exponent += trailing;
  return { negative: sign === "-", digits, exponent: digits === "" ? 0 : exponent };
}
